// Package testenv holds what the black-box test suites (test/e2e,
// test/reliability) share to set up and inspect the machine: a busybox root
// like scripts/make-bases.sh makes, and the runc containers and processes a
// strata run may leave behind.
package testenv

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
)

// BusyboxRoot makes, at root, the busybox tree scripts/make-bases.sh makes
// (busybox-static and its applets, passwd and group with root and nobody)
// and returns root.
func BusyboxRoot(root string) (string, error) {
	bb, err := exec.LookPath("busybox")
	if err != nil {
		return "", errors.New("busybox (busybox-static) is not installed")
	}
	for _, d := range []string{"bin", "dev", "etc", "proc", "sys", "tmp", "root", "home", "usr/local", "var"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			return "", err
		}
	}
	b, err := os.ReadFile(bb)
	if err != nil {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(root, "bin", "busybox"), b, 0o755); err != nil {
		return "", err
	}
	list, err := exec.Command(bb, "--list").Output()
	if err != nil {
		return "", fmt.Errorf("busybox --list: %w", err)
	}
	for _, a := range strings.Fields(string(list)) {
		if a == "busybox" || strings.Contains(a, "/") {
			continue
		}
		if err := os.Symlink("busybox", filepath.Join(root, "bin", a)); err != nil && !os.IsExist(err) {
			return "", err
		}
	}
	files := map[string]string{
		"etc/passwd": "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
		"etc/group":  "root:x:0:\nnogroup:x:65534:\n",
	}
	for p, c := range files {
		if err := os.WriteFile(filepath.Join(root, p), []byte(c), 0o644); err != nil {
			return "", err
		}
	}
	if err := os.Chmod(filepath.Join(root, "tmp"), 0o1777); err != nil {
		return "", err
	}
	return root, os.Chmod(filepath.Join(root, "root"), 0o700)
}

// RuncContainers lists the runc containers in store's runc state dir.
func RuncContainers(store string) []string {
	state := filepath.Join(store, "runc")
	if _, err := os.Stat(state); err != nil {
		return nil
	}
	out, err := exec.Command("runc", "--root", state, "list", "-q").Output()
	if err != nil {
		return []string{"(runc list failed: " + err.Error() + ")"}
	}
	return strings.Fields(string(out))
}

// ProcessesWithEnv lists the processes whose environment holds entry
// (KEY=VALUE): a marker set with ENV finds a RUN's processes.
func ProcessesWithEnv(entry string) []string {
	ents, _ := os.ReadDir("/proc")
	var out []string
	for _, e := range ents {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		env, err := os.ReadFile(filepath.Join("/proc", e.Name(), "environ"))
		if err != nil || !bytes.Contains(append(append([]byte{0}, env...), 0), []byte("\x00"+entry+"\x00")) {
			continue
		}
		cmdline, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		out = append(out, fmt.Sprintf("pid %s (%s)", e.Name(), strings.ReplaceAll(strings.TrimRight(string(cmdline), "\x00"), "\x00", " ")))
	}
	return out
}
