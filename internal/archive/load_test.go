package archive

import "testing"

func TestNamedDigest(t *testing.T) {
	const hex = "e4f4664d8e9446783f3a849399fd99289085f8ae7b807b57667234f254d998d0"
	for _, c := range []struct {
		member string
		named  bool
	}{
		{"blobs/sha256/" + hex, true}, // docker 25 and later
		{hex + ".json", true},         // older docker's config
		{"sha256:" + hex, true},       // go-containerregistry's config
		{hex + ".tar.gz", true},       // go-containerregistry's layer
		{hex + ".tar", true},          // skopeo's layer
		{hex + "/layer.tar", false},   // older docker's layer: an ID, not a digest
		{"manifest.json", false},
		{hex[:63] + ".json", false},
		{"blobs/sha512/" + hex + hex, false},
	} {
		d, ok := namedDigest(c.member)
		if ok != c.named || (ok && d.String() != "sha256:"+hex) {
			t.Errorf("namedDigest(%q) = %q, %v; want named %v", c.member, d, ok, c.named)
		}
	}
}
