// Package remote carries step cache records between builds through images:
// it imports the records a --cache-from source offers (a strata cache
// manifest, or an image with inline cache) and fetches their layer blobs
// when needed, notes the records a build used or made, and writes the
// cache image a --cache-to export is.
package remote

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sync"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/opencontainers/go-digest"

	"github.com/strata-build/strata/internal/cache"
	"github.com/strata-build/strata/internal/store"
)

// fetchFunc fetches a layer blob an imported source offers.
type fetchFunc func(ctx context.Context, d digest.Digest) (io.ReadCloser, error)

// offer is a cache record offered by a --cache-from source, with the way
// to fetch its layer blob.
type offer struct {
	exp   cache.Exported
	fetch fetchFunc
}

// Imported are the records of the --cache-from sources of one build. A
// record is put in the local index once it is used and its blob is here.
type Imported struct {
	index *cache.Index

	mu       sync.Mutex
	offers   map[cache.Key][]offer              // one per layer recorded for the key
	chains   *cache.Chains                      // of every offer; nil: to make again
	fetchers map[digest.Digest]fetchFunc        // blobs of records looked up
	pending  map[digest.Digest][]cache.Exported // records looked up whose blob is not here yet
}

// NewImported returns an empty set of imported records that puts the
// records used into index.
func NewImported(index *cache.Index) *Imported {
	return &Imported{index: index}
}

// Add registers the records of a cache manifest, or of an image carrying
// inline cache, and returns how many it has.
func (im *Imported) Add(img v1.Image) (int, error) {
	m, err := img.Manifest()
	if err != nil {
		return 0, err
	}
	raw, err := img.RawConfigFile()
	if err != nil {
		return 0, err
	}
	var meta []byte
	if string(m.Config.MediaType) == cache.ConfigMediaType {
		meta = raw
	} else {
		var cfg v1.ConfigFile
		if err := json.Unmarshal(raw, &cfg); err != nil {
			return 0, err
		}
		lbl, ok := cfg.Config.Labels[cache.InlineLabel]
		if !ok {
			return 0, errors.New("neither a strata cache manifest nor an image with inline cache")
		}
		meta = []byte(lbl)
	}
	exp, err := cache.ParseExport(meta)
	if err != nil {
		return 0, err
	}
	fetch := func(ctx context.Context, d digest.Digest) (io.ReadCloser, error) {
		h, err := v1.NewHash(d.String())
		if err != nil {
			return nil, err
		}
		l, err := img.LayerByDigest(h)
		if err != nil {
			return nil, err
		}
		return l.Compressed()
	}
	im.mu.Lock()
	defer im.mu.Unlock()
	if im.offers == nil {
		im.offers = map[cache.Key][]offer{}
		im.fetchers = map[digest.Digest]fetchFunc{}
		im.pending = map[digest.Digest][]cache.Exported{}
	}
	for _, e := range exp.Records {
		im.offers[e.Key] = addOffer(im.offers[e.Key], offer{exp: e, fetch: fetch})
	}
	im.chains = nil
	return len(exp.Records), nil
}

// addOffer adds o to os, replacing an offer of the same layer.
func addOffer(os []offer, o offer) []offer {
	for i, old := range os {
		if sameLayer(old.exp.Record.Layer, o.exp.Record.Layer) {
			if cache.Newer(o.exp, old.exp) {
				os[i] = o
			}
			return os
		}
	}
	return append(os, o)
}

func sameLayer(a, b *cache.Layer) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.Digest == b.Digest
}

// best returns the offer of key to take: of several layers recorded for
// it, the one most recorded steps follow (cache.Chains), then the one
// used last. Called with im.mu held.
func (im *Imported) best(key cache.Key) (offer, bool) {
	os := im.offers[key]
	if len(os) <= 1 {
		if len(os) == 0 {
			return offer{}, false
		}
		return os[0], true
	}
	if im.chains == nil {
		var all []cache.Exported
		for _, list := range im.offers {
			for _, o := range list {
				all = append(all, o.exp)
			}
		}
		im.chains = cache.NewChains(all)
	}
	pick, weight := os[0], im.chains.Weight(os[0].exp)
	for _, o := range os[1:] {
		if w := im.chains.Weight(o.exp); w > weight || w == weight && cache.Newer(o.exp, pick.exp) {
			pick, weight = o, w
		}
	}
	return pick, true
}

// Lookup returns the record of key that a source offers. Its layer is not
// fetched now: Fetch fetches it when the build needs it, so an
// intermediate layer nobody needs is never downloaded. A record without a
// layer goes into the local index at once, one with a layer once Fetch
// has its blob, so the local index never points at a missing blob.
func (im *Imported) Lookup(key cache.Key) (*cache.Record, bool) {
	im.mu.Lock()
	o, ok := im.best(key)
	if ok {
		im.use(key, o)
	}
	im.mu.Unlock()
	if !ok {
		return nil, false
	}
	rec := o.exp.Record
	if rec.Layer == nil {
		im.index.Put(key, &rec)
	}
	return &rec, true
}

// Offers reports whether a record looked up names the layer blob d, so
// that Fetch can get it.
func (im *Imported) Offers(d digest.Digest) bool {
	im.mu.Lock()
	defer im.mu.Unlock()
	return im.fetchers[d] != nil
}

// Others returns the records offered for key whose layer is not d:
// other layers of a step that is not reproducible, which the steps after
// it may have been built on (see Take).
func (im *Imported) Others(key cache.Key, d digest.Digest) []cache.Exported {
	im.mu.Lock()
	defer im.mu.Unlock()
	var out []cache.Exported
	for _, o := range im.offers[key] {
		if l := o.exp.Record.Layer; l != nil && l.Digest != d {
			out = append(out, o.exp)
		}
	}
	return out
}

// Take makes e, an alternative record of key, the one used: Fetch gets
// its layer and records it, as Lookup does for the one it gives.
func (im *Imported) Take(key cache.Key, e cache.Exported) {
	im.mu.Lock()
	defer im.mu.Unlock()
	for _, o := range im.offers[key] {
		if sameLayer(o.exp.Record.Layer, e.Record.Layer) {
			im.use(key, o)
		}
	}
}

// use readies the layer of o, the record taken for key: Fetch gets its
// blob from o's source and then records it. Called with im.mu held.
func (im *Imported) use(key cache.Key, o offer) {
	if l := o.exp.Record.Layer; l != nil {
		im.fetchers[l.Digest] = o.fetch
		im.pending[l.Digest] = append(im.pending[l.Digest], cache.Exported{Key: key, Record: o.exp.Record})
	}
}

// Fetch makes sure the layer blob d is in st, fetching it from the source
// that offered it, and records the records looked up that name it.
func (im *Imported) Fetch(ctx context.Context, st *store.Store, d digest.Digest) error {
	if st.HasBlob(d) {
		return nil
	}
	im.mu.Lock()
	fetch := im.fetchers[d]
	im.mu.Unlock()
	if fetch == nil {
		return fmt.Errorf("layer %s is neither in the store nor offered by --cache-from", d)
	}
	rc, err := fetch(ctx, d)
	if err != nil {
		return fmt.Errorf("fetch cache layer %s: %w", d, err)
	}
	defer rc.Close()
	if _, _, err := st.WriteBlob(ctx, rc, d); err != nil {
		return fmt.Errorf("fetch cache layer %s: %w", d, err)
	}
	im.mu.Lock()
	recs := im.pending[d]
	delete(im.pending, d)
	im.mu.Unlock()
	for _, e := range recs {
		rec := e.Record
		im.index.Put(e.Key, &rec)
	}
	return nil
}
