package build

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"

	securejoin "github.com/cyphar/filepath-securejoin"
)

// owner is a numeric uid:gid pair.
type owner struct{ uid, gid int }

// lookupFile finds the line of an /etc/passwd-style file in rootfs whose
// first field is name (or whose third field is the number name, when byID).
func lookupFile(rootfs, file, name string, byID bool) ([]string, bool) {
	p, err := securejoin.SecureJoin(rootfs, file)
	if err != nil {
		return nil, false
	}
	f, err := os.Open(p)
	if err != nil {
		return nil, false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") {
			continue
		}
		fields := strings.Split(line, ":")
		if len(fields) < 3 {
			continue
		}
		if (!byID && fields[0] == name) || (byID && fields[2] == name) {
			return fields, true
		}
	}
	return nil, false
}

// resolveChown resolves a --chown value ("user", "user:group", numeric or
// names) against the rootfs' /etc/passwd and /etc/group. A user alone takes
// the user's primary group, or gid = uid when the uid is numeric.
func resolveChown(rootfs, spec string) (owner, error) {
	u, g, hasGroup := strings.Cut(spec, ":")
	var o owner
	if n, err := strconv.Atoi(u); err == nil {
		o.uid, o.gid = n, n
	} else {
		fields, ok := lookupFile(rootfs, "/etc/passwd", u, false)
		if !ok || len(fields) < 4 {
			return o, fmt.Errorf("unable to find user %s: no matching entries in passwd file", u)
		}
		o.uid, _ = strconv.Atoi(fields[2])
		o.gid, _ = strconv.Atoi(fields[3])
	}
	if hasGroup {
		if n, err := strconv.Atoi(g); err == nil {
			o.gid = n
		} else {
			fields, ok := lookupFile(rootfs, "/etc/group", g, false)
			if !ok {
				return o, fmt.Errorf("unable to find group %s: no matching entries in group file", g)
			}
			o.gid, _ = strconv.Atoi(fields[2])
		}
	}
	return o, nil
}

// workdirOwner is the owner of directories WORKDIR creates: the USER's uid
// and primary gid, or uid:uid for a uid with no /etc/passwd entry.
func workdirOwner(rootfs, user string) (owner, error) {
	if user == "" {
		return owner{}, nil
	}
	return resolveChown(rootfs, user)
}
