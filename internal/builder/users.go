package builder

import (
	"strings"

	"github.com/strata-build/strata/internal/executor/user"
	"github.com/strata-build/strata/internal/fscopy"
)

// owner is a numeric uid:gid pair.
type owner = fscopy.Owner

// resolveChown resolves a --chown value ("user", "user:group", ":group",
// numeric or names) against the rootfs' /etc/passwd and /etc/group as
// BuildKit's file operations do (see user.FileOwner): names that are not
// there fall back to 0 rather than failing the build.
func resolveChown(rootfs, spec string) (owner, error) {
	uid, gid, err := user.FileOwner(rootfs, spec)
	if err != nil {
		return owner{}, err
	}
	return owner{UID: int(uid), GID: int(gid)}, nil
}

// workdirOwner is the owner of directories WORKDIR creates: the USER's uid
// and primary gid, uid:uid for a uid with no /etc/passwd entry, and root for
// a user name the image does not know (RUN is where that name fails).
func workdirOwner(rootfs, user string) (owner, error) {
	if user == "" {
		return owner{}, nil
	}
	return resolveChown(rootfs, user)
}

// chownByName reports whether a --chown value names a user or group (rather
// than numbers only, or nothing on one side of the colon).
func chownByName(spec string) bool {
	for _, part := range strings.SplitN(spec, ":", 2) {
		if _, numeric, _ := user.ParseID(part); part != "" && !numeric {
			return true
		}
	}
	return false
}
