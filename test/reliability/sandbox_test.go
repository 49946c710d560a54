package reliability

import (
	"strings"
	"testing"
)

// sandboxProbeRun is a RUN that prints what it may do: its seccomp mode,
// no_new_privs, whether it can create a user namespace and mount a tmpfs.
const sandboxProbeRun = `RUN%s s=/proc/self/status; \
    echo "probe seccomp=$(sed -n 's/^Seccomp:[[:space:]]*//p' $s) nnp=$(sed -n 's/^NoNewPrivs:[[:space:]]*//p' $s)"; \
    unshare -U true 2>/dev/null && echo "probe userns=yes" || echo "probe userns=no"; \
    mkdir -p /mnt && mount -t tmpfs x /mnt 2>/dev/null && echo "probe mount=yes" || echo "probe mount=no"
`

// TestRunSandbox checks issue 14's first item end to end: a RUN runs under
// Docker's default seccomp profile with noNewPrivileges, and only
// `--allow security.insecure` lets `RUN --security=insecure` lift that; the
// security mode is part of the step's cache key.
func TestRunSandbox(t *testing.T) {
	store := suite.NewBusyboxStore(t)
	sandbox := suite.WriteFiles(t, map[string]string{"Dockerfile": "FROM busybox\n" + strings.ReplaceAll(sandboxProbeRun, "%s", "")})
	r := strata(t, store, "build", "--progress", "plain", sandbox)
	for _, w := range []string{"probe seccomp=2 nnp=1", "probe userns=no", "probe mount=no"} {
		if !strings.Contains(r.Stderr, w) {
			t.Errorf("sandboxed RUN: want %q in:\n%s", w, r)
		}
	}

	insecure := suite.WriteFiles(t, map[string]string{"Dockerfile": "FROM busybox\n" + strings.ReplaceAll(sandboxProbeRun, "%s", " --security=insecure")})
	r = strataRun(t, store, runOpts{}, "build", "--progress", "plain", insecure)
	if r.Code == 0 || !strings.Contains(r.Stderr, "security.insecure is not allowed") || !strings.Contains(r.Stderr, "Dockerfile:2") {
		t.Errorf("RUN --security=insecure without --allow: want a failure naming security.insecure and Dockerfile:2:\n%s", r)
	}
	if strings.Contains(r.Stderr, "probe seccomp=0") {
		t.Errorf("RUN --security=insecure ran without --allow:\n%s", r)
	}

	// Same command as the sandboxed RUN above, in the same store: it must
	// run again, not hit that step's cache.
	r = strata(t, store, "build", "--progress", "plain", "--allow", "security.insecure", insecure)
	for _, w := range []string{"probe seccomp=0 nnp=1", "probe userns=yes", "probe mount=yes"} {
		if !strings.Contains(r.Stderr, w) {
			t.Errorf("RUN --security=insecure with --allow: want %q in:\n%s", w, r)
		}
	}

	r = strataRun(t, store, runOpts{}, "build", "--allow", "device", sandbox)
	if r.Code == 0 || !strings.Contains(r.Stderr, "--allow=device is not supported") {
		t.Errorf("--allow device: want a usage error:\n%s", r)
	}
}

// TestRunCommandSandbox checks that `strata run` gets the same sandbox as a
// RUN, and that --privileged lifts it (docker run --privileged).
func TestRunCommandSandbox(t *testing.T) {
	store := suite.NewBusyboxStore(t)
	probe := `sed -n 's/^Seccomp:[[:space:]]*/seccomp=/p' /proc/self/status; mkdir -p /mnt; mount -t tmpfs x /mnt 2>/dev/null && echo mount=yes || echo mount=no`
	if r := strata(t, store, "run", "busybox", "sh", "-c", probe); r.Stdout != "seccomp=2\nmount=no\n" {
		t.Errorf("strata run: got %q, want seccomp=2 mount=no\n%s", r.Stdout, r)
	}
	if r := strata(t, store, "run", "--privileged", "busybox", "sh", "-c", probe); r.Stdout != "seccomp=0\nmount=yes\n" {
		t.Errorf("strata run --privileged: got %q, want seccomp=0 mount=yes\n%s", r.Stdout, r)
	}
}
