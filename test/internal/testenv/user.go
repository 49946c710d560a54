package testenv

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/moby/sys/user"
)

// RootlessEnv, set to 1, makes every suite run strata as an ordinary user
// that the suite creates (rootless mode), as Config.Rootless does.
const RootlessEnv = "STRATA_TEST_ROOTLESS"

// TestUser is the ordinary user a rootless suite runs strata as: made
// with useradd (which gives it a range in /etc/subuid and /etc/subgid, as
// Debian does for every new user) and removed with userdel at Close.
type TestUser struct {
	Name     string
	UID, GID int
	Home     string
}

// NewTestUser creates user name with its home at home; useradd gets the
// extra arguments too (e.g. "-K", "SUB_UID_COUNT=0" for a user without
// subordinate ids). Remove deletes it.
func NewTestUser(name, home string, extra ...string) (*TestUser, error) {
	args := append([]string{"--create-home", "--home-dir", home, "--shell", "/bin/sh"}, extra...)
	if out, err := exec.Command("useradd", append(args, name)...).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("useradd %s: %w: %s", name, err, out)
	}
	u, err := user.LookupUser(name)
	if err != nil {
		exec.Command("userdel", name).Run()
		return nil, fmt.Errorf("look up %s: %w", name, err)
	}
	tu := &TestUser{Name: name, UID: u.Uid, GID: u.Gid, Home: home}
	if len(extra) > 0 {
		return tu, nil
	}
	if !hasSubIDs("/etc/subuid", name) || !hasSubIDs("/etc/subgid", name) {
		// useradd without SUB_UID_COUNT: give it a range of its own
		base := 400000 + 65536*(u.Uid%1000)
		r := fmt.Sprintf("%d-%d", base, base+65535)
		if out, err := exec.Command("usermod", "--add-subuids", r, "--add-subgids", r, name).CombinedOutput(); err != nil {
			tu.Remove()
			return nil, fmt.Errorf("usermod %s: %w: %s", name, err, out)
		}
	}
	return tu, nil
}

// hasSubIDs reports whether file lists a range for name.
func hasSubIDs(file, name string) bool {
	f, err := os.Open(file)
	if err != nil {
		return false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if strings.HasPrefix(sc.Text(), name+":") {
			return true
		}
	}
	return false
}

// Remove deletes the user and its subordinate ranges.
func (u *TestUser) Remove() error {
	if out, err := exec.Command("userdel", "--force", u.Name).CombinedOutput(); err != nil {
		return fmt.Errorf("userdel %s: %w: %s", u.Name, err, out)
	}
	return nil
}

// Own makes the user own path and everything below it, so that strata,
// running as the user, may write there.
func (u *TestUser) Own(path string) error {
	return filepath.Walk(path, func(p string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, u.UID, u.GID)
	})
}

// Command is exec.Command run as the user, with this process's
// environment but the user's identity and home.
func (u *TestUser) Command(name string, args ...string) *exec.Cmd {
	cmd := exec.Command(name, args...)
	cmd.Env = os.Environ()
	u.apply(cmd)
	return cmd
}

// apply makes cmd run as the user, with its home and no other identity.
func (u *TestUser) apply(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(u.UID), Gid: uint32(u.GID), Groups: []uint32{}}}
	env := cmd.Env[:0:0]
	for _, kv := range cmd.Env {
		k, _, _ := strings.Cut(kv, "=")
		switch k {
		case "HOME", "USER", "LOGNAME", "XDG_DATA_HOME", "XDG_CONFIG_HOME", "XDG_RUNTIME_DIR":
			continue
		}
		env = append(env, kv)
	}
	cmd.Env = append(env, "HOME="+u.Home, "USER="+u.Name, "LOGNAME="+u.Name)
}

// UserPrefix begins the name of every user the tests create, so that a
// check of the host's /etc/passwd can tell their lines from the others.
const UserPrefix = "st-"

// IsTestUserLine reports whether a line of /etc/passwd or /etc/group is a
// user the tests create (they come and go while other tests run).
func IsTestUserLine(line string) bool { return strings.HasPrefix(line, UserPrefix) }

// userName is a user name for the suite, unique on the machine for the
// life of this process.
func userName(suite string) string {
	n := UserPrefix + suite
	if len(n) > 20 {
		n = n[:20]
	}
	return n + "-" + strconv.Itoa(os.Getpid())
}

// Shift changes the owners below path to what the user's namespace maps
// them to: owner 0 becomes the user and owner N ≥ 1 the user's N-th
// subordinate id, so that strata, running rootless, sees the owners the
// tree had (a root-owned tree imported as is would show uid 65534).
func (u *TestUser) Shift(path string) error {
	uids, err := user.ParseSubIDFileFilter("/etc/subuid", func(s user.SubID) bool { return s.Name == u.Name })
	if err != nil || len(uids) == 0 {
		return fmt.Errorf("subuid range of %s: %v", u.Name, err)
	}
	gids, err := user.ParseSubIDFileFilter("/etc/subgid", func(s user.SubID) bool { return s.Name == u.Name })
	if err != nil || len(gids) == 0 {
		return fmt.Errorf("subgid range of %s: %v", u.Name, err)
	}
	shift := func(id uint32, own int, r user.SubID) (int, error) {
		if id == 0 {
			return own, nil
		}
		if int64(id) > r.Count {
			return 0, fmt.Errorf("id %d beyond the %d subordinate ids of %s", id, r.Count, u.Name)
		}
		return int(r.SubID) + int(id) - 1, nil
	}
	return filepath.Walk(path, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		st := fi.Sys().(*syscall.Stat_t)
		uid, err := shift(st.Uid, u.UID, uids[0])
		if err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
		gid, err := shift(st.Gid, u.GID, gids[0])
		if err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
		mode := fi.Mode()
		if err := os.Lchown(p, uid, gid); err != nil {
			return err
		}
		if mode&(os.ModeSetuid|os.ModeSetgid) != 0 && mode&os.ModeSymlink == 0 {
			return os.Chmod(p, mode) // chown clears set-id bits
		}
		return nil
	})
}

// Shift is TestUser.Shift for the suite's user (nothing without one).
func (s *Suite) Shift(path string) error {
	if s.User == nil {
		return nil
	}
	return s.User.Shift(path)
}
