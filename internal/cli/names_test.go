package cli

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/tarball"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/strata-build/strata/internal/store"
)

// hostileNames are names Docker's reference grammar rejects that
// go-containerregistry's parser takes (issue 14).
var hostileNames = []string{"../../../tmp/x", "/abs/x", "a/../../b", "-rf", "host/ns/../../library/x", "localhost:5000/ns/../x:1"}

// storedNames lists the names in the store's index.json.
func storedNames(t *testing.T, root string) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, "index.json"))
	if err != nil {
		t.Fatal(err)
	}
	var idx ocispec.Index
	if err := json.Unmarshal(b, &idx); err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, m := range idx.Manifests {
		if n := m.Annotations[store.RefNameAnnotation]; n != "" {
			out = append(out, n)
		}
	}
	return out
}

// savedWithTags saves ref from root and rewrites the archive's manifest.json
// to give the image tags as its RepoTags.
func savedWithTags(t *testing.T, root, ref string, tags []string) string {
	t.Helper()
	saved := filepath.Join(t.TempDir(), "saved.tar")
	mustStrata(t, root, "save", "-o", saved, ref)
	members := readMembers(t, saved)
	for i, am := range members {
		if am.name != "manifest.json" {
			continue
		}
		var m tarball.Manifest
		if err := json.Unmarshal(am.body, &m); err != nil || len(m) != 1 {
			t.Fatalf("manifest.json %s: %v", am.body, err)
		}
		m[0].RepoTags = tags
		b, err := json.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		members[i].body = b
	}
	path := filepath.Join(t.TempDir(), "tagged.tar")
	writeTar(t, path, members)
	return path
}

// Every entry point that takes an image name refuses the names Docker
// rejects: tag, build -t, FROM, pull and push fail; load loads the image
// without them, with a warning. None reaches the store.
func TestHostileNamesRefused(t *testing.T) {
	root, _ := importedStore(t)
	want := storedNames(t, root)
	ctx := t.TempDir()
	for _, n := range hostileNames {
		t.Run(strings.ReplaceAll(n, "/", "_"), func(t *testing.T) {
			if err := os.WriteFile(filepath.Join(ctx, "Dockerfile"), []byte("FROM "+n+"\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			for _, args := range [][]string{
				{"tag", "--", "small:1", n},
				{"build", "-t", n, "--network", "none", ctx},
				{"build", ctx},
				{"pull", "--", n},
				{"push", "--", "small:1", n},
			} {
				r := strataIn(t, root, args...)
				if r.code == 0 || !strings.Contains(r.stderr, "invalid image") || !strings.Contains(r.stderr, n) {
					t.Errorf("strata %s: exit %d, want a refusal of the name:\n%s%s", strings.Join(args, " "), r.code, r.stdout, r.stderr)
				}
			}
			fresh := t.TempDir()
			r := mustStrata(t, fresh, "load", "-i", savedWithTags(t, root, "small:1", []string{n, "good:1"}))
			if !strings.Contains(r.stdout+r.stderr, n) || !strings.Contains(r.stdout, "Loaded image: good:1") {
				t.Errorf("strata load should warn about %q and load good:1:\n%s%s", n, r.stdout, r.stderr)
			}
			if got := storedNames(t, fresh); len(got) != 1 || got[0] != "docker.io/library/good:1" {
				t.Errorf("names stored by load: %q", got)
			}
		})
	}
	if got := storedNames(t, root); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("store names %q, want %q", got, want)
	}
}

// A docker archive whose image has 5000 names loads them all in one edit of
// the store's index, in seconds.
func TestLoadManyTags(t *testing.T) {
	root, _ := importedStore(t)
	tags := make([]string, 5000)
	for i := range tags {
		tags[i] = fmt.Sprintf("reg.example/many/app%d:v%d", i%50, i)
	}
	path := savedWithTags(t, root, "small:1", tags)
	fresh := t.TempDir()
	start := time.Now()
	mustStrata(t, fresh, "load", "-i", path)
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("loading 5000 tags took %s", d)
	}
	if got := storedNames(t, fresh); len(got) != len(tags) {
		t.Errorf("%d names stored, want %d", len(got), len(tags))
	}
}
