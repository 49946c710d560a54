package source

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"
)

// names is a build with named contexts and stages, as a Dockerfile's plan
// gives them: stages before the using stage (index in) resolve, later ones
// are errors.
type names struct {
	contexts map[string]string
	stages   []string // stage names by index
	in       int      // the stage using the value
}

func (n names) Context(name string) (string, bool) {
	v, ok := n.contexts[strings.ToLower(name)]
	return v, ok
}

func (n names) Stage(v string) (int, string, bool, error) {
	if i, err := strconv.Atoi(v); err == nil {
		if i >= n.in {
			return 0, "", false, fmt.Errorf("stage %d refers to itself or a later stage", i)
		}
		return i, n.stages[i], true, nil
	}
	for i, s := range n.stages {
		if strings.EqualFold(s, v) {
			if i >= n.in {
				return 0, "", false, fmt.Errorf("stage %q is defined after the stage that uses it", v)
			}
			return i, s, true, nil
		}
	}
	return 0, "", false, nil
}

func (n names) Suggest(v string) string {
	for _, s := range n.stages {
		if strings.HasPrefix(s, v[:1]) {
			return fmt.Sprintf("; did you mean %q?", s)
		}
	}
	return ""
}

func TestResolve(t *testing.T) {
	n := names{
		contexts: map[string]string{"src": "/some/dir", "base": "docker-image://busybox:1", "lay": "oci-layout:///l:v1", "web": "https://example.com/x"},
		stages:   []string{"builder", "stage-1", "later"},
		in:       2,
	}
	for _, tc := range []struct {
		from string
		want Ref
		err  string
	}{
		{"", Ref{Kind: BuildContext, Name: "build context"}, ""},
		{"src", Ref{Kind: NamedDir, From: "src", Name: "build context src", Dir: "/some/dir"}, ""},
		{"SRC", Ref{Kind: NamedDir, From: "SRC", Name: "build context SRC", Dir: "/some/dir"}, ""},
		{"base", Ref{Kind: NamedImage, From: "base", Name: "build context base", Image: "busybox:1"}, ""},
		{"lay", Ref{Kind: NamedImage, From: "lay", Name: "build context lay", Image: "/l:v1", OCILayout: true}, ""},
		{"web", Ref{}, "--build-context web=https://example.com/x: only directories, docker-image:// and oci-layout:// are supported"},
		{"builder", Ref{Kind: Stage, From: "builder", Name: "stage builder", Stage: 0}, ""},
		{"1", Ref{Kind: Stage, From: "1", Name: "stage stage-1", Stage: 1}, ""},
		{"later", Ref{}, `stage "later" is defined after the stage that uses it`},
		{"5", Ref{}, "stage 5 refers to itself or a later stage"},
		{"bulder", Ref{Kind: Image, From: "bulder", Name: "image bulder", Image: "bulder", Hint: `; did you mean "builder"?`}, ""},
		{"alpine:3", Ref{Kind: Image, From: "alpine:3", Name: "image alpine:3", Image: "alpine:3"}, ""},
	} {
		got, err := Resolve(tc.from, n)
		if tc.err != "" {
			if err == nil || err.Error() != tc.err {
				t.Errorf("Resolve(%q): error %v, want %q", tc.from, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("Resolve(%q) = %+v, %v; want %+v", tc.from, got, err, tc.want)
		}
	}
}

func TestResolveBase(t *testing.T) {
	n := names{contexts: map[string]string{"scratch": "/ctx", "img": "docker-image://x", "bad": "git://y"}, stages: []string{"a"}, in: 1}
	for _, tc := range []struct {
		base string
		want Ref
		err  bool
	}{
		{"scratch", Ref{Kind: NamedDir, From: "scratch", Name: "build context scratch", Dir: "/ctx"}, false},
		{"img", Ref{Kind: NamedImage, From: "img", Name: "build context img", Image: "x"}, false},
		{"bad", Ref{}, true},
		{"busybox", Ref{Kind: Image, From: "busybox", Name: "image busybox", Image: "busybox"}, false},
		// the plan resolves stages; a name it left is an image
		{"a", Ref{Kind: Image, From: "a", Name: "image a", Image: "a"}, false},
	} {
		got, err := ResolveBase(tc.base, n)
		if (err != nil) != tc.err || got != tc.want {
			t.Errorf("ResolveBase(%q) = %+v, %v; want %+v (error %v)", tc.base, got, err, tc.want, tc.err)
		}
	}
	got, err := ResolveBase("SCRATCH", names{})
	if err != nil || got.Kind != Scratch || got.Name != "scratch" {
		t.Errorf("ResolveBase(SCRATCH) = %+v, %v", got, err)
	}
}

func TestPullError(t *testing.T) {
	base := errors.New("pull failed")
	err := Ref{Kind: Image, From: "bulder", Hint: `; did you mean "builder"?`}.PullError(base)
	if want := `--from=bulder: no earlier stage has that name; did you mean "builder"?; as an image: pull failed`; err.Error() != want {
		t.Errorf("got %q, want %q", err, want)
	}
	if !errors.Is(err, base) {
		t.Error("the pull error is not wrapped")
	}
	err = Ref{Kind: Image, From: "nope"}.PullError(base)
	if want := `--from=nope: not a stage name, and pulling it as an image failed: pull failed`; err.Error() != want {
		t.Errorf("got %q, want %q", err, want)
	}
}

func TestKindString(t *testing.T) {
	for k, want := range map[Kind]string{BuildContext: "build context", NamedDir: "named context directory", NamedImage: "named context image", Stage: "stage", Image: "image", Scratch: "scratch", Kind(42): "Kind(42)", Kind(-1): "Kind(-1)"} {
		if got := k.String(); got != want {
			t.Errorf("Kind(%d) = %q, want %q", int(k), got, want)
		}
	}
}
