package testsuite

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/strata-build/strata/internal/store"
)

// The Killed test starts the test binary again with these set: the child
// opens the store, prepares a snapshot and a view in its session and waits
// to be killed.
const (
	childEnv   = "STRATA_SNAPSHOT_TESTSUITE_STORE"
	parentsEnv = "STRATA_SNAPSHOT_TESTSUITE_PARENTS"
)

// testKilled: a process that made a snapshot and a view and was killed
// (SIGKILL: no cleanup ran) leaves them in its session directory; the next
// strata process reclaims dead sessions (store.Reclaim: unmount what is
// below, remove the folder), which must leave no mount and no folder.
func testKilled(t *testing.T, newFn New) {
	tmp := t.TempDir()
	root := filepath.Join(tmp, "store")
	s, err := store.Open(root)
	must(t, err)
	parents := makeLayers(t, filepath.Join(tmp, "layers"), base())

	top, _, _ := strings.Cut(t.Name(), "/")
	cmd := exec.Command(os.Args[0], "-test.run=^"+regexp.QuoteMeta(top)+"$", "-test.count=1", "-test.timeout=2m")
	cmd.Env = append(os.Environ(), childEnv+"="+root, parentsEnv+"="+strings.Join(parents, "\n"))
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	must(t, err)
	must(t, cmd.Start())
	ready := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if l, ok := strings.CutPrefix(sc.Text(), "ready "); ok {
				ready <- l
				break
			}
		}
		close(ready)
	}()
	var session string
	select {
	case session = <-ready:
	case <-time.After(time.Minute):
	}
	must(t, cmd.Process.Signal(unix.SIGKILL))
	cmd.Wait()
	if session == "" {
		t.Fatal("the child process did not prepare its snapshot")
	}
	ents, _ := os.ReadDir(session)
	if len(ents) == 0 {
		t.Fatalf("the killed child left nothing in %s: the test tests nothing", session)
	}
	t.Logf("left by the killed process: %d entries, mounts %q", len(ents), store.MountsUnder(session))

	if err := s.Reclaim(ctx, nil); err != nil {
		t.Fatalf("Reclaim: %v", err)
	}
	s.Close() // this process's own claim (run/NAME.lock) goes too
	checkClean(t, s.Path("run"))
	if mps := store.MountsUnder(root); len(mps) > 0 {
		t.Errorf("mounts left below the store: %q", mps)
	}
	for _, p := range parents {
		if _, err := os.Stat(filepath.Join(p, "etc/passwd")); err != nil {
			t.Errorf("parent damaged: %v", err)
		}
	}
}

// runChild is the killed process of testKilled.
func runChild(t *testing.T, newFn New) {
	s, err := store.Open(os.Getenv(childEnv))
	must(t, err)
	se, err := s.NewSession()
	must(t, err)
	sn := newFn(t, se.Dir)
	parents := strings.Split(os.Getenv(parentsEnv), "\n")
	snap, err := sn.Prepare(ctx, parents)
	must(t, err)
	write(t, snap.Root(), "written", "by a process about to be killed")
	_, err = sn.View(ctx, parents)
	must(t, err)
	os.Stdout.WriteString("ready " + se.Dir + "\n")
	time.Sleep(time.Hour) // until killed
}

// detach lazily unmounts m (a mount a failed test left).
func detach(m string) { unix.Unmount(m, unix.MNT_DETACH) }
