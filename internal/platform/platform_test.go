package platform

import (
	"runtime"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

func TestParseNormalizes(t *testing.T) {
	for in, want := range map[string]string{
		"linux/amd64":    "linux/amd64",
		"linux/x86_64":   "linux/amd64",
		"linux/arm64":    "linux/arm64",
		"linux/arm64/v8": "linux/arm64",
		"linux/aarch64":  "linux/arm64",
		"linux/arm":      "linux/arm/v7",
		"linux/armhf":    "linux/arm/v7",
		"linux/armel":    "linux/arm/v6",
		"linux/arm/v6":   "linux/arm/v6",
		"linux/i386":     "linux/386",
		"linux/ppc64le":  "linux/ppc64le",
		"linux/s390x":    "linux/s390x",
		"arm64":          "linux/arm64",
		" linux/riscv64": "linux/riscv64",
	} {
		p, err := Parse(in)
		if err != nil {
			t.Errorf("Parse(%q): %v", in, err)
			continue
		}
		if got := Format(p); got != want {
			t.Errorf("Parse(%q) = %s, want %s", in, got, want)
		}
	}
	for _, bad := range []string{"", "linux/", "linux/arm64/v8/extra", "not a platform!"} {
		if p, err := Parse(bad); err == nil {
			t.Errorf("Parse(%q) = %+v, want an error", bad, p)
		}
	}
}

func TestParseList(t *testing.T) {
	ps, err := ParseList("linux/amd64, linux/arm64,linux/arm/v7")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, p := range ps {
		got = append(got, Format(p)+"="+PathID(p))
	}
	if want := "linux/amd64=linux_amd64 linux/arm64=linux_arm64 linux/arm/v7=linux_arm_v7"; strings.Join(got, " ") != want {
		t.Errorf("ParseList = %v, want %s", got, want)
	}
	for _, bad := range []string{"linux/arm64,linux/arm64/v8", "linux/amd64,", "linux/amd64,,linux/arm64", "linux/amd64,bogus/"} {
		if _, err := ParseList(bad); err == nil {
			t.Errorf("ParseList(%q): no error", bad)
		}
	}
}

func TestHost(t *testing.T) {
	h := Host()
	if h.OS != "linux" || (runtime.GOARCH != "arm" && h.Architecture != runtime.GOARCH) {
		t.Errorf("Host() = %+v on %s", h, runtime.GOARCH)
	}
	if !Same(h, Normalize(h)) {
		t.Errorf("Host() %+v is not normalized", h)
	}
}

func TestArgs(t *testing.T) {
	got := Args(v1.Platform{OS: "linux", Architecture: "amd64"}, v1.Platform{OS: "linux", Architecture: "arm", Variant: "v7"})
	want := map[string]string{
		"BUILDPLATFORM": "linux/amd64", "BUILDOS": "linux", "BUILDARCH": "amd64", "BUILDVARIANT": "",
		"TARGETPLATFORM": "linux/arm/v7", "TARGETOS": "linux", "TARGETARCH": "arm", "TARGETVARIANT": "v7",
	}
	if len(got) != len(want) {
		t.Errorf("Args = %v", got)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("Args[%s] = %q, want %q", k, got[k], v)
		}
	}
	// arm64/v8 is arm64 without a variant, as BuildKit gives it.
	if a := Args(v1.Platform{OS: "linux", Architecture: "arm64", Variant: "v8"}, v1.Platform{OS: "linux", Architecture: "arm64"}); a["BUILDVARIANT"] != "" || a["BUILDPLATFORM"] != "linux/arm64" {
		t.Errorf("Args for arm64/v8: %v", a)
	}
}
