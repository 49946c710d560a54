// Package sharedcache keeps one registry cache reference that many
// builders export to at once (a fleet of CI runners or Kubernetes Jobs
// with one --cache-to ref) without losing what any of them exported.
//
// A registry has no compare-and-swap: two builders that read a tag,
// merge, and put it back can each overwrite the other. So an export is
// written twice:
//
//   - as a journal: the export's own cache manifest under a tag of its
//     own, TAG.journal-<digest>, that nobody else ever writes. From the
//     moment it is tagged, every reader sees it, so no record is lost
//     whatever happens to the shared tag;
//   - merged into TAG: the union of TAG's records and of every journal
//     TAG does not list yet (cache.Merge: one record per key and layer),
//     bounded by max-size and max-age, naming the journals it covers. It is put, read back after a short random wait,
//     and merged again while it does not cover the journal.
//
// A reader takes TAG and the journals TAG does not cover (one listing of
// the repository's tags), so after quiet every record of every export is
// found, and most of the time TAG alone holds them all. Every manifest is
// put after its blobs and every tag after its manifest, so a reader never
// sees half an export, and a failed export leaves TAG as it was.
//
// Journals that TAG covers are deleted by a later export once they are
// older than Grace, where the registry allows deletion. That is safe:
// a merge puts TAG only within Window of reading it, a journal is deleted
// only after a reading of TAG that covers it and Grace after it was
// written (Grace > Window), and a merge that finds a listed journal gone
// starts again from a TAG that covers it.
package sharedcache

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/strata-build/strata/internal/cache"
	"github.com/strata-build/strata/internal/cache/remote"
	"github.com/strata-build/strata/internal/registry"
)

// journalInfix separates a cache tag from its journals' digests.
const journalInfix = ".journal-"

// errJournalGone is a journal listed but deleted before it was read: a
// newer TAG covers it, so the reading starts again.
var errJournalGone = errors.New("a journal was deleted while it was read (a newer merge covers it)")

// Options tune a Publish. The zero value is the default.
type Options struct {
	Bounds cache.Bounds
	// Logf reports what a publish did (nil: nothing).
	Logf func(format string, args ...any)
	// Window bounds the time from reading TAG to putting it (1 minute);
	// Grace is how old a covered journal must be to be deleted (10
	// minutes); Attempts bounds the merges (5); Settle is the longest
	// random wait before reading TAG back (200 ms). Tests shorten them.
	Window, Grace, Settle time.Duration
	Attempts              int
	// Now is the clock (time.Now).
	Now func() time.Time
}

func (o *Options) defaults() {
	if o.Window <= 0 {
		o.Window = time.Minute
	}
	if o.Grace <= 0 {
		o.Grace = 10 * time.Minute
	}
	if o.Settle <= 0 {
		o.Settle = 200 * time.Millisecond
	}
	if o.Attempts <= 0 {
		o.Attempts = 5
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logf == nil {
		o.Logf = func(string, ...any) {}
	}
}

// Result says what a Publish did.
type Result struct {
	Journal string // the journal's tag
	Merged  bool   // TAG was read back covering the journal
	Records int    // records in the last merge put
	Deleted int    // old journals deleted
}

// JournalTag returns the tag of the journal of tag whose manifest has
// digest d: the tag, cut to leave room, then ".journal-" and 16 hex digits.
func JournalTag(tag string, d v1.Hash) string {
	return journalPrefix(tag) + d.Hex[:16]
}

// journalPrefix is what the journal tags of tag start with: the tag, cut
// to leave room within the 128 characters of a tag, and ".journal-".
func journalPrefix(tag string) string {
	return tag[:min(len(tag), 100)] + journalInfix
}

// isJournal reports whether t is a journal tag of tag.
func isJournal(tag, t string) bool {
	rest, ok := strings.CutPrefix(t, journalPrefix(tag))
	return ok && len(rest) == 16
}

// repoTag splits a cache reference into its repository and tag.
func repoTag(ref string) (repo, tag string, err error) {
	t, err := registry.ParseTag(ref)
	if err != nil {
		return "", "", err
	}
	return t.Context().Name(), t.TagStr(), nil
}

// Publish writes journal, a cache image of exp (made by remote.Image), as
// a journal of ref and merges it into ref. An error means the journal
// itself could not be written; a merge that does not settle is not an
// error (Result.Merged is false), as readers find the journal anyway.
func Publish(ctx context.Context, reg *registry.Client, ref string, journal v1.Image, o Options) (Result, error) {
	o.defaults()
	repo, tag, err := repoTag(ref)
	if err != nil {
		return Result{}, err
	}
	d, err := journal.Digest()
	if err != nil {
		return Result{}, err
	}
	res := Result{Journal: JournalTag(tag, d)}
	if err := reg.PushImage(ctx, repo+":"+res.Journal, journal); err != nil {
		return res, err
	}
	written := o.Now()
	for attempt := 0; attempt < o.Attempts && !res.Merged; attempt++ {
		if attempt > 0 {
			if err := sleep(ctx, o.Settle); err != nil {
				return res, err
			}
		}
		n, err := merge(ctx, reg, repo, tag, cache.Journal{Tag: res.Journal, Written: written}, o)
		if err != nil {
			if ctx.Err() != nil {
				return res, ctx.Err()
			}
			o.Logf("warning: merging the cache into %s: %v (the export is kept as %s)", ref, err, res.Journal)
			continue
		}
		res.Records = n
		if err := sleep(ctx, o.Settle); err != nil {
			return res, err
		}
		cur, err := readExport(ctx, reg, ref)
		if err != nil {
			o.Logf("warning: reading back %s: %v", ref, err)
			continue
		}
		if covers(cur, res.Journal) {
			res.Merged = true
			res.Deleted = deleteOld(ctx, reg, repo, cur.Journals, o)
		}
	}
	return res, nil
}

// merge reads TAG and the journals it does not cover, and puts their
// union (with self) back as TAG, bounded. It returns the records put.
func merge(ctx context.Context, reg *registry.Client, repo, tag string, self cache.Journal, o Options) (int, error) {
	start := time.Now()
	ref := repo + ":" + tag
	v, err := look(ctx, reg, repo, tag, true)
	if err != nil {
		return 0, err
	}
	journals := v.covered
	if !hasJournal(journals, self.Tag) && !slices.Contains(v.uncovered, self.Tag) {
		v.uncovered = append(v.uncovered, self.Tag) // the listing may lag behind the push
	}
	news, err := readJournals(ctx, reg, repo, v.uncovered)
	if err != nil {
		return 0, err
	}
	exps := []cache.Export{v.exp}
	for _, n := range news {
		exps = append(exps, n.exp)
		w := written(n.exp)
		if n.tag == self.Tag {
			w = self.Written
		}
		journals = append(journals, cache.Journal{Tag: n.tag, Written: w})
	}
	sort.Slice(journals, func(i, j int) bool { return journals[i].Tag < journals[j].Tag })
	merged := cache.Export{Records: o.Bounds.Bound(cache.Merge(exps...), o.Now()), Journals: journals}
	img, _, err := remote.Image(nil, merged)
	if err != nil {
		return 0, err
	}
	if time.Since(start) > o.Window {
		return 0, fmt.Errorf("reading %s took longer than %s: merging again", ref, o.Window)
	}
	if err := reg.PushImage(ctx, ref, img); err != nil {
		return 0, err
	}
	return len(merged.Records), nil
}

// view is what a shared cache ref holds at one moment.
type view struct {
	img       v1.Image        // TAG's image (nil: none): a strata cache, or an image with inline cache
	exp       cache.Export    // its records, when it is a strata cache
	covered   []cache.Journal // the journals TAG covers that are still listed
	uncovered []string        // the listed journal tags TAG does not cover
}

// look reads TAG and lists its journals. With strict, a registry that
// cannot list tags is an error; else TAG alone is the view.
func look(ctx context.Context, reg *registry.Client, repo, tag string, strict bool) (view, error) {
	ref := repo + ":" + tag
	var v view
	img, err := getImage(ctx, reg, ref)
	if err != nil {
		return v, err
	}
	v.img = img
	if img != nil {
		if exp, err := ExportOf(img); err == nil {
			v.exp = exp
		}
	}
	tags, err := reg.Tags(ctx, ref)
	if err != nil && strict {
		return v, err
	}
	listed := map[string]bool{}
	for _, t := range tags {
		if isJournal(tag, t) {
			listed[t] = true
		}
	}
	for _, j := range v.exp.Journals {
		if listed[j.Tag] {
			v.covered = append(v.covered, j)
			delete(listed, j.Tag)
		}
	}
	v.uncovered = slices.Sorted(maps.Keys(listed))
	return v, nil
}

// journalExport is a journal read.
type journalExport struct {
	tag string
	img v1.Image
	exp cache.Export
}

// readJournals reads the journals tags of repo, a few at a time. A journal
// gone since the listing means a newer TAG covers it: an error, so that
// the merge starts again from that TAG.
func readJournals(ctx context.Context, reg *registry.Client, repo string, tags []string) ([]journalExport, error) {
	out := make([]journalExport, len(tags))
	errs := make([]error, len(tags))
	sem := make(chan struct{}, 8)
	var wg sync.WaitGroup
	for i, t := range tags {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			img, err := getImage(ctx, reg, repo+":"+t)
			if err == nil && img == nil {
				err = fmt.Errorf("%s: %w", t, errJournalGone)
			}
			if err != nil {
				errs[i] = err
				return
			}
			exp, err := ExportOf(img)
			if err != nil {
				errs[i] = fmt.Errorf("journal %s: %w", t, err)
				return
			}
			out[i] = journalExport{tag: t, img: img, exp: exp}
		}()
	}
	wg.Wait()
	return out, errors.Join(errs...)
}

// Read returns the cache images of ref for an import: ref's own (if any)
// and every journal it does not cover. A journal deleted between the
// listing and its reading (a newer ref covers it) makes Read start again,
// twice at most; a registry that cannot list tags gives ref's alone.
func Read(ctx context.Context, reg *registry.Client, ref string) ([]v1.Image, error) {
	repo, tag, err := repoTag(ref)
	if err != nil {
		return nil, err
	}
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		imgs, err := read(ctx, reg, repo, tag)
		if err == nil {
			return imgs, nil
		}
		lastErr = err
		if !errors.Is(err, errJournalGone) {
			break
		}
	}
	return nil, lastErr
}

func read(ctx context.Context, reg *registry.Client, repo, tag string) ([]v1.Image, error) {
	v, err := look(ctx, reg, repo, tag, false) // journals are an addition: TAG alone still serves
	if err != nil {
		return nil, err
	}
	js, err := readJournals(ctx, reg, repo, v.uncovered)
	if err != nil {
		return nil, err
	}
	var imgs []v1.Image
	if v.img != nil {
		imgs = append(imgs, v.img)
	}
	for _, j := range js {
		imgs = append(imgs, j.img)
	}
	if len(imgs) == 0 {
		return nil, fmt.Errorf("%s:%s: no cache there (no such tag, and no journals of it)", repo, tag)
	}
	return imgs, nil
}

// getImage fetches the manifest ref names as an image, or nil if there is
// none.
func getImage(ctx context.Context, reg *registry.Client, ref string) (v1.Image, error) {
	d, err := reg.Get(ctx, ref)
	if err != nil {
		if registry.IsNotFound(err) {
			return nil, nil
		}
		return nil, err
	}
	return d.Image()
}

// readExport returns the cache export ref holds: empty if there is none,
// or if ref holds something that is not a strata cache (it is replaced).
func readExport(ctx context.Context, reg *registry.Client, ref string) (cache.Export, error) {
	img, err := getImage(ctx, reg, ref)
	if err != nil || img == nil {
		return cache.Export{}, err
	}
	exp, err := ExportOf(img)
	if err != nil {
		return cache.Export{}, nil
	}
	return exp, nil
}

// ExportOf reads the records of a strata cache image (a journal, or a
// merged ref).
func ExportOf(img v1.Image) (cache.Export, error) {
	m, err := img.Manifest()
	if err != nil {
		return cache.Export{}, err
	}
	if string(m.Config.MediaType) != cache.ConfigMediaType {
		return cache.Export{}, fmt.Errorf("not a strata cache (config media type %s)", m.Config.MediaType)
	}
	raw, err := img.RawConfigFile()
	if err != nil {
		return cache.Export{}, err
	}
	return cache.ParseExport(raw)
}

// written is when a journal was written: the latest use of its records.
func written(exp cache.Export) time.Time {
	var w time.Time
	for _, r := range exp.Records {
		if r.Used.After(w) {
			w = r.Used
		}
	}
	return w
}

// covers reports whether exp names the journal tag.
func covers(exp cache.Export, tag string) bool { return hasJournal(exp.Journals, tag) }

func hasJournal(js []cache.Journal, tag string) bool {
	for _, j := range js {
		if j.Tag == tag {
			return true
		}
	}
	return false
}

// deleteOld deletes the journals of js older than Grace (at most 32 per
// publish), and returns how many it deleted. A registry that refuses
// deletion ends it quietly: the journals stay, covered, and readers skip
// them.
func deleteOld(ctx context.Context, reg *registry.Client, repo string, js []cache.Journal, o Options) int {
	n := 0
	for _, j := range js {
		if n == 32 || j.Written.IsZero() || o.Now().Sub(j.Written) < o.Grace {
			continue
		}
		err := reg.DeleteTag(ctx, repo+":"+j.Tag)
		if registry.IsNotFound(err) {
			continue // gone already
		}
		if errors.Is(err, registry.ErrUnsupported) {
			return n
		}
		if err != nil {
			o.Logf("warning: deleting the merged cache journal %s: %v", j.Tag, err)
			continue
		}
		n++
	}
	return n
}

// sleep waits a random time up to max, or until ctx ends.
func sleep(ctx context.Context, max time.Duration) error {
	t := time.NewTimer(rand.N(max) + max/10)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
