// Package gc reports and reclaims the space of strata's store: dangling
// (untagged) images, the build cache records, the blobs and unpacked layers
// only they keep alive, and the cache mounts. Tagged images are never
// removed.
package gc

import (
	"fmt"
	"os"
	"sort"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/strata-build/strata/internal/cache"
	"github.com/strata-build/strata/internal/image"
	"github.com/strata-build/strata/internal/platform"
	"github.com/strata-build/strata/internal/store"
)

// Report is the store's disk usage.
type Report struct {
	Images        store.Usage // tagged images: their blobs
	ImageLayers   store.Usage // unpacked layers of tagged images
	Dangling      store.Usage // blobs and unpacked layers only untagged images use
	DanglingCount int         // untagged images
	Cache         store.Usage // build cache records and the blobs only they use
	CacheLayers   store.Usage // unpacked layers only the build cache uses
	CacheMounts   store.Usage // RUN --mount=type=cache directories
	Unreferenced  store.Usage // blobs and layers nothing refers to
	Reclaimable   int64       // what prune --all would free
	CacheRecords  int
	OldestCacheAt time.Time
}

// DiskUsage measures the store.
func DiskUsage(s *store.Store, ix *cache.Index) (Report, error) {
	var r Report
	all, err := s.AllImages()
	if err != nil {
		return r, err
	}
	var tagged, dangling []store.Image
	for _, im := range all {
		if im.Name == "" {
			dangling = append(dangling, im)
		} else {
			tagged = append(tagged, im)
		}
	}
	r.DanglingCount = len(dangling)
	imgBlobs, imgLayers := s.RefsOf(tagged)
	danglingBlobs, danglingLayers := s.RefsOf(dangling)
	entries, err := ix.Entries()
	if err != nil {
		return r, err
	}
	cacheBlobs, cacheLayers := map[digest.Digest]bool{}, map[digest.Digest]bool{}
	r.CacheRecords = len(entries)
	for _, e := range entries {
		if r.OldestCacheAt.IsZero() || e.LastUsed.Before(r.OldestCacheAt) {
			r.OldestCacheAt = e.LastUsed
		}
		if l := e.Record.Layer; l != nil {
			cacheBlobs[l.Digest] = true
			cacheLayers[l.DiffID] = true
		}
	}
	blobEnts, _ := os.ReadDir(s.Path("blobs", "sha256"))
	for _, e := range blobEnts {
		d := digest.NewDigestFromEncoded(digest.SHA256, e.Name())
		fi, err := e.Info()
		if err != nil {
			continue
		}
		switch {
		case imgBlobs[d]:
			add(&r.Images, fi.Size())
		case danglingBlobs[d]:
			add(&r.Dangling, fi.Size())
		case cacheBlobs[d]:
			add(&r.Cache, fi.Size())
		default:
			add(&r.Unreferenced, fi.Size())
		}
	}
	layerEnts, _ := os.ReadDir(s.Path("layers"))
	for _, e := range layerEnts {
		d := digest.NewDigestFromEncoded(digest.SHA256, e.Name())
		size := store.DirSize(s.Path("layers", e.Name()))
		switch {
		case imgLayers[d]:
			add(&r.ImageLayers, size)
		case danglingLayers[d]:
			add(&r.Dangling, size)
		case cacheLayers[d]:
			add(&r.CacheLayers, size)
		default:
			add(&r.Unreferenced, size)
		}
	}
	mounts, _ := os.ReadDir(s.Path("cache", "mounts"))
	for _, e := range mounts {
		if e.IsDir() {
			add(&r.CacheMounts, store.DirSize(s.Path("cache", "mounts", e.Name())))
		}
	}
	r.Reclaimable = r.Dangling.Bytes + r.Cache.Bytes + r.CacheLayers.Bytes + r.CacheMounts.Bytes + r.Unreferenced.Bytes
	return r, nil
}

func add(u *store.Usage, n int64) {
	u.Count++
	u.Bytes += n
}

// Options select what Prune removes.
type Options struct {
	// Dangling removes the untagged images first (those created before
	// Until, when it is set), as docker system prune does.
	Dangling bool
	// All removes every build cache record and cache mount; without it only
	// records whose layer no tagged image uses (and unreferenced data) go.
	All bool
	// Until keeps records used more recently than this long ago.
	Until time.Duration
	// KeepStorage stops removing (least recently used first) once the cache
	// occupies at most this many bytes; 0 means no limit.
	KeepStorage int64
}

// Result is what Prune removed.
type Result struct {
	Images  []digest.Digest // IDs of the untagged images removed
	Records int
	Freed   store.Usage
}

// Prune removes dangling images and build cache records by the options
// (records least recently used first), then deletes the blobs and unpacked layers that neither a tagged
// image nor a remaining record uses. It fails when a build is running.
func Prune(s *store.Store, ix *cache.Index, o Options) (Result, error) {
	var res Result
	lock, err := s.LockExclusive()
	if err != nil {
		return res, err
	}
	defer lock.Unlock()
	if o.Dangling {
		if res.Images, err = pruneDangling(s, o.Until); err != nil {
			return res, err
		}
	}
	imgBlobs, imgLayers, err := s.ImageRefs()
	if err != nil {
		return res, err
	}
	entries, err := ix.Entries()
	if err != nil {
		return res, err
	}
	sort.Slice(entries, func(i, j int) bool { return entries[i].LastUsed.Before(entries[j].LastUsed) })
	size := func(e cache.Entry) int64 {
		if e.Record.Layer == nil || imgBlobs[e.Record.Layer.Digest] {
			return 0
		}
		return e.Record.Layer.Size + store.DirSize(s.LayerDir(e.Record.Layer.DiffID))
	}
	var total int64
	sizes := make([]int64, len(entries))
	for i, e := range entries {
		sizes[i] = size(e)
		total += sizes[i]
	}
	cutoff := time.Now().Add(-o.Until)
	keep := make([]bool, len(entries))
	for i, e := range entries {
		remove := o.All || (e.Record.Layer != nil && !imgBlobs[e.Record.Layer.Digest])
		if o.Until > 0 && e.LastUsed.After(cutoff) {
			remove = false
		}
		if o.KeepStorage > 0 && total <= o.KeepStorage {
			remove = false
		}
		if remove {
			ix.Delete(e.Key)
			total -= sizes[i]
			res.Records++
			continue
		}
		keep[i] = true
	}
	keepBlobs, keepLayers := imgBlobs, imgLayers
	for i, e := range entries {
		if keep[i] && e.Record.Layer != nil {
			keepBlobs[e.Record.Layer.Digest] = true
			keepLayers[e.Record.Layer.DiffID] = true
		}
	}
	if o.All {
		mounts := s.Path("cache", "mounts")
		if n := store.DirSize(mounts); n > 0 {
			res.Freed.Bytes += n
		}
		if err := os.RemoveAll(mounts); err != nil {
			return res, fmt.Errorf("prune cache mounts: %w", err)
		}
	}
	freed, err := s.Collect(keepBlobs, keepLayers)
	res.Freed.Count += freed.Count
	res.Freed.Bytes += freed.Bytes
	return res, err
}

// pruneDangling removes the untagged images (only those created more than
// until ago, when until is set) and returns their IDs.
func pruneDangling(s *store.Store, until time.Duration) ([]digest.Digest, error) {
	all, err := s.AllImages()
	if err != nil {
		return nil, err
	}
	cutoff := time.Now().Add(-until)
	var ids []digest.Digest
	for _, im := range all {
		if im.Name != "" {
			continue
		}
		img, err := image.LoadFor(s, im.Descriptor, platform.Host())
		if err != nil {
			continue // broken (fsck's to report), or an index without a host image: its blobs stay referenced
		}
		if until > 0 && img.Config.Created.After(cutoff) {
			continue
		}
		removed, err := s.RemoveUntagged(im.Descriptor.Digest)
		if err != nil {
			return ids, err
		}
		if removed {
			ids = append(ids, digest.Digest(img.Manifest.Config.Digest.String()))
		}
	}
	return ids, nil
}
