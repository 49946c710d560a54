// Package overlay mounts and unmounts kernel overlay filesystems for strata's snapshots.
//
// The upper directory of a writable mount is a plain diff against the lowers: the
// mount is made with index=off, redirect_dir=off and metacopy=off, so a deleted lower
// file shows up in the upper directory as a 0/0 character device (whiteout) and a
// replaced lower directory as a directory carrying trusted.overlay.opaque=y.
package overlay

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/moby/sys/userns"
	"golang.org/x/sys/unix"
)

// overlayOptions are the feature switches applied to every overlay mount. They keep
// the upper directory a self-contained diff that can be turned into an OCI layer:
// no index (hard links are not tracked across layers), no redirects (a renamed
// directory is copied up whole) and no metacopy (an upper file always has its data).
//
// Writable mounts are also "volatile": overlayfs then skips the syncfs(2) of
// the whole upper filesystem that it otherwise does at every unmount (seconds
// after a large COPY, and once per RUN step) and turns fsync inside RUN into a
// no-op. A snapshot is never mounted twice, so the kernel's refusal to remount
// a volatile upper after a crash never applies; the store does not fsync its
// own writes either (see store.go), and fsck finds what a power loss breaks.
var overlayOptions = [][2]string{
	{"index", "off"},
	{"redirect_dir", "off"},
	{"metacopy", "off"},
}

// userXattr reports whether mounts need the userxattr flag: in a user
// namespace (rootless strata) overlayfs may not use trusted.overlay.*
// xattrs and keeps opaque markers in user.overlay.* instead (Linux ≥ 5.11).
func userXattr() bool { return userns.RunningInUserNS() }

// mountOptions are overlayOptions for this process. With userxattr the
// kernel refuses redirect_dir=off, which since Linux 6.x means "create no
// redirects but follow them"; "nofollow" creates none and follows none,
// the same for strata's layers, which never hold redirects.
func mountOptions() [][2]string {
	if !userXattr() {
		return overlayOptions
	}
	opts := make([][2]string, 0, len(overlayOptions))
	for _, kv := range overlayOptions {
		if kv[0] == "redirect_dir" {
			kv[1] = "nofollow"
		}
		opts = append(opts, kv)
	}
	return opts
}

// EmptyLowerSuffix is appended to the work directory's name to form the private,
// empty lower directory that Mount creates (next to work) when it is called with
// an upper directory but no lowers; overlayfs always needs at least one lower.
// The directory is left in place after Unmount; callers that remove a snapshot
// remove it together with work.
const EmptyLowerSuffix = ".emptylower"

// Mount mounts an overlay filesystem at target, an existing directory.
//
// lowers are ordered top-most first, as in overlayfs' lowerdir= option. upper and
// work must be given together (writable mount) or both be empty (read-only mount).
//
//   - Writable, no lowers: overlayfs needs a lower layer, so Mount creates an empty
//     directory next to work (work + EmptyLowerSuffix) and uses it as the only lower.
//   - Read-only, one lower: overlayfs refuses a single lower without an upper (even
//     on 6.x kernels), so Mount makes a read-only bind mount of that lower instead,
//     which shows exactly the same tree (overlay layers do not show their submounts
//     either, so the bind is not recursive). Unmount releases it like an overlay.
//   - Read-only, no lowers: an error.
//
// Mount prefers the new mount API (fsopen/fsconfig with one "lowerdir+" per layer,
// Linux >= 6.8), which has no limit on the length of the lower list besides
// overlayfs' own stack depth (500). When fsopen or "lowerdir+" is not supported it
// falls back to mount(2) with a lowerdir= option string, which must fit in a page.
func Mount(ctx context.Context, lowers []string, upper, work, target string) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("mount overlay at %s: %w", target, err)
	}
	if (upper == "") != (work == "") {
		return fmt.Errorf("mount overlay at %s: upper and work must both be set or both be empty", target)
	}
	if target == "" {
		return errors.New("mount overlay: empty target")
	}
	var err error
	if target, err = filepath.Abs(target); err != nil {
		return fmt.Errorf("mount overlay: %w", err)
	}
	abs := make([]string, len(lowers))
	for i, l := range lowers {
		if l == "" {
			return fmt.Errorf("mount overlay at %s: lower %d is empty", target, i)
		}
		if abs[i], err = filepath.Abs(l); err != nil {
			return fmt.Errorf("mount overlay at %s: %w", target, err)
		}
	}
	lowers = abs
	if upper != "" {
		if upper, err = filepath.Abs(upper); err != nil {
			return fmt.Errorf("mount overlay at %s: %w", target, err)
		}
		if work, err = filepath.Abs(work); err != nil {
			return fmt.Errorf("mount overlay at %s: %w", target, err)
		}
	}

	switch {
	case upper == "" && len(lowers) == 0:
		return fmt.Errorf("mount overlay at %s: a read-only mount needs at least one lower", target)
	case upper == "" && len(lowers) == 1:
		if err := bindReadOnly(lowers[0], target); err != nil {
			return fmt.Errorf("mount read-only view of %s at %s: %w", lowers[0], target, err)
		}
		return nil
	case len(lowers) == 0:
		empty := filepath.Clean(work) + EmptyLowerSuffix
		if err := os.Mkdir(empty, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
			return fmt.Errorf("mount overlay at %s: create empty lower: %w", target, err)
		}
		lowers = []string{empty}
	}

	fsErr := mountFsopen(lowers, upper, work, target)
	if fsErr == nil {
		return nil
	}
	if !errors.Is(fsErr, errUnsupported) {
		return fmt.Errorf("mount overlay at %s: %w", target, fsErr)
	}
	if err := mountLegacy(lowers, upper, work, target); err != nil {
		return fmt.Errorf("mount overlay at %s: %w (new mount API: %v)", target, err, fsErr)
	}
	return nil
}

// errUnsupported marks a failure of the new mount API that means "this kernel
// cannot do it this way", after which Mount falls back to mount(2).
var errUnsupported = errors.New("possibly unsupported by this kernel")

// mountFsopen mounts with fsopen/fsconfig/fsmount/move_mount.
func mountFsopen(lowers []string, upper, work, target string) error {
	fd, err := unix.Fsopen("overlay", unix.FSOPEN_CLOEXEC)
	if err != nil {
		if errors.Is(err, unix.ENOSYS) || errors.Is(err, unix.EPERM) {
			return fmt.Errorf("fsopen: %w: %w", errUnsupported, err)
		}
		return fmt.Errorf("fsopen overlay: %w", err)
	}
	defer unix.Close(fd)

	for i, l := range lowers {
		if err := unix.FsconfigSetString(fd, "lowerdir+", l); err != nil {
			// An unknown key is EINVAL: "lowerdir+" only exists since 6.8, and
			// before 6.5 the legacy option page overflows with EINVAL as well.
			// (Bad paths fail with ENOENT/ENOTDIR and are reported as they are.)
			if errors.Is(err, unix.EINVAL) {
				return fmt.Errorf("fsconfig lowerdir+ (layer %d): %w: %w%s", i, errUnsupported, err, fsLog(fd))
			}
			return fmt.Errorf("fsconfig lowerdir+ %s: %w%s", l, err, fsLog(fd))
		}
	}
	if upper != "" {
		if err := unix.FsconfigSetString(fd, "upperdir", upper); err != nil {
			return fmt.Errorf("fsconfig upperdir %s: %w%s", upper, err, fsLog(fd))
		}
		if err := unix.FsconfigSetString(fd, "workdir", work); err != nil {
			return fmt.Errorf("fsconfig workdir %s: %w%s", work, err, fsLog(fd))
		}
	}
	for _, kv := range mountOptions() {
		if err := unix.FsconfigSetString(fd, kv[0], kv[1]); err != nil {
			return fmt.Errorf("fsconfig %s=%s: %w%s", kv[0], kv[1], err, fsLog(fd))
		}
	}
	if userXattr() {
		if err := unix.FsconfigSetFlag(fd, "userxattr"); err != nil {
			return fmt.Errorf("fsconfig userxattr: %w%s", err, fsLog(fd))
		}
	}
	if upper != "" {
		// Best effort: a kernel without it (< 5.10) syncs on unmount, slower
		// but the same files.
		_ = unix.FsconfigSetFlag(fd, "volatile")
	}
	if err := unix.FsconfigCreate(fd); err != nil {
		if errors.Is(err, unix.EINVAL) {
			// Kernels before 6.5 parse overlay options the legacy way and only
			// reject the unknown "lowerdir+" here.
			return fmt.Errorf("create overlay superblock: %w: %w%s", errUnsupported, err, fsLog(fd))
		}
		return fmt.Errorf("create overlay superblock: %w%s", err, fsLog(fd))
	}
	attr := 0
	if upper == "" {
		attr = unix.MOUNT_ATTR_RDONLY
	}
	mfd, err := unix.Fsmount(fd, unix.FSMOUNT_CLOEXEC, attr)
	if err != nil {
		return fmt.Errorf("fsmount: %w%s", err, fsLog(fd))
	}
	defer unix.Close(mfd)
	if err := unix.MoveMount(mfd, "", unix.AT_FDCWD, target, unix.MOVE_MOUNT_F_EMPTY_PATH); err != nil {
		return fmt.Errorf("move_mount to %s: %w", target, err)
	}
	return nil
}

// fsLog drains the kernel's message log of a filesystem context (what the
// filesystem reported with errorfc/warnfc) and formats it for an error message.
func fsLog(fd int) string {
	var msgs []string
	buf := make([]byte, 4096)
	for range 32 {
		n, err := unix.Read(fd, buf)
		if err != nil || n <= 0 {
			break
		}
		msgs = append(msgs, strings.TrimSpace(string(buf[:n])))
	}
	if len(msgs) == 0 {
		return ""
	}
	return " (" + strings.Join(msgs, "; ") + ")"
}

// mountLegacy mounts with mount(2) and a classic option string.
func mountLegacy(lowers []string, upper, work, target string) error {
	esc := make([]string, len(lowers))
	for i, l := range lowers {
		esc[i] = escapeOption(l)
	}
	opts := "lowerdir=" + strings.Join(esc, ":")
	if upper != "" {
		opts += ",upperdir=" + escapeOption(upper) + ",workdir=" + escapeOption(work)
	}
	for _, kv := range mountOptions() {
		opts += "," + kv[0] + "=" + kv[1]
	}
	if userXattr() {
		opts += ",userxattr"
	}
	// The kernel copies at most one page of mount data and silently truncates
	// the rest, which would mount the wrong stack.
	if len(opts) >= os.Getpagesize() {
		return fmt.Errorf("overlay option string for %d lowers is %d bytes, more than a page (%d); this kernel needs fsopen with lowerdir+ (Linux >= 6.8) for such stacks",
			len(lowers), len(opts), os.Getpagesize())
	}
	var flags uintptr
	if upper == "" {
		flags = unix.MS_RDONLY
	}
	if upper != "" {
		err := unix.Mount("overlay", target, "overlay", flags, opts+",volatile")
		if err == nil || !errors.Is(err, unix.EINVAL) {
			if err != nil {
				return fmt.Errorf("mount(2) overlay: %w", err)
			}
			return nil
		}
		// EINVAL: perhaps a kernel without "volatile" (< 5.10); try without it.
	}
	if err := unix.Mount("overlay", target, "overlay", flags, opts); err != nil {
		return fmt.Errorf("mount(2) overlay: %w", err)
	}
	return nil
}

// escapeOption escapes the characters that separate overlay options (",") and
// lower layers (":"), and the escape character itself.
func escapeOption(p string) string {
	r := strings.NewReplacer(`\`, `\\`, `:`, `\:`, `,`, `\,`)
	return r.Replace(p)
}

// bindReadOnly makes a non-recursive, read-only bind mount of src at target.
func bindReadOnly(src, target string) error {
	if err := unix.Mount(src, target, "", unix.MS_BIND, ""); err != nil {
		return fmt.Errorf("bind mount: %w", err)
	}
	if err := unix.Mount("", target, "", unix.MS_BIND|unix.MS_REMOUNT|unix.MS_RDONLY, ""); err != nil {
		_ = unix.Unmount(target, unix.MNT_DETACH)
		return fmt.Errorf("remount read-only: %w", err)
	}
	return nil
}

// Unmount unmounts target. While the mount is busy (EBUSY, typically a process
// that has not quite exited yet) it retries for about a second, then detaches it
// lazily (MNT_DETACH) as a last resort so that no mount is left behind; the
// filesystem is then released as soon as it is no longer in use. It returns an
// error wrapping unix.EINVAL when target is not a mount point.
func Unmount(target string) error {
	delay := 5 * time.Millisecond
	for deadline := time.Now().Add(time.Second); ; {
		err := unix.Unmount(target, 0)
		switch {
		case err == nil:
			return nil
		case errors.Is(err, unix.EINTR):
			continue
		case !errors.Is(err, unix.EBUSY):
			return fmt.Errorf("unmount %s: %w", target, err)
		}
		if time.Now().After(deadline) {
			break
		}
		time.Sleep(delay)
		delay = min(2*delay, 100*time.Millisecond)
	}
	if err := unix.Unmount(target, unix.MNT_DETACH); err != nil {
		return fmt.Errorf("unmount %s (lazy, after EBUSY): %w", target, err)
	}
	return nil
}
