package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// The isolation modes strata is benchmarked in besides rootful root:
//
//	strata-rootless  as an ordinary user the harness creates (useradd, which
//	                 gives it a /etc/subuid range): a user namespace, overlay
//	                 and runc inside it
//	strata-chroot    as root holding only Docker's default capabilities
//	                 (setpriv drops the rest, CAP_SYS_ADMIN among them), as
//	                 in an unprivileged container or pod: native snapshots,
//	                 RUN in a chroot
//
// The same binary, the same workloads and the same kind of store as
// "strata"; only the privileges differ.

// benchUserName is the ordinary user of strata-rootless.
const benchUserName = "strata-bench"

// benchUser is the ordinary user the rootless builder runs as.
type benchUser struct {
	uid, gid int
	home     string
	created  bool
}

// newBenchUser creates the bench user (home in dir), or uses an existing
// one of that name.
func newBenchUser(dir string) (*benchUser, error) {
	u := &benchUser{home: filepath.Join(dir, "home")}
	if _, err := exec.Command("id", "-u", benchUserName).Output(); err != nil {
		if out, err := exec.Command("useradd", "--create-home", "--home-dir", u.home, "--shell", "/bin/sh", benchUserName).CombinedOutput(); err != nil {
			return nil, fmt.Errorf("useradd %s: %v: %s", benchUserName, err, out)
		}
		u.created = true
	}
	for _, f := range []struct {
		flag string
		dst  *int
	}{{"-u", &u.uid}, {"-g", &u.gid}} {
		out, err := exec.Command("id", f.flag, benchUserName).Output()
		if err != nil {
			return nil, err
		}
		if *f.dst, err = strconv.Atoi(strings.TrimSpace(string(out))); err != nil {
			return nil, err
		}
	}
	if err := os.MkdirAll(u.home, 0o755); err != nil {
		return nil, err
	}
	return u, os.Chown(u.home, u.uid, u.gid)
}

// remove deletes the user if this run created it.
func (u *benchUser) remove() {
	if u != nil && u.created {
		if out, err := exec.Command("userdel", "--force", benchUserName).CombinedOutput(); err != nil {
			logf("userdel %s: %v: %s", benchUserName, err, out)
		}
	}
}

// apply makes cmd run as the user.
func (u *benchUser) apply(cmd *exec.Cmd) {
	cmd.SysProcAttr.Credential = &syscall.Credential{Uid: uint32(u.uid), Gid: uint32(u.gid), Groups: []uint32{}}
	cmd.Env = append(cmd.Env, "HOME="+u.home, "USER="+benchUserName, "LOGNAME="+benchUserName)
}

// defaultCaps is Docker's default capability set, what a container (and a
// Kubernetes pod at Pod Security Baseline) holds, for setpriv.
const defaultCaps = "-all,+chown,+dac_override,+fsetid,+fowner,+mknod,+net_raw,+setgid,+setuid,+setfcap,+setpcap,+net_bind_service,+sys_chroot,+kill,+audit_write"

// unprivileged prefixes argv with setpriv so that it runs with only
// Docker's default capabilities.
func unprivileged(argv []string) []string {
	return append([]string{"setpriv", "--bounding-set", defaultCaps, "--inh-caps", "-all", "--"}, argv...)
}
