package registry

import (
	"strings"
	"testing"
)

func TestParseTagAndReferenceErrors(t *testing.T) {
	for _, tc := range []struct {
		ref     string
		tag     bool
		wantErr string // "" means valid
	}{
		{ref: "busybox", tag: true},
		{ref: "localhost:5000/team/app:1.0", tag: true},
		{ref: "Bad:Tag", tag: true, wantErr: `invalid image name "Bad:Tag": repository name "Bad" must be lowercase`},
		{ref: "localhost:5000/Team/app", tag: true, wantErr: `repository name "Team/app" must be lowercase`},
		{ref: "app@sha256:" + strings.Repeat("0", 64), tag: true, wantErr: "cannot have a digest"},
		{ref: "app:a:b", tag: true, wantErr: "repository can only contain"},
		{ref: "", tag: true, wantErr: "invalid image name: empty"},
		{ref: "app@sha256:" + strings.Repeat("0", 64)},
		{ref: "Bad:Tag", wantErr: `invalid image reference "Bad:Tag": repository name "Bad" must be lowercase`},
		{ref: "app@sha256:abc", wantErr: `invalid image reference "app@sha256:abc"`},
		{ref: "../../../tmp/x", tag: true, wantErr: `invalid image name "../../../tmp/x": the path components`},
		{ref: "host/ns/../../library/x", wantErr: `invalid image reference "host/ns/../../library/x": the path components`},
		{ref: "/abs/x", wantErr: "the path components"},
		{ref: "-rf", tag: true, wantErr: "the path components"},
		{ref: "localhost:5000/ns/../x:1", wantErr: "the path components"},
	} {
		var err error
		if tc.tag {
			_, err = ParseTag(tc.ref)
		} else {
			_, err = ParseReference(tc.ref)
		}
		switch {
		case tc.wantErr == "" && err != nil:
			t.Errorf("%q: %v", tc.ref, err)
		case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
			t.Errorf("%q: error %v, want one with %q", tc.ref, err, tc.wantErr)
		case err != nil && strings.Contains(err.Error(), "could not parse reference"):
			t.Errorf("%q: unexplained error %v", tc.ref, err)
		}
	}
}
