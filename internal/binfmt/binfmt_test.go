package binfmt

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/strata-build/strata/internal/platform"
)

// fakeDir makes a binfmt_misc directory with the handlers given (name →
// file content); register: the "register" file of a mounted one.
func fakeDir(t *testing.T, register bool, handlers map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	if register {
		if err := os.WriteFile(filepath.Join(dir, "register"), nil, 0o200); err != nil {
			t.Fatal(err)
		}
	}
	for name, content := range handlers {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func foreign() (v1.Platform, string) {
	if platform.Host().Architecture == "arm64" {
		return v1.Platform{OS: "linux", Architecture: "amd64"}, "qemu-x86_64"
	}
	return v1.Platform{OS: "linux", Architecture: "arm64"}, "qemu-aarch64"
}

func TestCheck(t *testing.T) {
	p, handler := foreign()
	const ok = "enabled\ninterpreter /usr/libexec/qemu-binfmt/aarch64-binfmt-P\nflags: POCF\noffset 0\nmagic 7f454c46\n"
	for _, tc := range []struct {
		name     string
		dir      string
		want     string // the handler, or a part of the error
		wantFail bool
	}{
		{"registered", fakeDir(t, true, map[string]string{handler: ok}), handler, false},
		{"not mounted", fakeDir(t, false, nil), "binfmt_misc is not mounted", true},
		{"not registered", fakeDir(t, true, nil), "it is not registered", true},
		{"disabled", fakeDir(t, true, map[string]string{handler: strings.Replace(ok, "enabled", "disabled", 1)}), "is disabled", true},
		{"no F flag", fakeDir(t, true, map[string]string{handler: strings.Replace(ok, "POCF", "OC", 1)}), "without the F flag", true},
	} {
		got, err := Check(tc.dir, p)
		if tc.wantFail {
			if err == nil || !errors.Is(err, ErrNoEmulator) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("%s: Check = %q, %v; want an error with %q", tc.name, got, err, tc.want)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("%s: Check = %q, %v; want %q", tc.name, got, err, tc.want)
		}
	}
	// The host's platform (and arm64/v8 is arm64) runs natively, whatever
	// binfmt_misc holds.
	host := platform.Host()
	if got, err := Check(fakeDir(t, false, nil), host); err != nil || got != "" {
		t.Errorf("Check(host) = %q, %v", got, err)
	}
	if _, err := Check(fakeDir(t, true, nil), v1.Platform{OS: "windows", Architecture: "amd64"}); err == nil {
		t.Error("Check(windows/amd64): no error")
	}
}
