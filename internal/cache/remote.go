package cache

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/opencontainers/go-digest"
)

// ConfigMediaType is the media type of a cache manifest's config blob. A
// cache export is an ordinary OCI image manifest (so any registry stores it)
// whose config lists the records and whose layers are the records' layer
// blobs.
const ConfigMediaType = "application/vnd.strata.cache.config.v1+json"

// InlineLabel is the image config label that carries inline cache records
// (--cache-to type=inline); their layers are the image's own layers.
const InlineLabel = "dev.strata.cache.v1"

// Exported is one record in a cache export.
type Exported struct {
	Key    Key    `json:"key"`
	Record Record `json:"record"`
	// Used is when a build last used or made the record, as far as the
	// export knows: what a bounded shared cache keeps the newest of.
	Used time.Time `json:"used,omitzero"`
	// Parent is the key of the filesystem the step started from (After
	// gives the one it leaves), so that an import can follow chains: two
	// builders that ran a step at once can record two layers for its key
	// (other file times), and only one of them leads to the records of
	// the steps after it.
	Parent Key `json:"parent,omitempty"`
}

// Export is the content of a cache config blob (and of the inline label).
type Export struct {
	Records []Exported `json:"records"`
	// Journals, in a shared cache, are the exports merged into it (see
	// package sharedcache): their tags and when each was written.
	Journals []Journal `json:"journals,omitempty"`
}

// Journal is one export merged into a shared cache.
type Journal struct {
	Tag     string    `json:"tag"`
	Written time.Time `json:"written"`
}

// Marshal encodes e.
func (e Export) Marshal() ([]byte, error) { return json.Marshal(e) }

// ParseExport decodes a cache config blob or inline label.
func ParseExport(b []byte) (Export, error) {
	var e Export
	if err := json.Unmarshal(b, &e); err != nil {
		return e, fmt.Errorf("cache metadata: %w", err)
	}
	for _, r := range e.Records {
		// An exported layer always has its blob (Lazy layers are given one
		// before they are exported).
		if l := r.Record.Layer; l != nil && (digest.Digest(l.Digest).Validate() != nil || digest.Digest(l.DiffID).Validate() != nil) {
			return e, fmt.Errorf("cache metadata: record %s: invalid layer digest %q or diffID %q", r.Key, l.Digest, l.DiffID)
		}
	}
	return e, nil
}
