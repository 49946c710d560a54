package runc

import (
	"os"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// DefaultPath is the PATH a process gets when its environment has none (Docker's).
const DefaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

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

// maskedPaths and readonlyPaths are Docker's defaults.
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

// withDefaultPath adds PATH=DefaultPath when env has no PATH entry.
func withDefaultPath(env []string) []string {
	for _, e := range env {
		if strings.HasPrefix(e, "PATH=") {
			return env
		}
	}
	out := make([]string, 0, len(env)+1)
	out = append(out, env...)
	return append(out, "PATH="+DefaultPath)
}

// specInput is what newSpec needs beyond Process.
type specInput struct {
	rootfs         string
	uid, gid       uint32
	additionalGids []uint32
	cwd            string
	nofile         uint64 // RLIMIT_NOFILE soft and hard limit
	cgroupNS       bool   // give the container its own cgroup namespace (cgroup v2 only)
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
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err == nil && data[0].Effective&(1<<unix.CAP_SYS_RESOURCE) != 0 {
		return maxNofile
	}
	return lim.Max
}

// newSpec builds the OCI runtime spec for p. It mirrors BuildKit's spec for a
// RUN without --security=insecure: Docker's default capabilities, masked and
// read-only paths, a private mount, pid, ipc and uts namespace, and a network
// namespace only with Network "none" (runc brings up lo in it). There is no
// seccomp profile and no AppArmor/SELinux label.
func newSpec(p *Process, in specInput) *specs.Spec {
	hostname := p.Hostname
	if hostname == "" {
		hostname = DefaultHostname
	}
	caps := func() []string { return append([]string(nil), defaultCaps...) }
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
	mounts := defaultMounts()
	mounts = append(mounts, p.Mounts...)

	return &specs.Spec{
		Version: specVersion,
		Process: &specs.Process{
			Terminal: p.Terminal,
			User: specs.User{
				UID:            in.uid,
				GID:            in.gid,
				AdditionalGids: in.additionalGids,
			},
			Args: p.Args,
			Env:  withDefaultPath(p.Env),
			Cwd:  in.cwd,
			Capabilities: &specs.LinuxCapabilities{
				Bounding:  caps(),
				Effective: caps(),
				Permitted: caps(),
			},
			Rlimits: []specs.POSIXRlimit{
				{Type: "RLIMIT_NOFILE", Hard: in.nofile, Soft: in.nofile},
			},
			NoNewPrivileges: false,
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
			MaskedPaths:   append([]string(nil), maskedPaths...),
			ReadonlyPaths: append([]string(nil), readonlyPaths...),
		},
	}
}
