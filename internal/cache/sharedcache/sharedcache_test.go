package sharedcache

import (
	"context"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	ggcrregistry "github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/opencontainers/go-digest"

	"github.com/strata-build/strata/internal/cache"
	cacheremote "github.com/strata-build/strata/internal/cache/remote"
	"github.com/strata-build/strata/internal/layer"
	"github.com/strata-build/strata/internal/registry"
)

// testRegistry is go-containerregistry's registry on loopback; fail, when
// set, may answer a request itself (a 500, a reset) and return true.
type testRegistry struct {
	host   string
	client *registry.Client
	fail   atomic.Pointer[func(w http.ResponseWriter, r *http.Request) bool]
}

func newRegistry(t *testing.T) *testRegistry {
	t.Helper()
	tr := &testRegistry{}
	inner := ggcrregistry.New(ggcrregistry.Logger(log.New(io.Discard, "", 0)))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if f := tr.fail.Load(); f != nil && (*f)(w, r) {
			return
		}
		inner.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	tr.host = strings.TrimPrefix(srv.URL, "http://")
	tr.client = registry.New(registry.Config{Registries: map[string]registry.Host{tr.host: {Insecure: true}}})
	return tr
}

// export uploads n random layers to repo and returns a cache export with
// a record for each (keys "<id>-<i>") and one record with no layer.
func (tr *testRegistry) export(t *testing.T, repo, id string, n int) cache.Export {
	t.Helper()
	r, err := name.NewRepository(tr.host+"/"+repo, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC().Truncate(time.Second)
	var exp cache.Export
	for i := 0; i < n; i++ {
		l, err := random.Layer(256, "application/vnd.oci.image.layer.v1.tar+gzip")
		if err != nil {
			t.Fatal(err)
		}
		if err := remote.WriteLayer(r, l); err != nil {
			t.Fatal(err)
		}
		d, _ := l.Digest()
		diff, _ := l.DiffID()
		size, _ := l.Size()
		exp.Records = append(exp.Records, cache.Exported{
			Key:  cache.Key(fmt.Sprintf("%s-%d", id, i)),
			Used: now,
			Record: cache.Record{Created: now, Layer: &cache.Layer{Blob: layer.Blob{
				Digest: digest.Digest(d.String()), DiffID: digest.Digest(diff.String()), Size: size,
				MediaType: "application/vnd.oci.image.layer.v1.tar+gzip"}}},
		})
	}
	exp.Records = append(exp.Records, cache.Exported{Key: cache.Key(id + "-empty"), Used: now, Record: cache.Record{Created: now}})
	return exp
}

func journalImage(t *testing.T, exp cache.Export) v1.Image {
	t.Helper()
	img, _, err := cacheremote.Image(nil, exp)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// checkLayers fails the test unless every layer exp names is fetched
// through img.
func checkLayers(t *testing.T, img v1.Image, exp cache.Export, what string) {
	t.Helper()
	for _, r := range exp.Records {
		if r.Record.Layer == nil {
			continue
		}
		h, _ := v1.NewHash(string(r.Record.Layer.Digest))
		l, err := img.LayerByDigest(h)
		if err == nil {
			var rc io.ReadCloser
			if rc, err = l.Compressed(); err == nil {
				rc.Close()
			}
		}
		if err != nil {
			t.Errorf("%s: layer of %s: %v", what, r.Key, err)
		}
	}
}

func fast() Options {
	return Options{Settle: 30 * time.Millisecond}
}

// keysOf reads every record an import of ref sees.
func keysOf(t *testing.T, tr *testRegistry, ref string) (map[cache.Key]bool, int) {
	t.Helper()
	imgs, err := Read(context.Background(), tr.client, ref)
	if err != nil {
		t.Fatal(err)
	}
	keys := map[cache.Key]bool{}
	for _, img := range imgs {
		exp, err := ExportOf(img)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range exp.Records {
			keys[r.Key] = true
		}
	}
	return keys, len(imgs)
}

// Eight builders exporting to one ref at once: every record of every one
// is found by an import, and the ref alone ends up holding them.
func TestConcurrentPublishLosesNothing(t *testing.T) {
	tr := newRegistry(t)
	ref := tr.host + "/fleet/cache:main"
	const n = 8
	exps := make([]cache.Export, n)
	for i := range exps {
		exps[i] = tr.export(t, "fleet/cache", fmt.Sprintf("b%d", i), 3)
	}
	var wg sync.WaitGroup
	results := make([]Result, n)
	errs := make([]error, n)
	for i := range exps {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i], errs[i] = Publish(context.Background(), tr.client, ref, journalImage(t, exps[i]), fast())
		}()
	}
	wg.Wait()
	merged := 0
	for i, err := range errs {
		if err != nil {
			t.Fatalf("builder %d: %v", i, err)
		}
		if results[i].Merged {
			merged++
		}
	}
	keys, imgs := keysOf(t, tr, ref)
	for _, exp := range exps {
		for _, r := range exp.Records {
			if !keys[r.Key] {
				t.Errorf("record %s is lost", r.Key)
			}
		}
	}
	if len(keys) != n*4 {
		t.Errorf("an import sees %d records, want %d", len(keys), n*4)
	}
	t.Logf("%d of %d exports settled their merge; an import reads %d images", merged, n, imgs)
	if merged == 0 {
		t.Errorf("no merge settled")
	}

	// One more export settles and covers every journal: the ref alone serves.
	extra := tr.export(t, "fleet/cache", "late", 1)
	if _, err := Publish(context.Background(), tr.client, ref, journalImage(t, extra), fast()); err != nil {
		t.Fatal(err)
	}
	keys, imgs = keysOf(t, tr, ref)
	if imgs != 1 || len(keys) != n*4+2 {
		t.Errorf("after a quiet merge an import reads %d images with %d records, want 1 with %d", imgs, len(keys), n*4+2)
	}
}

// The merged ref names its layers, and they are fetched through it.
func TestMergedRefServesLayers(t *testing.T) {
	tr := newRegistry(t)
	ref := tr.host + "/c/cache:x"
	for _, id := range []string{"a", "b"} {
		if _, err := Publish(context.Background(), tr.client, ref, journalImage(t, tr.export(t, "c/cache", id, 2)), fast()); err != nil {
			t.Fatal(err)
		}
	}
	imgs, err := Read(context.Background(), tr.client, ref)
	if err != nil || len(imgs) != 1 {
		t.Fatalf("read: %d images, %v", len(imgs), err)
	}
	exp, _ := ExportOf(imgs[0])
	checkLayers(t, imgs[0], exp, "the merged cache")
}

// Journals covered by the ref and older than Grace are deleted by a later
// export, and nothing is lost.
func TestOldJournalsDeleted(t *testing.T) {
	tr := newRegistry(t)
	ref := tr.host + "/g/cache:x"
	if _, err := Publish(context.Background(), tr.client, ref, journalImage(t, tr.export(t, "g/cache", "old", 1)), fast()); err != nil {
		t.Fatal(err)
	}
	later := fast()
	later.Now = func() time.Time { return time.Now().Add(time.Hour) }
	res, err := Publish(context.Background(), tr.client, ref, journalImage(t, tr.export(t, "g/cache", "new", 1)), later)
	if err != nil {
		t.Fatal(err)
	}
	if res.Deleted != 1 {
		t.Errorf("deleted %d old journals, want 1", res.Deleted)
	}
	tags, err := tr.client.Tags(context.Background(), ref)
	if err != nil {
		t.Fatal(err)
	}
	journals := 0
	for _, tg := range tags {
		if isJournal("x", tg) {
			journals++
		}
	}
	if journals != 1 {
		t.Errorf("tags after the cleanup: %v, want the ref and the new journal", tags)
	}
	if keys, _ := keysOf(t, tr, ref); len(keys) != 4 {
		t.Errorf("records after the cleanup: %v", keys)
	}
}

// max-size and max-age bound the merged ref: the newest records stay.
func TestBoundsKeepNewest(t *testing.T) {
	tr := newRegistry(t)
	ref := tr.host + "/b/cache:x"
	old := tr.export(t, "b/cache", "old", 2)
	for i := range old.Records {
		old.Records[i].Used = old.Records[i].Used.Add(-48 * time.Hour)
	}
	if _, err := Publish(context.Background(), tr.client, ref, journalImage(t, old), fast()); err != nil {
		t.Fatal(err)
	}
	o := fast()
	o.Bounds = cache.Bounds{MaxAge: 24 * time.Hour}
	if _, err := Publish(context.Background(), tr.client, ref, journalImage(t, tr.export(t, "b/cache", "new", 2)), o); err != nil {
		t.Fatal(err)
	}
	exp, err := readExport(context.Background(), tr.client, ref)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range exp.Records {
		if strings.HasPrefix(string(r.Key), "old") {
			t.Errorf("max-age=24h kept %s, used 48 h ago", r.Key)
		}
	}
	if len(exp.Records) != 3 {
		t.Errorf("max-age kept %d records, want the 3 new ones", len(exp.Records))
	}
}

// A registry that fails an export part way (500s on uploads, connections
// reset on manifest puts) leaves the previous cache whole and usable.
func TestFailedExportKeepsPreviousCache(t *testing.T) {
	tr := newRegistry(t)
	ref := tr.host + "/f/cache:x"
	first := tr.export(t, "f/cache", "first", 2)
	if _, err := Publish(context.Background(), tr.client, ref, journalImage(t, first), fast()); err != nil {
		t.Fatal(err)
	}
	second := tr.export(t, "f/cache", "second", 2)
	var calls atomic.Int32
	fail := func(w http.ResponseWriter, r *http.Request) bool {
		if r.Method == http.MethodGet || r.Method == http.MethodHead {
			return false
		}
		if calls.Add(1)%2 == 0 {
			http.Error(w, "injected failure", http.StatusInternalServerError)
			return true
		}
		if r.Method == http.MethodPut && strings.Contains(r.URL.Path, "/manifests/") {
			hj, ok := w.(http.Hijacker)
			if ok {
				if c, _, err := hj.Hijack(); err == nil {
					c.Close() // a reset mid-request
					return true
				}
			}
		}
		return false
	}
	tr.fail.Store(&fail)
	_, err := Publish(context.Background(), tr.client, ref, journalImage(t, second), fast())
	tr.fail.Store(nil)
	if err == nil {
		t.Fatal("an export through a failing registry succeeded")
	}
	imgs, err := Read(context.Background(), tr.client, ref)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[cache.Key]bool{}
	for _, img := range imgs {
		exp, err := ExportOf(img)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range exp.Records {
			seen[r.Key] = true
		}
		checkLayers(t, img, exp, "after the failed export")
	}
	for _, r := range first.Records {
		if !seen[r.Key] {
			t.Errorf("record %s of the previous export is gone", r.Key)
		}
	}
}

func TestJournalTag(t *testing.T) {
	h := v1.Hash{Algorithm: "sha256", Hex: strings.Repeat("ab", 32)}
	j := JournalTag("main", h)
	if j != "main.journal-abababababababab" || !isJournal("main", j) || isJournal("mai", j) || isJournal("main", "main") {
		t.Errorf("journal tag %q", j)
	}
	long := strings.Repeat("t", 128)
	if j := JournalTag(long, h); len(j) > 128 || !isJournal(long, j) {
		t.Errorf("journal tag of a long tag: %q (%d)", j, len(j))
	}
	if _, err := name.NewTag("r/x:" + JournalTag(long, h)); err != nil {
		t.Error(err)
	}
}

// A merge that never lands (every put of the ref is refused) still loses
// nothing: the export's journal is read by imports.
func TestUnmergedJournalIsRead(t *testing.T) {
	tr := newRegistry(t)
	ref := tr.host + "/u/cache:x"
	first := tr.export(t, "u/cache", "first", 1)
	if _, err := Publish(context.Background(), tr.client, ref, journalImage(t, first), fast()); err != nil {
		t.Fatal(err)
	}
	fail := func(w http.ResponseWriter, r *http.Request) bool {
		if r.Method == http.MethodPut && strings.HasSuffix(r.URL.Path, "/manifests/x") {
			http.Error(w, `{"errors":[{"code":"DENIED","message":"tag is immutable"}]}`, http.StatusForbidden) // as ECR with immutable tags
			return true
		}
		return false
	}
	tr.fail.Store(&fail)
	o := fast()
	o.Attempts = 2
	res, err := Publish(context.Background(), tr.client, ref, journalImage(t, tr.export(t, "u/cache", "second", 1)), o)
	tr.fail.Store(nil)
	if err != nil || res.Merged {
		t.Fatalf("publish with the ref unwritable: %+v, %v; want the journal written, unmerged", res, err)
	}
	keys, imgs := keysOf(t, tr, ref)
	if imgs != 2 || !keys["first-0"] || !keys["second-0"] {
		t.Errorf("import reads %d images with %v; want the ref and the unmerged journal", imgs, keys)
	}
}

// Imports that run while exports do never see half an export: every
// image they get parses, and every layer it names can be fetched.
func TestReadWhileWriting(t *testing.T) {
	tr := newRegistry(t)
	ref := tr.host + "/rw/cache:x"
	exps := make([]cache.Export, 8)
	for i := range exps {
		exps[i] = tr.export(t, "rw/cache", fmt.Sprintf("w%d", i), 2)
	}
	done := make(chan struct{})
	var writers, readers sync.WaitGroup
	for i := range exps {
		writers.Add(1)
		go func() {
			defer writers.Done()
			if _, err := Publish(context.Background(), tr.client, ref, journalImage(t, exps[i]), fast()); err != nil {
				t.Error(err)
			}
		}()
	}
	var reads atomic.Int32
	for r := 0; r < 4; r++ {
		readers.Add(1)
		go func() {
			defer readers.Done()
			for {
				select {
				case <-done:
					return
				default:
				}
				imgs, err := Read(context.Background(), tr.client, ref)
				if err != nil {
					continue // nothing there yet
				}
				reads.Add(1)
				for _, img := range imgs {
					exp, err := ExportOf(img)
					if err != nil {
						t.Errorf("an import read a cache it cannot parse: %v", err)
						return
					}
					checkLayers(t, img, exp, "an import while exports run")
				}
			}
		}()
	}
	writers.Wait()
	close(done)
	readers.Wait()
	if reads.Load() == 0 {
		t.Error("no import ran while the exports did")
	}
}
