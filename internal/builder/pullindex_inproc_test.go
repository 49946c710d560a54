package builder

import (
	"context"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/strata-build/strata/internal/platform"
	"github.com/strata-build/strata/internal/store"
)

// TestInprocPullIndex: a base image whose name is a multi-platform index
// is pulled for the platform asked; the store keeps the index under the
// name (as containerd does) with the images pulled so far, so that a later
// resolution for another platform pulls that one image, and once both are
// held, both resolve offline; a platform the index lacks is an error that
// lists what it has. fsck finds the store sound with one image missing.
func TestInprocPullIndex(t *testing.T) {
	t.Parallel()
	reg := startRegistry(t)
	e := newBareInprocEnv(t)
	e.withRegistry(reg)
	ctx := context.Background()

	hostImg, otherImg, host, other, idxDigest := pushMulti(t, reg)

	resolve := func(p v1.Platform) string {
		t.Helper()
		img, err := e.b.ResolveImage(ctx, "busybox:multi", false, p, nil)
		if err != nil {
			t.Fatalf("resolve busybox:multi for %s: %v", platform.Format(p), err)
		}
		return img.Config.Architecture
	}
	if got := resolve(host); got != host.Architecture {
		t.Errorf("busybox:multi for the host: %s", got)
	}
	im, ok, err := e.s.Lookup("busybox:multi")
	if err != nil || !ok || im.Descriptor.Digest.String() != idxDigest.String() || im.Descriptor.MediaType != ocispec.MediaTypeImageIndex {
		t.Errorf("busybox:multi in the store = %+v, %v, %v; want the index %s", im.Descriptor, ok, err, idxDigest)
	}
	if rep, err := e.s.Fsck(ctx, store.FsckOptions{}); err != nil || len(rep.Problems) > 0 {
		t.Errorf("fsck with one of the index's images: %v %+v", err, rep)
	}
	if got := resolve(other); got != other.Architecture {
		t.Errorf("busybox:multi for %s: %s", platform.Format(other), got)
	}
	e.b.Registry = nil // offline: both are held
	for _, p := range []v1.Platform{host, other} {
		if got := resolve(p); got != p.Architecture {
			t.Errorf("offline, busybox:multi for %s: %s", platform.Format(p), got)
		}
	}
	_, err = e.b.ResolveImage(ctx, "busybox:multi", false, v1.Platform{OS: "linux", Architecture: "s390x"}, nil)
	if err == nil || !strings.Contains(err.Error(), "no linux/s390x image") || !strings.Contains(err.Error(), platform.Format(other)) {
		t.Errorf("busybox:multi for s390x: %v; want an error listing the index's platforms", err)
	}
	blobs, _, err := e.s.ImageRefs()
	if err != nil {
		t.Fatal(err)
	}
	for _, img := range []v1.Image{hostImg, otherImg} {
		d, _ := img.Digest()
		if !blobs[digest.Digest(d.String())] {
			t.Errorf("the store's images do not keep %s", d)
		}
	}
}

// pushMulti pushes busybox:multi to reg: an index of the registry's
// busybox (the host's platform) and the same image with the config of
// another architecture (arm64, or amd64 on arm64: its programs are still
// the host's, so a RUN "for" it runs natively).
func pushMulti(t *testing.T, reg string) (hostImg, otherImg v1.Image, host, other v1.Platform, idxDigest v1.Hash) {
	t.Helper()
	hostRef, err := name.ParseReference(reg+"/library/busybox:latest", name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	hostImg, err = remote.Image(hostRef)
	if err != nil {
		t.Fatal(err)
	}
	host = platform.Host()
	other = v1.Platform{OS: "linux", Architecture: "arm64"}
	if host.Architecture == "arm64" {
		other.Architecture = "amd64"
	}
	cfg, err := hostImg.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cfg = cfg.DeepCopy()
	cfg.Architecture = other.Architecture
	otherImg, err = mutate.ConfigFile(hostImg, cfg)
	if err != nil {
		t.Fatal(err)
	}
	idx := mutate.AppendManifests(mutate.IndexMediaType(empty.Index, types.OCIImageIndex),
		mutate.IndexAddendum{Add: hostImg, Descriptor: v1.Descriptor{Platform: &host}},
		mutate.IndexAddendum{Add: otherImg, Descriptor: v1.Descriptor{Platform: &other}})
	multiRef, err := name.ParseReference(reg+"/library/busybox:multi", name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.WriteIndex(multiRef, idx); err != nil {
		t.Fatal(err)
	}
	idxDigest, err = idx.Digest()
	if err != nil {
		t.Fatal(err)
	}

	return hostImg, otherImg, host, other, idxDigest
}
