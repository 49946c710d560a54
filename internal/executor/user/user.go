// Package user resolves a Dockerfile USER value to numeric ids the way Docker and
// BuildKit do: with the /etc/passwd and /etc/group files of the image's root
// filesystem, read safely (symlinks are resolved inside the rootfs).
package user

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	securejoin "github.com/cyphar/filepath-securejoin"
	"golang.org/x/sys/unix"
)

// maxFileBytes bounds how much of /etc/passwd or /etc/group is read.
const maxFileBytes = 10 << 20

// ErrNoPasswdEntries is wrapped by LookupUser's error when a user name is not in
// the rootfs's /etc/passwd (or the file does not exist).
var ErrNoPasswdEntries = errors.New("no matching entries in passwd file")

// ErrNoGroupEntries is wrapped by LookupUser's error when a group name is not in
// the rootfs's /etc/group (or the file does not exist).
var ErrNoGroupEntries = errors.New("no matching entries in group file")

// LookupUser resolves user, a Dockerfile USER value ("", "name", "uid",
// "name:group", "uid:gid", "name:gid", "uid:group"), against the /etc/passwd and
// /etc/group files inside rootfs. It mirrors BuildKit (and moby/sys/user):
//
//   - "" means root: uid 0, gid 0, with the supplementary groups that /etc/group
//     lists root in (nothing when the files are missing).
//   - "uid:gid" with both numeric is taken as is, without supplementary groups;
//     the files are not read.
//   - A numeric uid without a passwd entry is used as is with gid 0 (unless a group
//     is given); a name that is not in /etc/passwd is an error "unable to find user
//     NAME: no matching entries in passwd file" (wrapping ErrNoPasswdEntries).
//   - Without an explicit group, gid is the user's primary group from /etc/passwd
//     and additionalGids are the gids of the /etc/group entries that list the user
//     name as a member. With an explicit group there are no additional groups.
//
// A number outside 0…MaxID in either part is an error wrapping ErrIDRange.
// additionalGids always starts with gid (as BuildKit passes it to the runtime), so
// it can be used as the process's supplementary group list directly.
func LookupUser(rootfs, user string) (uid, gid uint32, additionalGids []uint32, err error) {
	isDefault := user == ""
	if isDefault {
		user = "0"
	}
	if err := checkIDs(user); err != nil {
		return 0, 0, nil, err
	}
	// Fast path: both ids numeric.
	if u, g, ok := parseNumericPair(user); ok {
		return u, g, []uint32{g}, nil
	}

	passwd, err := readFile(rootfs, "/etc/passwd")
	if err != nil {
		return 0, 0, nil, fmt.Errorf("look up user %q: %w", user, err)
	}
	group, err := readFile(rootfs, "/etc/group")
	if err != nil {
		return 0, 0, nil, fmt.Errorf("look up user %q: %w", user, err)
	}

	u, g, sgids, err := resolve(user, passwd, group)
	if err != nil {
		if isDefault {
			return 0, 0, []uint32{0}, nil
		}
		return 0, 0, nil, err
	}
	add := []uint32{g}
	for _, s := range sgids {
		if s != g && !contains(add, s) {
			add = append(add, s)
		}
	}
	return u, g, add, nil
}

func contains(s []uint32, v uint32) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// parseNumericPair parses "uid:gid" where both parts are numbers (or "root").
func parseNumericPair(s string) (uid, gid uint32, ok bool) {
	us, gs, found := strings.Cut(s, ":")
	if !found {
		return 0, 0, false
	}
	u, err1 := parseID(us)
	g, err2 := parseID(gs)
	if err1 != nil || err2 != nil {
		return 0, 0, false
	}
	return u, g, true
}

func parseID(s string) (uint32, error) {
	n, numeric, err := ParseID(s)
	if err != nil {
		return 0, err
	}
	if !numeric {
		return 0, fmt.Errorf("%q is not a number", s)
	}
	if n > maxID {
		return 0, fmt.Errorf("id %d out of range", n)
	}
	return n, nil
}

// maxID is the largest id a process user is looked up with (as in
// moby/sys/user); larger ones, up to MaxID, are still given as numbers.
const maxID = 1<<31 - 1

// MaxID is the largest uid or gid accepted anywhere: 2^32-1 is (uid_t)-1,
// which chown(2) and setuid(2) read as "leave unchanged".
const MaxID = 1<<32 - 2

// ErrIDRange is wrapped by ParseID's error for a number outside 0…MaxID.
var ErrIDRange = fmt.Errorf("ids must be in the range 0-%d", uint64(MaxID))

// ParseID parses a uid or gid written as a decimal number ("root" is 0).
// numeric is false (and err nil) when s is a name: anything but an optional
// sign followed by digits. A number outside 0…MaxID ("-5", "4294967296") is
// an error wrapping ErrIDRange, never wrapped around or taken as a name.
func ParseID(s string) (id uint32, numeric bool, err error) {
	if s == "root" {
		return 0, true, nil
	}
	digits := strings.TrimLeft(s, "+-")
	if len(s)-len(digits) > 1 || digits == "" || strings.Trim(digits, "0123456789") != "" {
		return 0, false, nil
	}
	n, err := strconv.ParseUint(digits, 10, 64)
	if err != nil || n > MaxID || (s[0] == '-' && n != 0) {
		return 0, true, fmt.Errorf("invalid id %q: %w", s, ErrIDRange)
	}
	return uint32(n), true, nil
}

// checkIDs returns ParseID's error for a "user[:group]" spec with a
// number out of range in either part.
func checkIDs(spec string) error {
	u, g, _ := strings.Cut(spec, ":")
	for _, part := range []string{u, g} {
		if _, _, err := ParseID(part); err != nil {
			return err
		}
	}
	return nil
}

type passwdEntry struct {
	name     string
	uid, gid uint32
}

type groupEntry struct {
	name    string
	gid     uint32
	members []string
}

// resolve implements moby/sys/user.GetExecUser's rules. passwd or group is nil
// when the file does not exist.
func resolve(spec string, passwd, group []byte) (uid, gid uint32, sgids []uint32, err error) {
	userArg, groupArg, _ := strings.Cut(spec, ":")
	uidArg, uidErr := parseID(userArg)
	gidArg, gidErr := parseID(groupArg)
	if userArg == "root" {
		// "root" only counts as a number in the fast path; here it is a name.
		uidErr = errors.New("name")
	}
	if groupArg == "root" {
		gidErr = errors.New("name")
	}

	var matchedName string
	found := false
	for _, e := range parsePasswd(passwd) {
		if uidErr == nil && e.uid == uidArg || uidErr != nil && e.name == userArg {
			uid, gid, matchedName, found = e.uid, e.gid, e.name, true
			break
		}
	}
	if !found {
		if uidErr != nil {
			return 0, 0, nil, fmt.Errorf("unable to find user %s: %w", userArg, ErrNoPasswdEntries)
		}
		uid = uidArg
	}

	if groupArg == "" && matchedName == "" {
		return uid, gid, nil, nil
	}
	groups := parseGroup(group)
	if groupArg != "" {
		for _, g := range groups {
			if gidErr == nil && g.gid == gidArg || gidErr != nil && g.name == groupArg {
				return uid, g.gid, nil, nil
			}
		}
		if gidErr != nil {
			return 0, 0, nil, fmt.Errorf("unable to find group %s: %w", groupArg, ErrNoGroupEntries)
		}
		return uid, gidArg, nil, nil
	}
	for _, g := range groups {
		for _, m := range g.members {
			if m == matchedName {
				sgids = append(sgids, g.gid)
				break
			}
		}
	}
	return uid, gid, sgids, nil
}

// lines yields the non-empty, non-comment lines of an /etc/passwd-style file,
// split at ":".
func lines(data []byte) [][]string {
	var out [][]string
	s := bufio.NewScanner(bytes.NewReader(data))
	s.Buffer(make([]byte, 0, 4096), maxFileBytes)
	for s.Scan() {
		line := strings.TrimSpace(s.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		out = append(out, strings.Split(line, ":"))
	}
	return out
}

// parsePasswd parses name:password:uid:gid:gecos:home:shell lines, skipping lines
// whose ids are not numbers.
func parsePasswd(data []byte) []passwdEntry {
	var out []passwdEntry
	for _, f := range lines(data) {
		if len(f) < 4 {
			continue
		}
		u, err1 := strconv.ParseUint(f[2], 10, 32)
		g, err2 := strconv.ParseUint(f[3], 10, 32)
		if err1 != nil || err2 != nil {
			continue
		}
		out = append(out, passwdEntry{name: f[0], uid: uint32(u), gid: uint32(g)})
	}
	return out
}

// parseGroup parses name:password:gid:member,member lines.
func parseGroup(data []byte) []groupEntry {
	var out []groupEntry
	for _, f := range lines(data) {
		if len(f) < 3 {
			continue
		}
		g, err := strconv.ParseUint(f[2], 10, 32)
		if err != nil {
			continue
		}
		e := groupEntry{name: f[0], gid: uint32(g)}
		if len(f) > 3 && f[3] != "" {
			for _, m := range strings.Split(f[3], ",") {
				if m = strings.TrimSpace(m); m != "" {
					e.members = append(e.members, m)
				}
			}
		}
		out = append(out, e)
	}
	return out
}

// readFile reads name (an absolute path inside rootfs) with symlinks resolved
// inside rootfs. A missing file gives nil and no error; anything but a regular
// file is an error, so a FIFO in a hostile image cannot block the build.
func readFile(rootfs, name string) ([]byte, error) {
	p, err := securejoin.SecureJoin(rootfs, name)
	if err != nil {
		return nil, fmt.Errorf("resolve %s: %w", name, err)
	}
	fd, err := unix.Open(p, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOTDIR) {
			return nil, nil
		}
		return nil, fmt.Errorf("open %s: %w", name, err)
	}
	f := os.NewFile(uintptr(fd), p)
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("stat %s: %w", name, err)
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file", name)
	}
	data, err := io.ReadAll(io.LimitReader(f, maxFileBytes+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", name, err)
	}
	if len(data) > maxFileBytes {
		return nil, fmt.Errorf("%s is larger than %d bytes", name, maxFileBytes)
	}
	return data, nil
}

// FileOwner resolves the owner that a file operation gives what it creates: a
// COPY/ADD --chown value, or the USER under which WORKDIR makes its
// directories. It mirrors BuildKit's file operations (llb.WithUser and the
// solver's readUser), which differ from a process's user (LookupUser):
//
//   - a numeric user ("1000", "root") gives uid = gid = that number;
//   - a user name is looked up in /etc/passwd for its uid and primary gid; a
//     name that is not there (or a missing file) gives 0:0, not an error;
//   - an empty user (":GID") gives uid 0;
//   - a group after the colon, numeric or a name found in /etc/group, replaces
//     the gid; an empty group ("1000:") keeps the default, and a group name that
//     is not there leaves the gid as the user part gave it.
//
// Only a number outside 0…MaxID (ErrIDRange) or a passwd or group file that
// cannot be read is an error.
func FileOwner(rootfs, spec string) (uid, gid uint32, err error) {
	if err := checkIDs(spec); err != nil {
		return 0, 0, err
	}
	userArg, groupArg, _ := strings.Cut(spec, ":")
	if n, numeric, _ := ParseID(userArg); numeric {
		uid, gid = n, n
	} else if userArg != "" {
		passwd, err := readFile(rootfs, "/etc/passwd")
		if err != nil {
			return 0, 0, fmt.Errorf("look up user %q: %w", userArg, err)
		}
		for _, e := range parsePasswd(passwd) {
			if e.name == userArg {
				uid, gid = e.uid, e.gid
				break
			}
		}
	}
	if groupArg == "" {
		return uid, gid, nil
	}
	if n, numeric, _ := ParseID(groupArg); numeric {
		return uid, n, nil
	}
	group, err := readFile(rootfs, "/etc/group")
	if err != nil {
		return 0, 0, fmt.Errorf("look up group %q: %w", groupArg, err)
	}
	for _, g := range parseGroup(group) {
		if g.name == groupArg {
			return uid, g.gid, nil
		}
	}
	return uid, gid, nil
}
