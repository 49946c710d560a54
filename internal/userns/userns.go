// Package userns runs strata as an ordinary user the way rootlesskit and
// podman do: the strata process re-executes itself in a new user, mount and
// PID namespace in which the user is root (uid 0 maps to the user's uid)
// and uids 1…N map to the user's ranges in /etc/subuid and /etc/subgid,
// written by the setuid helpers newuidmap and newgidmap (Debian's uidmap).
// Inside, strata holds every capability over its own namespaces: it mounts
// overlayfs (Linux ≥ 5.11), runs runc (which sees it is in a user namespace
// and goes rootless) and chowns files to the uids a Dockerfile names, which
// land on disk as the matching subordinate uids, never as the user's own.
//
// The namespaces live as long as the inner strata: it is the init of its PID
// namespace, so when it dies (even by SIGKILL, which the outer process passes
// on through the parent-death signal) the kernel kills every RUN process and
// drops every mount it made. Nothing outlives a killed build.
//
// The hand-over takes two execs, because capabilities are computed at exec:
//
//	outer (the user's process)   clones stage "wait" with CLONE_NEWUSER|NEWNS|NEWPID,
//	                             runs newuidmap/newgidmap on it, then releases it
//	stage "wait"                 waits for the release; now uid 0 in the namespace,
//	                             it re-executes itself and so gains all capabilities
//	stage "in"                   makes its mounts private, mounts its own /proc, runs
//	                             the command
package userns

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"

	"github.com/moby/sys/user"
)

// stageEnv carries the stage of the hand-over to the re-executed strata.
const stageEnv = "_STRATA_USERNS_STAGE"

// Stages of the hand-over.
const (
	stageWait = "wait"
	stageIn   = "in"
)

// releaseFD is the descriptor on which stage "wait" reads its release (the
// first of exec.Cmd.ExtraFiles).
const releaseFD = 3

// Mapping is the identity map of a namespace: each entry maps Count ids
// from ID inside to ParentID outside.
type Mapping struct {
	UIDs, GIDs []user.IDMap
}

// String describes the uid map as "0→1000, 1…65536→100000…165535".
func (m Mapping) String() string {
	parts := make([]string, 0, len(m.UIDs))
	for _, r := range m.UIDs {
		if r.Count == 1 {
			parts = append(parts, fmt.Sprintf("%d→%d", r.ID, r.ParentID))
			continue
		}
		parts = append(parts, fmt.Sprintf("%d…%d→%d…%d", r.ID, r.ID+r.Count-1, r.ParentID, r.ParentID+r.Count-1))
	}
	return strings.Join(parts, ", ")
}

// CurrentMapping is the mapping for the calling user: uid 0 is the user's
// own uid (gid 0 the user's gid), followed by the user's subordinate ranges
// in the order /etc/subuid (/etc/subgid) lists them.
func CurrentMapping() (Mapping, error) {
	u, err := user.CurrentUser()
	if err != nil {
		return Mapping{}, fmt.Errorf("rootless: who is uid %d: %w", os.Getuid(), err)
	}
	subU, err := user.CurrentUserSubUIDs()
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return Mapping{}, fmt.Errorf("rootless: read /etc/subuid: %w", err)
	}
	subG, err := user.CurrentUserSubGIDs()
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return Mapping{}, fmt.Errorf("rootless: read /etc/subgid: %w", err)
	}
	if len(subU) == 0 || len(subG) == 0 {
		file := "/etc/subuid"
		if len(subU) > 0 {
			file = "/etc/subgid"
		}
		return Mapping{}, &MissingError{
			What: fmt.Sprintf("user %s has no range in %s", u.Name, file),
			Fix:  fmt.Sprintf("as root: usermod --add-subuids 100000-165535 --add-subgids 100000-165535 %s", u.Name),
		}
	}
	return Mapping{
		UIDs: withSubIDs(int64(os.Getuid()), subU),
		GIDs: withSubIDs(int64(os.Getgid()), subG),
	}, nil
}

// InsideMapping is the mapping of the user namespace the process is in,
// from /proc/self/uid_map and gid_map.
func InsideMapping() (Mapping, error) {
	u, err := user.CurrentProcessUIDMap()
	if err != nil {
		return Mapping{}, fmt.Errorf("read uid_map: %w", err)
	}
	g, err := user.CurrentProcessGIDMap()
	if err != nil {
		return Mapping{}, fmt.Errorf("read gid_map: %w", err)
	}
	return Mapping{UIDs: u, GIDs: g}, nil
}

// withSubIDs maps 0 to own and the subordinate ranges after it.
func withSubIDs(own int64, subs []user.SubID) []user.IDMap {
	m := []user.IDMap{{ID: 0, ParentID: own, Count: 1}}
	next := int64(1)
	for _, s := range subs {
		if s.Count <= 0 {
			continue
		}
		m = append(m, user.IDMap{ID: next, ParentID: s.SubID, Count: s.Count})
		next += s.Count
	}
	return m
}

// A MissingError says what this machine lacks for rootless builds and how
// to fix it, in one line.
type MissingError struct {
	What string // e.g. "user namespaces are disabled (user.max_user_namespaces = 0)"
	Fix  string // e.g. "as root: sysctl -w user.max_user_namespaces=15000"
}

func (e *MissingError) Error() string {
	return "rootless builds need a user namespace, but " + e.What + "; fix: " + e.Fix
}

// Check reports the first thing this machine lacks for entering a user
// namespace with the calling user's ranges, as a *MissingError, and returns
// the mapping otherwise. What only an attempt tells (a sysctl or AppArmor
// refusing unprivileged user namespaces, where a profile may still allow
// strata) is said when the attempt fails (see Run).
func Check() (Mapping, error) {
	for _, bin := range []string{"newuidmap", "newgidmap"} {
		if _, err := exec.LookPath(bin); err != nil {
			return Mapping{}, &MissingError{What: bin + " is not installed", Fix: "install the uidmap package (apt-get install uidmap)"}
		}
	}
	if n, ok := readSysctl("/proc/sys/user/max_user_namespaces"); ok && n == 0 {
		return Mapping{}, &MissingError{What: "user namespaces are disabled (user.max_user_namespaces = 0)", Fix: "as root: sysctl -w user.max_user_namespaces=15000"}
	}
	return CurrentMapping()
}

func readSysctl(path string) (int64, bool) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, false
	}
	n, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	return n, err == nil
}

// whyNoUserNS explains a failure to create a user namespace from the
// machine's settings, as a *MissingError, or returns err.
func whyNoUserNS(err error) error {
	if n, ok := readSysctl("/proc/sys/kernel/unprivileged_userns_clone"); ok && n == 0 {
		return &MissingError{What: "unprivileged user namespaces are disabled (kernel.unprivileged_userns_clone = 0)", Fix: "as root: sysctl -w kernel.unprivileged_userns_clone=1"}
	}
	if n, ok := readSysctl("/proc/sys/kernel/apparmor_restrict_unprivileged_userns"); ok && n == 1 {
		return &MissingError{
			What: "AppArmor restricts unprivileged user namespaces (kernel.apparmor_restrict_unprivileged_userns = 1)",
			Fix:  "add an AppArmor profile granting userns to the strata binary, or as root: sysctl -w kernel.apparmor_restrict_unprivileged_userns=0",
		}
	}
	return &MissingError{
		What: fmt.Sprintf("this process may not create one (%v): a container's seccomp profile or a security module forbids it", err),
		Fix:  "inside a container without privileges, use --isolation=chroot",
	}
}
