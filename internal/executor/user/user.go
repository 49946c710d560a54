// Package user resolves a Dockerfile USER value to numeric ids the way Docker and
// BuildKit do: with the /etc/passwd and /etc/group files of the image's root
// filesystem, read safely (symlinks are resolved inside the rootfs) and parsed
// and matched by github.com/moby/sys/user, as BuildKit does.
package user

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"

	securejoin "github.com/cyphar/filepath-securejoin"
	"github.com/moby/sys/user"
	"golang.org/x/sys/unix"
)

// maxFileBytes bounds how much of /etc/passwd or /etc/group is read.
const maxFileBytes = 10 << 20

// ErrNoPasswdEntries is wrapped by LookupUser's error when a user name is not in
// the rootfs's /etc/passwd (or the file does not exist).
var ErrNoPasswdEntries = user.ErrNoPasswdEntries

// ErrNoGroupEntries is wrapped by LookupUser's error when a group name is not in
// the rootfs's /etc/group (or the file does not exist).
var ErrNoGroupEntries = user.ErrNoGroupEntries

// LookupUser resolves spec, a Dockerfile USER value ("", "name", "uid",
// "name:group", "uid:gid", "name:gid", "uid:group"), against the /etc/passwd and
// /etc/group files inside rootfs, as BuildKit does: with moby/sys/user's
// GetExecUser after a numeric fast path.
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
// The files are read as wellFormed keeps them. A number outside 0…MaxID in
// either part is an error wrapping ErrIDRange. additionalGids always starts with
// gid (as BuildKit passes it to the runtime), so it can be used as the process's
// supplementary group list directly.
func LookupUser(rootfs, spec string) (uid, gid uint32, additionalGids []uint32, err error) {
	isDefault := spec == ""
	if isDefault {
		spec = "0"
	}
	if err := checkIDs(spec); err != nil {
		return 0, 0, nil, err
	}
	// Fast path: both ids numeric.
	if u, g, ok := parseNumericPair(spec); ok {
		return u, g, []uint32{g}, nil
	}

	passwd, err := readFile(rootfs, passwdFile())
	if err != nil {
		return 0, 0, nil, fmt.Errorf("look up user %q: %w", spec, err)
	}
	group, err := readFile(rootfs, groupFile())
	if err != nil {
		return 0, 0, nil, fmt.Errorf("look up user %q: %w", spec, err)
	}
	eu, err := user.GetExecUser(spec, nil, passwd, group)
	if err != nil {
		if isDefault {
			return 0, 0, []uint32{0}, nil
		}
		return 0, 0, nil, err
	}
	// wellFormed let only 32-bit ids through, and GetExecUser's own numbers are
	// at most 2^31-1: the conversions cannot wrap.
	uid, gid = uint32(eu.Uid), uint32(eu.Gid)
	add := []uint32{gid}
	for _, s := range eu.Sgids {
		if g := uint32(s); !slices.Contains(add, g) {
			add = append(add, g)
		}
	}
	return uid, gid, add, nil
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

// file is one of the two files users are looked up in.
type file struct {
	path     string
	idFields []int // the fields that hold ids
	members  int   // the field that lists members, 0 for none
}

// passwdFile is name:password:uid:gid:gecos:home:shell lines.
func passwdFile() file { return file{path: "/etc/passwd", idFields: []int{2, 3}} }

// groupFile is name:password:gid:member,member lines.
func groupFile() file { return file{path: "/etc/group", idFields: []int{2}, members: 3} }

// wellFormed keeps the lines of an /etc/passwd or /etc/group file that strata
// has always resolved users with, before moby/sys/user parses them. moby/sys/user
// (and so BuildKit) reads a missing or non-numeric id as 0 and a comment line in
// /etc/passwd as an entry, so "broken:x:oops:1" or a NIS "+::::::" line would be
// uid 0 and could be found for "0" before root; here such lines are skipped, as
// are ids beyond 32 bits (which would wrap). Group members are trimmed of
// spaces ("root, app"), empty ones dropped.
func wellFormed(data []byte, kind file) []byte {
	var out bytes.Buffer
	for line := range bytes.Lines(data) {
		line = bytes.TrimSpace(line)
		if len(line) == 0 || line[0] == '#' {
			continue
		}
		f := strings.Split(string(line), ":")
		if len(f) <= slices.Max(kind.idFields) || !allIDs(f, kind.idFields) {
			continue
		}
		if kind.members > 0 && len(f) > kind.members {
			f[kind.members] = trimMembers(f[kind.members])
		}
		out.WriteString(strings.Join(f, ":"))
		out.WriteByte('\n')
	}
	return out.Bytes()
}

func allIDs(f []string, idFields []int) bool {
	for _, i := range idFields {
		if _, err := strconv.ParseUint(f[i], 10, 32); err != nil {
			return false
		}
	}
	return true
}

func trimMembers(list string) string {
	var members []string
	for _, m := range strings.Split(list, ",") {
		if m = strings.TrimSpace(m); m != "" {
			members = append(members, m)
		}
	}
	return strings.Join(members, ",")
}

// readFile reads kind's file inside rootfs with symlinks resolved inside
// rootfs and returns its wellFormed lines. A missing file gives a nil
// reader (moby/sys/user's "no file") and no error; anything but a regular file
// is an error, so a FIFO in a hostile image cannot block the build.
func readFile(rootfs string, kind file) (io.Reader, error) {
	name := kind.path
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
	return bytes.NewReader(wellFormed(data, kind)), nil
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
		passwd, err := readFile(rootfs, passwdFile())
		if err != nil {
			return 0, 0, fmt.Errorf("look up user %q: %w", userArg, err)
		}
		if passwd != nil {
			users, err := user.ParsePasswdFilter(passwd, func(u user.User) bool { return u.Name == userArg })
			if err != nil {
				return 0, 0, fmt.Errorf("look up user %q: %w", userArg, err)
			}
			if len(users) > 0 {
				uid, gid = uint32(users[0].Uid), uint32(users[0].Gid)
			}
		}
	}
	if groupArg == "" {
		return uid, gid, nil
	}
	if n, numeric, _ := ParseID(groupArg); numeric {
		return uid, n, nil
	}
	group, err := readFile(rootfs, groupFile())
	if err != nil {
		return 0, 0, fmt.Errorf("look up group %q: %w", groupArg, err)
	}
	if group != nil {
		groups, err := user.ParseGroupFilter(group, func(g user.Group) bool { return g.Name == groupArg })
		if err != nil {
			return 0, 0, fmt.Errorf("look up group %q: %w", groupArg, err)
		}
		if len(groups) > 0 {
			return uid, uint32(groups[0].Gid), nil
		}
	}
	return uid, gid, nil
}

// Home is the HOME a process running as uid gets when its environment has
// none, as runc sets it: the home directory of the first entry for uid in
// rootfs's /etc/passwd, else "/" (also when the file cannot be read).
func Home(rootfs string, uid uint32) string {
	passwd, err := readFile(rootfs, passwdFile())
	if err != nil || passwd == nil {
		return "/"
	}
	users, err := user.ParsePasswdFilter(passwd, func(u user.User) bool { return u.Uid == int(uid) })
	if err != nil || len(users) == 0 || users[0].Home == "" {
		return "/"
	}
	return users[0].Home
}
