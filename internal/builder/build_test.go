package builder

import (
	"strings"
	"testing"
)

func TestSyntaxNotice(t *testing.T) {
	digest := "@sha256:" + strings.Repeat("a", 64)
	for _, tc := range []struct {
		syntax string
		want   string // "" none, "labs" the labs note, "custom" the custom frontend notice
	}{
		{"", ""},
		{"docker/dockerfile:1", ""},
		{"docker/dockerfile:1.7", ""},
		{"docker/dockerfile:1.7.1", ""},
		{"docker/dockerfile", ""},
		{"docker/dockerfile:latest", ""},
		{"docker.io/docker/dockerfile:1", ""},
		{"index.docker.io/docker/dockerfile:1.4", ""},
		{"docker/dockerfile:1" + digest, ""},
		{"docker.io/docker/dockerfile:1.7.1" + digest, ""},
		{"docker/dockerfile" + digest, ""},
		{"docker/dockerfile-upstream:1.9", ""},
		{"docker/dockerfile:1-labs", "labs"},
		{"docker/dockerfile:1.7-labs" + digest, "labs"},
		{"docker/dockerfile:2", "custom"},
		{"docker/dockerfile:1.x", "custom"},
		{"example.com/docker/dockerfile:1", "custom"},
		{"tonistiigi/dockerfile:runmount", "custom"},
		{"cgr.dev/chainguard/apko", "custom"},
	} {
		got := syntaxNotice(tc.syntax)
		switch tc.want {
		case "":
			if got != "" {
				t.Errorf("%q: unexpected notice %q", tc.syntax, got)
			}
		case "labs":
			if !strings.Contains(got, "labs-only features") {
				t.Errorf("%q: notice %q, want the labs note", tc.syntax, got)
			}
		case "custom":
			if !strings.Contains(got, "custom frontends cannot run here") || !strings.Contains(got, tc.syntax) {
				t.Errorf("%q: notice %q, want the custom frontend notice", tc.syntax, got)
			}
		}
	}
}
