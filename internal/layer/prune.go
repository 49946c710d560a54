package layer

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"

	"golang.org/x/sys/unix"
)

// PruneUnchanged removes from the overlayfs upperdir upper what overlayfs
// copied up without changing it, so that the layer holds only real changes,
// as BuildKit's overlay differ (util/overlay.Changes) records them:
//
//   - a file, symlink or device whose counterpart in the layers below has the
//     same type, mode, owner, device number, xattrs (BuildKit compares only
//     security.capability; strata keeps any xattr change), size and mtime (when both mtimes have no sub-second part, as after a tar
//     unpack, the contents or symlink targets are compared too). Such copies
//     come from `ln LOWERFILE NEW` (overlayfs copies the target up first), an
//     open for writing that wrote nothing, or a chmod back and forth. A new
//     hard link to a removed copy is left with one name, so the layer holds it
//     as a plain file rather than duplicating the lower file;
//   - a directory left empty by that, not opaque, with the same type, mode,
//     owner and xattrs as below (a parent overlayfs copied up for a child).
//
// lowers are the overlay lowerdirs, top-most first, in overlay form (whiteouts
// are 0/0 character devices, opaque directories carry overlay.opaque=y):
// whiteouts and opaque directories of the lowers hide what is below them.
func PruneUnchanged(ctx context.Context, upper string, lowers []string) error {
	if len(lowers) == 0 {
		return nil
	}
	if _, err := pruneDir(ctx, upper, lowers); err != nil {
		return fmt.Errorf("prune unchanged copies in %s: %w", upper, err)
	}
	return nil
}

// pruneDir prunes the upper directory dir, whose counterparts are visible in
// the lower directories vis (top-most first), and reports whether dir is
// empty afterwards.
func pruneDir(ctx context.Context, dir string, vis []string) (bool, error) {
	if err := ctx.Err(); err != nil {
		return false, err
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return false, err
	}
	left := len(ents)
	for _, e := range ents {
		p := filepath.Join(dir, e.Name())
		// Where the entry's counterpart is: the top-most lower that has
		// it, and below a directory every lower directory that overlayfs
		// merges with it. vis holds directories only, so no lookup goes
		// through a symlink of a lower layer.
		var lower []string
		for _, l := range vis {
			lp := filepath.Join(l, e.Name())
			fi, err := os.Lstat(lp)
			if errors.Is(err, fs.ErrNotExist) {
				continue
			}
			if err != nil {
				return false, err
			}
			if isWhiteoutDev(fi) {
				break // deleted below this point
			}
			if len(lower) > 0 && !fi.IsDir() {
				break // a directory above hides this file or symlink
			}
			lower = append(lower, lp)
			if !fi.IsDir() || isOpaque(lp) {
				break // nothing further down shows through
			}
		}
		if len(lower) == 0 {
			continue
		}
		ufi, err := os.Lstat(p)
		if err != nil {
			return false, err
		}
		lfi, err := os.Lstat(lower[0])
		if err != nil {
			return false, err
		}
		if e.IsDir() {
			if !lfi.IsDir() || isOpaque(p) {
				continue
			}
			empty, err := pruneDir(ctx, p, lower)
			if err != nil {
				return false, err
			}
			if empty && sameStat(ufi, lfi) && sameXattrs(p, lower[0]) {
				if err := os.Remove(p); err != nil {
					return false, err
				}
				left--
			}
			continue
		}
		same, err := sameEntry(ufi, lfi, p, lower[0])
		if err != nil {
			return false, err
		}
		if same {
			if err := os.Remove(p); err != nil {
				return false, err
			}
			left--
		}
	}
	return left == 0, nil
}

// Unchanged reports whether the entry at p is an unchanged copy of the
// entry at lower by the rules PruneUnchanged applies: directories need the
// same type, mode, owner and xattrs (their times and contents do not
// count), other entries what sameEntry says. A snapshotter that finds
// changes by comparing trees (snapshot/native) decides with it, so that it
// finds what PruneUnchanged leaves.
func Unchanged(p, lower string) (bool, error) {
	fi, err := os.Lstat(p)
	if err != nil {
		return false, err
	}
	lfi, err := os.Lstat(lower)
	if err != nil {
		return false, err
	}
	if fi.IsDir() || lfi.IsDir() {
		return fi.IsDir() && lfi.IsDir() && sameStat(fi, lfi) && sameXattrs(p, lower), nil
	}
	return sameEntry(fi, lfi, p, lower)
}

func isWhiteoutDev(fi fs.FileInfo) bool {
	st, ok := statOf(fi)
	return ok && st.Mode&unix.S_IFMT == unix.S_IFCHR && st.Rdev == 0
}

// statOf gives the raw stat of fi (from os.Lstat).
func statOf(fi fs.FileInfo) (*syscall.Stat_t, bool) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	return st, ok
}

func isOpaque(p string) bool {
	x, err := ReadXattrs(p)
	return err == nil && string(overlayXattr(x, xattrOpaque)) == "y"
}

// sameStat compares type, mode, owner and device number (continuity's
// compareSysStat).
func sameStat(a, b fs.FileInfo) bool {
	sa, ok1 := statOf(a)
	sb, ok2 := statOf(b)
	return ok1 && ok2 && sa.Mode == sb.Mode && sa.Uid == sb.Uid && sa.Gid == sb.Gid && sa.Rdev == sb.Rdev
}

// sameEntry reports whether the non-directory upper entry u (at up) is an
// unchanged copy of the lower entry l (at lp), by the rules of BuildKit's
// sameDirent.
func sameEntry(u, l fs.FileInfo, up, lp string) (bool, error) {
	if os.SameFile(u, l) {
		return true, nil
	}
	if !sameStat(u, l) {
		return false, nil
	}
	if !sameXattrs(up, lp) {
		return false, nil
	}
	if u.Size() != l.Size() {
		return false, nil
	}
	tu, tl := u.ModTime(), l.ModTime()
	if tu.Unix() != tl.Unix() {
		return false, nil
	}
	if tu.Nanosecond() != 0 || tl.Nanosecond() != 0 {
		return tu.Nanosecond() == tl.Nanosecond(), nil
	}
	// Both mtimes may have been truncated (unpacked from a tar): compare
	// what the entries hold.
	switch {
	case u.Mode()&fs.ModeSymlink != 0:
		a, err := os.Readlink(up)
		if err != nil {
			return false, err
		}
		b, err := os.Readlink(lp)
		if err != nil {
			return false, err
		}
		return a == b, nil
	case u.Mode().IsRegular():
		if u.Size() == 0 {
			return true, nil
		}
		return sameContent(up, lp)
	default:
		return true, nil // devices and fifos: the stat said it all
	}
}

// sameXattrs reports whether a and b carry the same extended attributes, of
// those a layer records (security.capability, ACLs, user.*; not overlayfs'
// own). BuildKit's differ compares only security.capability, so it drops
// an xattr-only change (setfattr, setfacl); strata keeps it.
func sameXattrs(a, b string) bool {
	xa, err1 := ReadXattrs(a)
	xb, err2 := ReadXattrs(b)
	if err1 != nil || err2 != nil {
		return false
	}
	n := 0
	for k, v := range xa {
		if skipXattr(k) {
			continue
		}
		if w, ok := xb[k]; !ok || string(w) != string(v) {
			return false
		}
		n++
	}
	for k := range xb {
		if !skipXattr(k) {
			n--
		}
	}
	return n == 0
}

func sameContent(a, b string) (bool, error) {
	fa, err := os.Open(a)
	if err != nil {
		return false, err
	}
	defer fa.Close()
	fb, err := os.Open(b)
	if err != nil {
		return false, err
	}
	defer fb.Close()
	ba, bb := make([]byte, 64<<10), make([]byte, 64<<10)
	for {
		na, erra := io.ReadFull(fa, ba)
		nb, errb := io.ReadFull(fb, bb)
		if na != nb || !bytes.Equal(ba[:na], bb[:nb]) {
			return false, nil
		}
		endA := errors.Is(erra, io.EOF) || errors.Is(erra, io.ErrUnexpectedEOF)
		endB := errors.Is(errb, io.EOF) || errors.Is(errb, io.ErrUnexpectedEOF)
		if erra != nil && !endA {
			return false, erra
		}
		if errb != nil && !endB {
			return false, errb
		}
		if endA || endB {
			return endA && endB, nil
		}
	}
}
