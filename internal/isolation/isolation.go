// Package isolation names the ways strata can isolate a build on a
// machine, and picks one from what the process is allowed to do:
//
//   - rootful: root with CAP_SYS_ADMIN (a host, a privileged container):
//     overlay snapshots, RUN in runc with its own namespaces.
//   - rootless: an ordinary user: strata enters a user namespace that maps
//     the user to root and the user's /etc/subuid ranges after it (package
//     userns), then works as rootful does inside it (overlay in the user
//     namespace, runc rootless).
//   - chroot: uid 0 without CAP_SYS_ADMIN, e.g. a Kubernetes pod or a
//     container with the default capabilities and seccomp profile, where no
//     user namespace can be made and nothing can be mounted: plain-directory
//     snapshots (snapshot/native) and RUN in a chroot (executor/chroot), with
//     the container's own network. The container is the sandbox.
package isolation

import (
	"fmt"
	"os"

	"github.com/moby/sys/userns"
	"golang.org/x/sys/unix"
)

// Mode is an isolation mode.
type Mode string

// The modes.
const (
	Auto     Mode = "auto"
	Rootful  Mode = "rootful"
	Rootless Mode = "rootless"
	Chroot   Mode = "chroot"
)

// Env is the environment variable that sets the mode (the --isolation flag
// wins).
const Env = "STRATA_ISOLATION"

// Parse reads a mode name; "" is Auto.
func Parse(s string) (Mode, error) {
	switch m := Mode(s); m {
	case "":
		return Auto, nil
	case Auto, Rootful, Rootless, Chroot:
		return m, nil
	}
	return "", fmt.Errorf("unknown isolation %q (want auto, rootful, rootless or chroot)", s)
}

// Detect picks the mode for Auto from the calling process: not root →
// Rootless; root that may mount (CAP_SYS_ADMIN in its user namespace) →
// Rootful, or Rootless when that namespace is strata's own (inside is true
// in the re-executed strata, see userns.Init); root that may not → Chroot.
func Detect(inside bool) Mode {
	switch {
	case inside:
		return Rootless
	case os.Geteuid() != 0:
		return Rootless
	case HasSysAdmin():
		return Rootful
	default:
		return Chroot
	}
}

// HasSysAdmin reports whether the calling process holds CAP_SYS_ADMIN in
// its effective set (what mounting needs).
func HasSysAdmin() bool {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return false
	}
	return data[unix.CAP_SYS_ADMIN/32].Effective&(1<<(unix.CAP_SYS_ADMIN%32)) != 0
}

// InUserNamespace reports whether the process runs in a user namespace
// other than the machine's first one (then overlayfs keeps its own
// metadata in user.overlay.* xattrs, the userxattr mount option).
func InUserNamespace() bool { return userns.RunningInUserNS() }
