package chroot

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/strata-build/strata/internal/executor"
	"github.com/strata-build/strata/internal/executor/runc"
	"github.com/strata-build/strata/internal/executor/testsuite"
)

// dockerCaps is Docker's default capability set, in setpriv's words.
const dockerCaps = "chown,dac_override,fsetid,fowner,mknod,net_raw,setgid,setuid,setfcap,setpcap,net_bind_service,sys_chroot,kill,audit_write"

// TestRestrictedCapabilities runs TestSuite again in a process that has
// only Docker's default capabilities (no CAP_SYS_PTRACE, no CAP_SYS_ADMIN:
// what strata has in an unprivileged pod), and in one that has only
// podman's (no CAP_MKNOD either), where runs go without the device nodes
// their rootfs lacks.
func TestRestrictedCapabilities(t *testing.T) {
	requireRoot(t)
	setpriv, err := exec.LookPath("setpriv")
	if err != nil {
		t.Skip("setpriv not found (apt-get install util-linux)")
	}
	for _, tc := range []struct{ name, caps string }{
		{"docker", dockerCaps},
		// podman's default set: Docker's without MKNOD, NET_RAW and AUDIT_WRITE
		{"podman", strings.NewReplacer("mknod,", "", "net_raw,", "", ",audit_write", "").Replace(dockerCaps)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			set := "-all,+" + strings.ReplaceAll(tc.caps, ",", ",+")
			// Root's capabilities after exec are its inheritable and
			// bounding sets.
			cmd := exec.Command(setpriv, "--inh-caps="+set, "--bounding-set="+set, "--",
				os.Args[0], "-test.run=^TestSuite$", "-test.count=1", "-test.v", "-test.timeout=5m")
			out, err := cmd.CombinedOutput()
			if err != nil || !strings.Contains(string(out), "--- PASS: TestSuite") {
				t.Fatalf("TestSuite with %s: %v\n%s", tc.caps, err, out)
			}
			if !strings.Contains(string(out), "CAP_MKNOD: "+map[bool]string{true: "true", false: "false"}[strings.Contains(tc.caps, "mknod")]) {
				t.Errorf("the capabilities were not as set:\n%s", out)
			}
			t.Logf("%s", lastLines(string(out), 3))
		})
	}
}

// TestInContainer runs TestSuite and the mount tests in a runc container
// made as Docker makes one (Docker's default capabilities and seccomp
// profile, no_new_privs, no user namespace, /proc mounted): strata in an
// unprivileged pod.
func TestInContainer(t *testing.T) {
	requireRoot(t)
	if _, err := exec.LookPath("runc"); err != nil {
		t.Skip("runc not found in PATH (apt-get install runc)")
	}
	gobin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("go not found in PATH (needed to build a static test binary)")
	}
	rootfs := testsuite.Rootfs(t, false)
	// A static build of this package's tests, the program in the container.
	build := exec.Command(gobin, "test", "-c", "-o", filepath.Join(rootfs, "chroot.test"), ".")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build the tests: %v\n%s", err, out)
	}
	if err := os.Mkdir(filepath.Join(rootfs, "tmp"), 0o1777); err != nil {
		t.Fatal(err)
	}
	d := t.TempDir()
	r := &runc.Runner{StateDir: filepath.Join(d, "state"), BundleDir: filepath.Join(d, "bundles")}
	var out strings.Builder
	code, err := r.Run(context.Background(), executor.Process{
		ID:     "strata-chroot-in-container",
		Rootfs: rootfs,
		Args:   []string{"/chroot.test", "-test.run=^(TestSuite|TestMount.*)$", "-test.count=1", "-test.v", "-test.timeout=5m"},
		Env:    []string{"TMPDIR=/tmp"},
		Stdout: &out, Stderr: &out,
	})
	if err != nil || code != 0 || !strings.Contains(out.String(), "--- PASS: TestSuite") || !strings.Contains(out.String(), "--- PASS: TestMountCache ") {
		t.Fatalf("TestSuite in a container: Run = %d, %v\n%s", code, err, out.String())
	}
	for _, l := range strings.Split(out.String(), "\n") {
		if strings.HasPrefix(l, "--- ") {
			t.Log(l)
		}
	}
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
