package testenv

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
)

// ImagePATH is the PATH of the busybox base images (scripts/make-bases.sh
// and the conformance kit's make-bases.sh).
const ImagePATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// rootEntry is a folder or file of a busybox root. Modes are set as given,
// not through the umask.
type rootEntry struct {
	name     string
	mode     os.FileMode
	uid, gid int    // owner (folders only)
	data     string // file content
}

// rootSpec is a busybox root: its folders and files; bin/busybox and one
// symlink per applet in bin are added to them.
type rootSpec struct {
	dirs, files []rootEntry
}

// MakeBasesRoot makes at root the busybox tree scripts/make-bases.sh
// imports as busybox:latest: busybox and its applets in /bin, /etc/passwd
// and /etc/group with root and nobody, /tmp 1777, /root 0700, empty /dev
// /proc /sys /home /usr/local /var.
func MakeBasesRoot(root, busybox string) error {
	spec := rootSpec{
		dirs: []rootEntry{
			{name: "", mode: 0o755}, {name: "bin", mode: 0o755}, {name: "dev", mode: 0o755},
			{name: "etc", mode: 0o755}, {name: "proc", mode: 0o755}, {name: "sys", mode: 0o755},
			{name: "tmp", mode: 0o777 | os.ModeSticky}, {name: "root", mode: 0o700}, {name: "home", mode: 0o755},
			{name: "usr", mode: 0o755}, {name: "usr/local", mode: 0o755}, {name: "var", mode: 0o755},
		},
		files: []rootEntry{
			{name: "etc/passwd", mode: 0o644, data: "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"},
			{name: "etc/group", mode: 0o644, data: "root:x:0:\nnogroup:x:65534:\n"},
		},
	}
	return spec.make(root, busybox)
}

// KitRoot makes at root the conformance kit's busybox image
// (/work/shared/conformance/make-bases.sh) as a folder: busybox and its
// applets in /bin, /etc/passwd and /etc/group with root, nobody and app
// (1000), /tmp 1777, /root 0700, /home/app owned by 1000:1000, empty /dev
// /proc /sys. The kit's expected images hold exactly these files.
func KitRoot(root, busybox string) error {
	spec := rootSpec{
		dirs: []rootEntry{
			{name: "", mode: 0o755}, {name: "bin", mode: 0o755}, {name: "dev", mode: 0o755},
			{name: "etc", mode: 0o755}, {name: "home", mode: 0o755}, {name: "home/app", mode: 0o755, uid: 1000, gid: 1000},
			{name: "proc", mode: 0o755}, {name: "root", mode: 0o700}, {name: "sys", mode: 0o755},
			{name: "tmp", mode: 0o777 | os.ModeSticky},
		},
		files: []rootEntry{
			{name: "etc/passwd", mode: 0o644, data: "root:x:0:0:root:/root:/bin/sh\n" +
				"nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n" +
				"app:x:1000:1000:app:/home/app:/bin/sh\n"},
			{name: "etc/group", mode: 0o644, data: "root:x:0:\nnobody:x:65534:\napp:x:1000:\n"},
		},
	}
	return spec.make(root, busybox)
}

func (s rootSpec) make(root, busybox string) error {
	for _, d := range s.dirs {
		p := filepath.Join(root, d.name)
		if err := os.MkdirAll(p, 0o755); err != nil {
			return err
		}
		if err := os.Chmod(p, d.mode); err != nil {
			return err
		}
		if d.uid != 0 || d.gid != 0 {
			if err := os.Lchown(p, d.uid, d.gid); err != nil {
				return err
			}
		}
	}
	bin, err := os.ReadFile(busybox)
	if err != nil {
		return err
	}
	files := append([]rootEntry{{name: "bin/busybox", mode: 0o755, data: string(bin)}}, s.files...)
	for _, f := range files {
		p := filepath.Join(root, f.name)
		if err := os.WriteFile(p, []byte(f.data), f.mode); err != nil {
			return err
		}
		if err := os.Chmod(p, f.mode); err != nil {
			return err
		}
	}
	applets, err := busyboxApplets(busybox)
	if err != nil {
		return err
	}
	for _, a := range applets {
		if err := os.Symlink("busybox", filepath.Join(root, "bin", a)); err != nil && !os.IsExist(err) {
			return err
		}
	}
	return nil
}

// busyboxApplets lists busybox's applets that live in /bin, sorted.
func busyboxApplets(busybox string) ([]string, error) {
	out, err := exec.Command(busybox, "--list").Output()
	if err != nil {
		return nil, fmt.Errorf("%s --list: %w", busybox, err)
	}
	seen := map[string]bool{}
	var names []string
	for _, a := range strings.Fields(string(out)) {
		if a == "busybox" || strings.Contains(a, "/") || seen[a] {
			continue
		}
		seen[a] = true
		names = append(names, a)
	}
	sort.Strings(names)
	return names, nil
}

// ImportArgs are the strata arguments that import the root folder as the
// image name, as scripts/make-bases.sh does: CMD ["sh"] and ENV path (a
// PATH=... entry, ImagePATH for the make-bases images).
func ImportArgs(root, name, path string) []string {
	return []string{"import", "--change", `CMD ["sh"]`, "--change", "ENV " + path, root, name}
}
