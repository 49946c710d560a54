package source

import (
	"fmt"
	"strings"
)

// Kind is what a from value names.
type Kind int

// The kinds of Ref.
const (
	// BuildContext is the build context (an empty from value).
	BuildContext Kind = iota
	// NamedDir is a --build-context directory.
	NamedDir
	// NamedImage is a --build-context image: docker-image://REF or
	// oci-layout://PATH[:TAG|@DIGEST].
	NamedImage
	// Stage is an earlier stage.
	Stage
	// Image is an image reference.
	Image
	// Scratch is the empty filesystem (FROM scratch).
	Scratch
)

var kindNames = [...]string{"build context", "named context directory", "named context image", "stage", "image", "scratch"}

func (k Kind) String() string {
	if k < 0 || int(k) >= len(kindNames) {
		return fmt.Sprintf("Kind(%d)", int(k))
	}
	return kindNames[k]
}

// Ref is a from value resolved to what it names, before anything of it is
// read, pulled or unpacked.
type Ref struct {
	Kind Kind
	// From is the value as written ("" for the build context).
	From string
	// Name is what messages call the source: "build context", "build
	// context NAME", "stage NAME", "image REF".
	Name string
	// Stage is the index of the stage (Stage).
	Stage int
	// Dir is the directory (NamedDir).
	Dir string
	// Image is the image reference (Image, NamedImage from
	// docker-image://), or the OCI layout PATH[:TAG|@DIGEST] (NamedImage
	// with OCILayout).
	Image     string
	OCILayout bool
	// Hint is a "; did you mean X?" about a stage name close to an Image's
	// reference, or "".
	Hint string
}

// Names are what a from value may name besides image references: the
// named contexts and the stages the stage using it may read.
type Names interface {
	// Context returns the value of the --build-context called name (in any
	// case); ok is false when there is none.
	Context(name string) (value string, ok bool)
	// Stage resolves v as a stage index or name: ok is false when v names
	// no stage, err is set when it names one that may not be used (itself,
	// a later stage, an index out of range). display is the stage's name in
	// messages.
	Stage(v string) (index int, display string, ok bool, err error)
	// Suggest returns a "; did you mean X?" hint of a stage name close to
	// v, or "".
	Suggest(v string) string
}

// Resolve turns the from value of a COPY, ADD or RUN --mount into what it
// names: "" the build context, then a named context, an earlier stage, or
// else an image reference.
func Resolve(from string, n Names) (Ref, error) {
	if from == "" {
		return Ref{Kind: BuildContext, Name: "build context"}, nil
	}
	if ref, ok, err := named(from, n); ok || err != nil {
		return ref, err
	}
	idx, display, ok, err := n.Stage(from)
	if err != nil {
		return Ref{}, err
	}
	if ok {
		return Ref{Kind: Stage, From: from, Name: "stage " + display, Stage: idx}, nil
	}
	return Ref{Kind: Image, From: from, Name: "image " + from, Image: from, Hint: n.Suggest(from)}, nil
}

// ResolveBase turns the value of a FROM that names no earlier stage (the
// plan resolves those) into what it names: a named context, scratch, or
// else an image reference.
func ResolveBase(base string, n Names) (Ref, error) {
	if ref, ok, err := named(base, n); ok || err != nil {
		return ref, err
	}
	if strings.EqualFold(base, "scratch") {
		return Ref{Kind: Scratch, From: base, Name: "scratch"}, nil
	}
	return Ref{Kind: Image, From: base, Name: "image " + base, Image: base}, nil
}

// named resolves v as a --build-context: a directory, docker-image://REF
// or oci-layout://PATH[:TAG|@DIGEST]; ok is false when v names none.
func named(v string, n Names) (ref Ref, ok bool, err error) {
	val, ok := n.Context(v)
	if !ok {
		return Ref{}, false, nil
	}
	ref = Ref{Kind: NamedDir, From: v, Name: "build context " + v}
	switch {
	case strings.HasPrefix(val, "docker-image://"):
		ref.Kind, ref.Image = NamedImage, strings.TrimPrefix(val, "docker-image://")
	case strings.HasPrefix(val, "oci-layout://"):
		ref.Kind, ref.Image, ref.OCILayout = NamedImage, strings.TrimPrefix(val, "oci-layout://"), true
	case strings.Contains(val, "://"):
		return Ref{}, true, fmt.Errorf("--build-context %s=%s: only directories, docker-image:// and oci-layout:// are supported", v, val)
	default:
		ref.Dir = val
	}
	return ref, true, nil
}

// PullError is the error of a COPY --from whose value names no stage and
// could not be resolved as an image (err): with a did-you-mean hint when a
// stage name is close.
func (r Ref) PullError(err error) error {
	if r.Hint != "" {
		return fmt.Errorf("--from=%s: no earlier stage has that name%s; as an image: %w", r.From, r.Hint, err)
	}
	return fmt.Errorf("--from=%s: not a stage name, and pulling it as an image failed: %w", r.From, err)
}
