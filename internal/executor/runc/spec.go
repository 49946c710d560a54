package runc

import (
	"errors"
	"fmt"
	"os"

	"github.com/moby/profiles/seccomp"
	"github.com/moby/sys/userns"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/strata-build/strata/internal/executor"
	"golang.org/x/sys/unix"
)

// DefaultPath is the PATH a process gets when its environment has none
// (see executor.DefaultPath).
const DefaultPath = executor.DefaultPath

// DefaultHostname is the container's hostname when Process.Hostname is empty.
const DefaultHostname = "strata"

// specVersion is the OCI runtime-spec version written into config.json. runc
// 1.1 reports spec 1.0.2-dev; it does not check the version, but writing one
// it knows keeps older runtimes happy.
const specVersion = "1.0.2"

// defaultCaps is Docker's default capability set.
var defaultCaps = []string{
	"CAP_CHOWN",
	"CAP_DAC_OVERRIDE",
	"CAP_FSETID",
	"CAP_FOWNER",
	"CAP_MKNOD",
	"CAP_NET_RAW",
	"CAP_SETGID",
	"CAP_SETUID",
	"CAP_SETFCAP",
	"CAP_SETPCAP",
	"CAP_NET_BIND_SERVICE",
	"CAP_SYS_CHROOT",
	"CAP_KILL",
	"CAP_AUDIT_WRITE",
}

// allCaps are the Linux capabilities by number (CAP_CHOWN is 0).
var allCaps = []string{
	"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER",
	"CAP_FSETID", "CAP_KILL", "CAP_SETGID", "CAP_SETUID",
	"CAP_SETPCAP", "CAP_LINUX_IMMUTABLE", "CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST",
	"CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_IPC_LOCK", "CAP_IPC_OWNER",
	"CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT", "CAP_SYS_PTRACE",
	"CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE",
	"CAP_SYS_RESOURCE", "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD",
	"CAP_LEASE", "CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL", "CAP_SETFCAP",
	"CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN", "CAP_SYSLOG", "CAP_WAKE_ALARM",
	"CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ", "CAP_PERFMON", "CAP_BPF",
	"CAP_CHECKPOINT_RESTORE",
}

// currentCaps returns the capabilities strata itself has (its effective
// set), which is what BuildKit gives a RUN with --security=insecure
// (containerd's cap.Current): a RUN cannot get more than its runtime holds.
func currentCaps() []string {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return append([]string(nil), defaultCaps...)
	}
	eff := uint64(data[1].Effective)<<32 | uint64(data[0].Effective)
	var out []string
	for i, name := range allCaps {
		if eff&(1<<i) != 0 {
			out = append(out, name)
		}
	}
	return out
}

// insecureDevices are the devices BuildKit adds to a RUN with
// --security=insecure (security.WithInsecureSpec), besides the loop devices.
var insecureDevices = []specs.LinuxDevice{
	{Path: "/dev/kmsg", Type: "c", Major: 1, Minor: 11},
	{Path: "/dev/cuse", Type: "c", Major: 10, Minor: 203},
	{Path: "/dev/fuse", Type: "c", Major: 10, Minor: 229},
	{Path: "/dev/kvm", Type: "c", Major: 10, Minor: 232},
	{Path: "/dev/net/tun", Type: "c", Major: 10, Minor: 200},
	{Path: "/dev/loop-control", Type: "c", Major: 10, Minor: 237},
}

// freeLoopID returns the number of the host's first free loop device (0 when
// there is no /dev/loop-control), as BuildKit asks for it: an insecure RUN
// gets /dev/loop0 up to that number + 7.
func freeLoopID() int {
	f, err := os.OpenFile("/dev/loop-control", os.O_RDWR, 0)
	if err != nil {
		return 0
	}
	defer f.Close()
	id, err := unix.IoctlRetInt(int(f.Fd()), unix.LOOP_CTL_GET_FREE)
	if err != nil || id < 0 {
		return 0
	}
	return id
}

// netNSForeign reports whether strata's own network namespace belongs to a
// user namespace above strata's (rootless strata on the host's network):
// sysfs can then not be mounted for a RUN that shares it, and /sys is bound
// from strata's instead (as rootless podman and BuildKit do).
func netNSForeign() bool {
	f, err := os.Open("/proc/self/ns/net")
	if err != nil {
		return false
	}
	defer f.Close()
	owner, err := unix.IoctlRetInt(int(f.Fd()), unix.NS_GET_USERNS)
	if err != nil {
		// EPERM: the owner is outside strata's namespace, so not its own
		return errors.Is(err, unix.EPERM)
	}
	defer unix.Close(owner)
	var a, b unix.Stat_t
	if unix.Fstat(owner, &a) != nil || unix.Stat("/proc/self/ns/user", &b) != nil {
		return false
	}
	return a.Ino != b.Ino || a.Dev != b.Dev
}

// seccompSupported reports whether the kernel has seccomp filters (the check
// containerd makes before BuildKit applies its default profile): with
// CONFIG_SECCOMP_FILTER a NULL filter fails with EFAULT, without it EINVAL.
func seccompSupported() bool {
	return unix.Prctl(unix.PR_SET_SECCOMP, unix.SECCOMP_MODE_FILTER, 0, 0, 0) != unix.EINVAL
}

// maskedPaths and readonlyPaths are Docker's defaults (containerd's, which
// BuildKit uses); containerd also masks the thermal_throttle directory of
// every CPU that has one (see throttlePaths).
var (
	maskedPaths = []string{
		"/proc/asound",
		"/proc/acpi",
		"/proc/interrupts",
		"/proc/kcore",
		"/proc/keys",
		"/proc/latency_stats",
		"/proc/timer_list",
		"/proc/timer_stats",
		"/proc/sched_debug",
		"/proc/scsi",
		"/sys/firmware",
		"/sys/devices/virtual/powercap",
	}
	readonlyPaths = []string{
		"/proc/bus",
		"/proc/fs",
		"/proc/irq",
		"/proc/sys",
		"/proc/sysrq-trigger",
	}
)

// throttlePaths are the /sys/devices/system/cpu/cpuN/thermal_throttle
// directories of the host, which containerd masks as well.
func throttlePaths() []string {
	var out []string
	for i := 0; ; i++ {
		cpu := fmt.Sprintf("/sys/devices/system/cpu/cpu%d", i)
		if _, err := os.Stat(cpu); err != nil {
			return out
		}
		if _, err := os.Stat(cpu + "/thermal_throttle"); err == nil {
			out = append(out, cpu+"/thermal_throttle")
		}
	}
}

// hostFiles are bound read-only from the host into every container.
var hostFiles = []string{"/etc/resolv.conf", "/etc/hosts"}

// defaultMounts returns the mounts every RUN gets (containerd's/BuildKit's set
// without /run), followed by read-only binds of the host's resolv.conf and hosts
// when the host has them.
func defaultMounts() []specs.Mount {
	m := []specs.Mount{
		{Destination: "/proc", Type: "proc", Source: "proc", Options: []string{"nosuid", "noexec", "nodev"}},
		{Destination: "/dev", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "strictatime", "mode=755", "size=65536k"}},
		{Destination: "/dev/pts", Type: "devpts", Source: "devpts", Options: []string{"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"}},
		{Destination: "/dev/shm", Type: "tmpfs", Source: "shm", Options: []string{"nosuid", "noexec", "nodev", "mode=1777", "size=65536k"}},
		{Destination: "/dev/mqueue", Type: "mqueue", Source: "mqueue", Options: []string{"nosuid", "noexec", "nodev"}},
		{Destination: "/sys", Type: "sysfs", Source: "sysfs", Options: []string{"nosuid", "noexec", "nodev", "ro"}},
		// The container's own cgroup, read-only, as Docker and BuildKit give
		// every RUN (runtimes such as Go's, the JVM's and .NET's size
		// themselves from the limits they find there).
		{Destination: "/sys/fs/cgroup", Type: "cgroup", Source: "cgroup", Options: []string{"ro", "nosuid", "noexec", "nodev"}},
	}
	for _, f := range hostFiles {
		if _, err := os.Stat(f); err != nil {
			continue
		}
		m = append(m, specs.Mount{Destination: f, Type: "bind", Source: f, Options: []string{"rbind", "ro"}})
	}
	return m
}

// bindSys replaces, when bind is set, the sysfs mount with a read-only
// bind of strata's /sys (see netNSForeign), and returns mounts.
func bindSys(mounts []specs.Mount, bind bool) []specs.Mount {
	for i, m := range mounts {
		if !bind {
			break
		}
		if m.Destination == "/sys" {
			mounts[i] = specs.Mount{Destination: "/sys", Type: "bind", Source: "/sys", Options: []string{"rbind", "nosuid", "noexec", "nodev", "ro"}}
		}
	}
	return mounts
}

// specInput is what newSpec needs beyond Process.
type specInput struct {
	rootfs         string
	uid, gid       uint32
	additionalGids []uint32
	cwd            string
	nofile         uint64 // RLIMIT_NOFILE soft and hard limit
	cgroupNS       bool   // give the container its own cgroup namespace (cgroup v2 only)
	seccomp        bool   // the kernel has seccomp filters (seccompSupported)
	userNS         bool   // strata runs in a user namespace: no device nodes for insecure RUNs
	bindSys        bool   // bind /sys from strata's instead of mounting sysfs (see netNSForeign)
	freeLoop       int    // the host's first free loop device, for insecure RUNs (freeLoopID)
}

// cgroupNSSupported reports whether a RUN can get its own cgroup namespace:
// the kernel has cgroup namespaces and the host uses the unified (v2)
// hierarchy. BuildKit decides the same way; on v1 or hybrid hosts a cgroup
// namespace fails with EINVAL on non-standard hierarchies (moby/buildkit#4108),
// and the container sees its own cgroup through the bind mounts runc makes.
func cgroupNSSupported() bool {
	if _, err := os.Stat("/proc/self/ns/cgroup"); err != nil {
		return false
	}
	_, err := os.Stat("/sys/fs/cgroup/cgroup.subtree_control")
	return err == nil
}

// maxNofile is the RLIMIT_NOFILE a RUN gets when the host allows it (Docker's).
const maxNofile = 1048576

// nofileLimit returns the RLIMIT_NOFILE to put in the spec: maxNofile, unless
// strata may not raise its hard limit that far (no CAP_SYS_RESOURCE, as in some
// sandboxes), in which case it is strata's own hard limit; runc would otherwise
// fail with "error setting rlimit type 7: operation not permitted".
func nofileLimit() uint64 {
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err != nil || lim.Max >= maxNofile {
		return maxNofile
	}
	if userns.RunningInUserNS() {
		return lim.Max // CAP_SYS_RESOURCE of a user namespace cannot raise it
	}
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err == nil && data[0].Effective&(1<<unix.CAP_SYS_RESOURCE) != 0 {
		return maxNofile
	}
	return lim.Max
}

// newSpec builds the OCI runtime spec for p. It mirrors BuildKit's spec for a
// RUN: Docker's default capabilities, masked and read-only paths,
// noNewPrivileges, Docker's default seccomp profile (when the kernel has
// seccomp: in.seccomp), a private mount, pid, ipc and uts namespace, and a
// network namespace only with Network "none" (runc brings up lo in it). With
// Security SecurityInsecure it is BuildKit's --security=insecure spec instead:
// every capability, no seccomp profile, no masked or read-only paths,
// writable /sys and /sys/fs/cgroup, and access to every device (with
// BuildKit's set of extra device nodes). There is no AppArmor or SELinux
// label (BuildKit sets one only when configured to).
func newSpec(p *Process, in specInput) (*specs.Spec, error) {
	hostname := p.Hostname
	if hostname == "" {
		hostname = DefaultHostname
	}
	insecure := p.Security == SecurityInsecure
	caps := func() []string { return append([]string(nil), defaultCaps...) }
	if insecure {
		caps = currentCaps
	}
	ns := []specs.LinuxNamespace{
		{Type: specs.PIDNamespace},
		{Type: specs.IPCNamespace},
		{Type: specs.UTSNamespace},
		{Type: specs.MountNamespace},
	}
	if p.Network == NetworkNone {
		ns = append(ns, specs.LinuxNamespace{Type: specs.NetworkNamespace})
	}
	if in.cgroupNS {
		ns = append(ns, specs.LinuxNamespace{Type: specs.CgroupNamespace})
	}
	mounts := append(bindSys(defaultMounts(), in.bindSys), p.Mounts...)

	s := &specs.Spec{
		Version: specVersion,
		Process: &specs.Process{
			Terminal: p.Terminal,
			User: specs.User{
				UID:            in.uid,
				GID:            in.gid,
				AdditionalGids: in.additionalGids,
			},
			Args: p.Args,
			Env:  executor.WithDefaultPath(p.Env),
			Cwd:  in.cwd,
			Capabilities: &specs.LinuxCapabilities{
				Bounding:  caps(),
				Effective: caps(),
				Permitted: caps(),
			},
			Rlimits: []specs.POSIXRlimit{
				{Type: "RLIMIT_NOFILE", Hard: in.nofile, Soft: in.nofile},
			},
			// containerd's default, which BuildKit keeps for every RUN
			// (setuid programs such as sudo gain nothing).
			NoNewPrivileges: true,
		},
		Root:     &specs.Root{Path: in.rootfs, Readonly: false},
		Hostname: hostname,
		Mounts:   mounts,
		Linux: &specs.Linux{
			// No CgroupsPath: runc then creates a cgroup named after the container
			// id below strata's own cgroup (per controller on cgroup v1), so limits
			// put on strata apply to its RUN steps and no parent directories are
			// left behind. Explicit paths work too but leave their parents.
			Resources: &specs.LinuxResources{
				Devices: []specs.LinuxDeviceCgroup{{Allow: false, Access: "rwm"}},
			},
			Namespaces:    ns,
			MaskedPaths:   append(append([]string(nil), maskedPaths...), throttlePaths()...),
			ReadonlyPaths: append([]string(nil), readonlyPaths...),
		},
	}
	if insecure {
		withInsecure(s, in)
		return s, nil
	}
	if in.seccomp {
		// after the capabilities: the profile allows some calls only to
		// processes that hold the capability they need
		profile, err := seccomp.GetDefaultProfile(s)
		if err != nil {
			return nil, fmt.Errorf("default seccomp profile: %w", err)
		}
		s.Linux.Seccomp = profile
	}
	return s, nil
}

// withInsecure turns s into BuildKit's --security=insecure spec
// (security.WithInsecureSpec, oci.WithWriteableSysfs and
// oci.WithWriteableCgroupfs).
func withInsecure(s *specs.Spec, in specInput) {
	c := s.Process.Capabilities
	c.Inheritable = currentCaps()
	c.Ambient = currentCaps()
	s.Linux.MaskedPaths = []string{}
	s.Linux.ReadonlyPaths = []string{}
	s.Linux.Resources.Devices = []specs.LinuxDeviceCgroup{
		{Allow: true, Type: "c", Access: "rwm"},
		{Allow: true, Type: "b", Access: "rwm"},
	}
	if !in.userNS {
		s.Linux.Devices = append(s.Linux.Devices, insecureDevices...)
		for i := 0; i <= in.freeLoop+7; i++ {
			s.Linux.Devices = append(s.Linux.Devices, specs.LinuxDevice{Path: fmt.Sprintf("/dev/loop%d", i), Type: "b", Major: 7, Minor: int64(i)})
		}
	}
	for i, m := range s.Mounts {
		if m.Destination != "/sys" && m.Destination != "/sys/fs/cgroup" {
			continue
		}
		var opts []string
		for _, o := range m.Options {
			if o != "ro" {
				opts = append(opts, o)
			}
		}
		s.Mounts[i].Options = append(opts, "rw")
	}
}
