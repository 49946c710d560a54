package fscopy

import (
	"os"
	"path/filepath"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// Previous is an earlier result of the same copy: an immutable directory
// (an unpacked layer the copy's target started as) and what is known of
// its regular files. A file the copy would write with the content, owner,
// mode, size and modification time of the previous one at the same path is
// hardlinked from there instead of copied, as a file of a source layer is
// (Source.Layers): the new layer holds the same bytes either way.
type Previous struct {
	Dir   string
	Files map[string]PreviousFile // by slash path below Dir, no leading "/"
}

// PreviousFile is what a FileSums recorded of one file: the sha256 of its
// content and its inode number, which must still be the file's (a path
// written twice, or a directory moved to another filesystem, then does not
// match).
type PreviousFile struct {
	Sum string `json:"sum"`
	Ino uint64 `json:"ino"`
}

// FileSums collects the content checksums of the regular files a copy
// writes whose content it knows (hashed while copying, or the unchanged
// file of the build context's stat cache), by slash path below the
// target's root: the Files of a later Previous, once the inode numbers of
// the finished directory are added (Files).
type FileSums struct {
	mu sync.Mutex
	m  map[string]string
}

func (f *FileSums) set(rel, sum string) {
	if f == nil {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.m == nil {
		f.m = map[string]string{}
	}
	if sum == "" {
		delete(f.m, rel)
		return
	}
	f.m[rel] = sum
}

// Known returns the checksum recorded for the regular file at rel (slash
// separated, no leading "/"): the content the copy wrote there.
func (f *FileSums) Known(rel string) (string, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	sum, ok := f.m[rel]
	return sum, ok
}

// Files returns the recorded files as they are now in dir (the copy's
// finished, unmounted upper directory or the layer it became): with their
// inode numbers, leaving out paths that are no longer regular files.
func (f *FileSums) Files(dir string) map[string]PreviousFile {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make(map[string]PreviousFile, len(f.m))
	for rel, sum := range f.m {
		var st unix.Stat_t
		if err := unix.Lstat(filepath.Join(dir, rel), &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFREG {
			continue
		}
		out[rel] = PreviousFile{Sum: sum, Ino: st.Ino}
	}
	return out
}

// linkFromPrevious hardlinks dst to the file at the same path in the
// previous result when that file has the content the copy would write
// (src's checksum of srcHost), with the owner, mode, size and mtime the
// copy would give it, and reports whether it did. Through an overlay mount
// the link is deferred as linkFromLayer's are. It may run on several
// goroutines at once.
func (c *copier) linkFromPrevious(src *Source, srcHost string, fi os.FileInfo, st *syscall.Stat_t, dst string, uid, gid int, mode os.FileMode) bool {
	if c.prevFD < 0 || st == nil || src.Sums == nil {
		return false
	}
	rel := filepath.ToSlash(c.upperRel(dst))
	want, ok := c.prev.Files[rel]
	if !ok {
		return false
	}
	if sum, ok := src.Sums.Known(srcHost, fi); !ok || sum != want.Sum {
		return false
	}
	fd, err := openBeneath(c.prevFD, rel, unix.O_PATH)
	if err != nil {
		return false
	}
	defer unix.Close(fd)
	var ls unix.Stat_t
	if err := unix.Fstat(fd, &ls); err != nil || ls.Dev != c.prevDev || ls.Ino != want.Ino ||
		ls.Mode&unix.S_IFMT != unix.S_IFREG || ls.Size != st.Size ||
		ls.Mode&07777 != unixPerm(mode) || int(ls.Uid) != uid || int(ls.Gid) != gid ||
		ls.Mtim.Sec != st.Mtim.Sec || ls.Mtim.Nsec != st.Mtim.Nsec {
		return false
	}
	if !c.claim([2]uint64{ls.Dev, ls.Ino}) {
		return false
	}
	if c.upper != "" {
		if !c.placeholder(dst, fi, uid, gid, mode, deferredLink{layer: c.prev.Dir, rel: rel, dev: ls.Dev, ino: ls.Ino, size: ls.Size}) {
			return false
		}
	} else if err := unix.Linkat(fd, "", unix.AT_FDCWD, dst, unix.AT_EMPTY_PATH); err != nil {
		return false
	}
	c.out.set(rel, want.Sum)
	return true
}

// openPrevious opens the previous result's directory for linkFromPrevious,
// when it is on the destination's filesystem (prevFD stays -1 otherwise).
func (c *copier) openPrevious() {
	c.prevFD = -1
	if c.prev == nil {
		return
	}
	dev, ok := c.destDev()
	if !ok {
		return
	}
	fd, err := unix.Open(c.prev.Dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return
	}
	var st unix.Stat_t
	if unix.Fstat(fd, &st) != nil || st.Dev != dev {
		unix.Close(fd)
		return
	}
	c.prevFD, c.prevDev = fd, dev
}

// closePrevious closes what openPrevious opened.
func (c *copier) closePrevious() {
	if c.prevFD >= 0 {
		unix.Close(c.prevFD)
		c.prevFD = -1
	}
}

// unixPerm is the permission and setuid/setgid/sticky bits of mode as
// stat(2) reports them.
func unixPerm(mode os.FileMode) uint32 {
	m := uint32(mode.Perm())
	if mode&os.ModeSetuid != 0 {
		m |= unix.S_ISUID
	}
	if mode&os.ModeSetgid != 0 {
		m |= unix.S_ISGID
	}
	if mode&os.ModeSticky != 0 {
		m |= unix.S_ISVTX
	}
	return m
}
