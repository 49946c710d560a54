package procview

import (
	"bytes"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// target is where a call's path is answered from: rel inside the host's
// directory dir; link, when set, is the text a readlink of it returns (of
// /proc/self, /dev/stdin, ...).
type target struct {
	dir  int
	rel  string
	link string
}

// route says where path, made by the thread tid, is answered from; ok is
// false for a path that goes on inside the chroot. final says the call
// does not follow a symlink at the end of the path (lstat, readlink).
func (v *View) route(path string, tid int, final bool) (target, bool) {
	if !strings.HasPrefix(path, "/") {
		return target{}, false
	}
	if strings.HasSuffix(path, "/") { // the link's directory is meant
		final = false
	}
	top, rest := split(path)
	switch top {
	case "proc":
		return v.procTarget(rest, tid, final)
	case "sys":
		if v.roots.Sys < 0 || dotdot(rest) {
			return target{}, false
		}
		return target{dir: v.roots.Sys, rel: orDot(rest)}, true
	case "dev":
		// Links to /proc/self/fd[/N] in a container's /dev.
		name, rest := split(rest)
		if name == "fd" && !dotdot(rest) {
			if rest == "" && final {
				return target{dir: v.roots.Proc, rel: "self", link: "/proc/self/fd"}, true
			}
			return v.self(tid, join("fd", rest))
		}
		if fd, ok := stdFD(name); ok && rest == "" {
			t, ok := v.self(tid, "fd/"+fd)
			if final {
				t.link = "/proc/self/fd/" + fd
			}
			return t, ok
		}
	}
	return target{}, false
}

// procTarget routes rest, a path inside /proc.
func (v *View) procTarget(rest string, tid int, final bool) (target, bool) {
	if dotdot(rest) {
		return target{}, false
	}
	first, after := split(rest)
	switch first {
	case "self", "thread-self":
		tgid, ok := v.tgid(tid)
		if !ok {
			return target{}, false
		}
		link := strconv.Itoa(tgid)
		if first == "thread-self" {
			link += "/task/" + strconv.Itoa(tid)
		}
		if after == "" && final {
			return target{dir: v.roots.Proc, rel: first, link: link}, true
		}
		return target{dir: v.roots.Proc, rel: join(link, after)}, true
	case "mounts", "net": // links to self/...
		if after == "" && final {
			return target{dir: v.roots.Proc, rel: first}, true
		}
		return v.self(tid, join(first, after))
	}
	return target{dir: v.roots.Proc, rel: orDot(rest)}, true
}

// self routes rel inside /proc/self of tid.
func (v *View) self(tid int, rel string) (target, bool) {
	tgid, ok := v.tgid(tid)
	if !ok {
		return target{}, false
	}
	return target{dir: v.roots.Proc, rel: strconv.Itoa(tgid) + "/" + rel}, true
}

// tgid returns the thread group (process) of the thread tid.
func (v *View) tgid(tid int) (int, bool) {
	fd, err := unix.Openat(v.roots.Proc, strconv.Itoa(tid)+"/status", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return 0, false
	}
	defer unix.Close(fd)
	b := make([]byte, 512)
	n, _ := unix.Read(fd, b)
	_, after, ok := bytes.Cut(b[:max(n, 0)], []byte("\nTgid:"))
	if !ok {
		return 0, false
	}
	line, _, _ := bytes.Cut(after, []byte("\n"))
	tgid, err := strconv.Atoi(strings.TrimSpace(string(line)))
	return tgid, err == nil
}

// stdFD returns the descriptor /dev/NAME links to (NAME is stdin, stdout
// or stderr).
func stdFD(name string) (string, bool) {
	switch name {
	case "stdin":
		return "0", true
	case "stdout":
		return "1", true
	case "stderr":
		return "2", true
	}
	return "", false
}

// split returns the first name of an absolute or relative path and the
// rest, without their leading slashes.
func split(p string) (first, rest string) {
	p = strings.TrimLeft(p, "/")
	first, rest, _ = strings.Cut(p, "/")
	return first, strings.TrimLeft(rest, "/")
}

// dotdot reports whether rel has a ".." (which would lead out of the
// host's directory, to the host's root).
func dotdot(rel string) bool {
	for _, name := range strings.Split(rel, "/") {
		if name == ".." {
			return true
		}
	}
	return false
}

// join joins a relative path and rest, which may be "".
func join(rel, rest string) string {
	if rest == "" {
		return rel
	}
	return rel + "/" + rest
}

func orDot(rel string) string {
	if rel == "" {
		return "."
	}
	return rel
}
