package testenv

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"

	"github.com/strata-build/strata/internal/store"
)

// MountsUnder lists the mount points at or below dir (the store's own
// mountinfo reader, which has its own unit tests).
func MountsUnder(dir string) []string { return store.MountsUnder(dir) }

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

// Leftovers is what no strata process may leave in store once none runs:
// mounts below it (the store itself may be a mount point), runc
// containers, session directories.
func Leftovers(store string) []string {
	var out []string
	for _, m := range MountsUnder(store) {
		if m != store {
			out = append(out, "mount "+m)
		}
	}
	if ids := RuncContainers(store); len(ids) > 0 {
		out = append(out, "runc containers "+strings.Join(ids, " "))
	}
	if ents, err := os.ReadDir(filepath.Join(store, "run")); err == nil {
		for _, e := range ents {
			out = append(out, "session dir run/"+e.Name())
		}
	}
	return out
}

// Release deletes the runc containers and unmounts what is mounted below
// store (not store itself), whoever left them.
func Release(store string) {
	for _, id := range RuncContainers(store) {
		exec.Command("runc", "--root", filepath.Join(store, "runc"), "delete", "--force", id).Run()
	}
	unmount(store, false)
}

// UnmountAll unmounts everything mounted at or below dir, deepest first.
func UnmountAll(dir string) { unmount(dir, true) }

func unmount(dir string, self bool) {
	mps := MountsUnder(dir)
	sort.Slice(mps, func(i, j int) bool { return len(mps[i]) > len(mps[j]) })
	for _, m := range mps {
		if m == dir && !self {
			continue
		}
		if syscall.Unmount(m, 0) != nil {
			syscall.Unmount(m, syscall.MNT_DETACH)
		}
	}
}

// ReleaseStore checks a store that is not a mount point itself for
// leftovers (Leftovers, or a mount on the store), releases them anyway (so
// that a suite never leaves mounts or containers behind) and removes the
// store. The error lists what was left.
func ReleaseStore(store string) error {
	if _, err := os.Stat(store); err != nil {
		return nil
	}
	left := Leftovers(store)
	if slices.Contains(MountsUnder(store), store) {
		left = append(left, "mount "+store)
	}
	Release(store)
	UnmountAll(store)
	if m := MountsUnder(store); len(m) > 0 {
		left = append(left, fmt.Sprintf("not removing %s: still mounted: %v", store, m))
	} else if err := os.RemoveAll(store); err != nil {
		left = append(left, err.Error())
	}
	if len(left) > 0 {
		return errors.New(strings.Join(left, "; "))
	}
	return nil
}
