package image

import (
	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// FillHistoryTimes gives every history entry without a time the one that
// BuildKit's image exporter gives it (normalizeLayersAndHistory in its
// exporter/containerimage/writer.go). Entries before the first one without
// a time keep theirs. Past that point, each entry with a time becomes the
// time of the untimed entries after it; the untimed entries that come before
// any such entry — a Dockerfile's leading ENV or LABEL, which would otherwise
// carry the base image's time — take the time of the first timed entry that
// follows them (or, when none does, the last time seen). A build leaves the
// times of config-only steps unset and fills them here, on the whole history
// of the image it writes.
func FillHistoryTimes(h []v1.History) {
	var created v1.Time
	gap := false
	for _, e := range h {
		if e.Created.IsZero() {
			gap = true
			continue
		}
		created = e.Created
		if gap {
			break
		}
	}
	gap = false
	for i := range h {
		if h[i].Created.IsZero() {
			gap = true
			h[i].Created = created
			continue
		}
		if gap {
			created = h[i].Created
		}
	}
}

// LastHistoryTime is an image's creation time as BuildKit sets it when the
// build does not: the time of the last history entry that has one (zero when
// none has).
func LastHistoryTime(h []v1.History) v1.Time {
	var t v1.Time
	for _, e := range h {
		if !e.Created.IsZero() {
			t = e.Created
		}
	}
	return t
}
