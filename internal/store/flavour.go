package store

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
)

// flavourFile records which xattrs the store's unpacked layers mark
// opaque directories with: "trusted" (trusted.overlay.opaque, root with
// CAP_SYS_ADMIN) or "user" (user.overlay.opaque: rootless strata, whose
// overlay mounts use userxattr, and chroot isolation). An overlay mount of
// one flavour does not see the other's markers, so a store keeps one.
const flavourFile = "xattr-flavour"

// CheckFlavour records want as the store's flavour when it has none and
// fails, saying which mode made the store, when it has another.
func (s *Store) CheckFlavour(want string) error {
	b, err := os.ReadFile(s.Path(flavourFile))
	if errors.Is(err, fs.ErrNotExist) {
		return s.writeFileAtomic(s.Path(flavourFile), []byte(want+"\n"))
	}
	if err != nil {
		return fmt.Errorf("store %s: %w", s.root, err)
	}
	if got := strings.TrimSpace(string(b)); got != want {
		return fmt.Errorf("store %s was made by strata in %s, and its layers cannot be used in %s: use another --root (or remove this store)",
			s.root, flavourMode(got), flavourMode(want))
	}
	return nil
}

func flavourMode(f string) string {
	if f == "trusted" {
		return "rootful isolation"
	}
	return "rootless or chroot isolation"
}
