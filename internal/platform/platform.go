// Package platform is strata's one place for platforms: the host's,
// parsing --platform (one or a comma-separated list), normalizing as
// containerd and BuildKit do (aarch64 and arm64/v8 are arm64, armhf is
// arm/v7, x86_64 is amd64, ...), formatting, the folder name a platform
// gets in a local output (linux_arm64), and BuildKit's automatic platform
// ARGs (BUILDPLATFORM ... TARGETVARIANT).
//
// Platforms are go-containerregistry's v1.Platform, as in the rest of
// strata; the rules are github.com/containerd/platforms's.
package platform

import (
	"fmt"
	"strings"

	"github.com/containerd/platforms"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Host returns the platform of this machine, normalized (linux/amd64,
// linux/arm64, linux/arm/v7, ...).
func Host() v1.Platform {
	return fromSpec(platforms.Normalize(platforms.DefaultSpec()))
}

// Parse parses one platform ("linux/arm64", "linux/arm/v7", "arm64": the
// OS defaults to linux) and normalizes it.
func Parse(s string) (v1.Platform, error) {
	p, err := platforms.Parse(strings.TrimSpace(s))
	if err != nil {
		return v1.Platform{}, fmt.Errorf("platform %q: %w", s, err)
	}
	return fromSpec(platforms.Normalize(p)), nil
}

// ParseList parses a comma-separated list of platforms, in order; two
// that are the same once normalized (linux/arm64 and linux/arm64/v8) are
// an error.
func ParseList(s string) ([]v1.Platform, error) {
	var out []v1.Platform
	seen := map[string]string{}
	for _, part := range strings.Split(s, ",") {
		if strings.TrimSpace(part) == "" {
			return nil, fmt.Errorf("platform list %q: an empty entry", s)
		}
		p, err := Parse(part)
		if err != nil {
			return nil, err
		}
		f := Format(p)
		if first, ok := seen[f]; ok {
			return nil, fmt.Errorf("platform list %q: %q and %q are the same platform (%s)", s, first, strings.TrimSpace(part), f)
		}
		seen[f] = strings.TrimSpace(part)
		out = append(out, p)
	}
	return out, nil
}

// Normalize returns p as containerd normalizes it (its OS version and
// features kept).
func Normalize(p v1.Platform) v1.Platform {
	n := fromSpec(platforms.Normalize(toSpec(p)))
	n.OSVersion, n.OSFeatures, n.Features = p.OSVersion, p.OSFeatures, p.Features
	return n
}

// Format returns "os/arch[/variant]" of p, normalized.
func Format(p v1.Platform) string {
	return platforms.Format(platforms.Normalize(toSpec(p)))
}

// PathID returns the name of p's folder in a multi-platform local output,
// as BuildKit names it: "linux_arm64", "linux_arm_v7".
func PathID(p v1.Platform) string {
	return strings.ReplaceAll(Format(p), "/", "_")
}

// Same reports whether a and b are one platform once normalized (OS,
// architecture and variant).
func Same(a, b v1.Platform) bool {
	return Format(a) == Format(b)
}

// Args returns BuildKit's automatic platform ARGs for a build that runs
// on build and produces target: BUILDPLATFORM, BUILDOS, BUILDARCH,
// BUILDVARIANT and the same four with TARGET.
func Args(build, target v1.Platform) map[string]string {
	args := map[string]string{}
	for pre, p := range map[string]v1.Platform{"BUILD": Normalize(build), "TARGET": Normalize(target)} {
		args[pre+"PLATFORM"] = Format(p)
		args[pre+"OS"] = p.OS
		args[pre+"ARCH"] = p.Architecture
		args[pre+"VARIANT"] = p.Variant
	}
	return args
}

func toSpec(p v1.Platform) ocispec.Platform {
	return ocispec.Platform{OS: p.OS, Architecture: p.Architecture, Variant: p.Variant, OSVersion: p.OSVersion, OSFeatures: p.OSFeatures}
}

func fromSpec(p ocispec.Platform) v1.Platform {
	return v1.Platform{OS: p.OS, Architecture: p.Architecture, Variant: p.Variant, OSVersion: p.OSVersion, OSFeatures: p.OSFeatures}
}
