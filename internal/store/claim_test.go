package store

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestClaimHelperProcess is not a test: run by TestClaimDiesWithItsProcess
// as a child that opens a session, prints its name and waits.
func TestClaimHelperProcess(t *testing.T) {
	root := os.Getenv("STRATA_CLAIM_HELPER_ROOT")
	if root == "" {
		t.Skip("helper process only")
	}
	s, err := Open(root)
	if err != nil {
		t.Fatal(err)
	}
	se, err := s.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	os.Stdout.WriteString(se.Name + "\n")
	os.Stdin.Read(make([]byte, 1)) // until the parent kills us
}

func TestClaimsAreDistinctAndEndOnRelease(t *testing.T) {
	s, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	a, err := s.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	b, err := s.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	// One process, two sessions: two names, two work areas (they shared
	// one before, and the first Close removed the other's).
	if a.Name == b.Name || a.Dir == b.Dir {
		t.Fatalf("two sessions share name %s / dir %s", a.Name, a.Dir)
	}
	for _, n := range []string{a.Name, b.Name, strings.TrimSuffix(s.owner, ".")} {
		if !s.SessionAlive(n) {
			t.Errorf("%s is not alive while held", n)
		}
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if s.SessionAlive(a.Name) {
		t.Errorf("%s still alive after Close", a.Name)
	}
	if _, err := os.Stat(s.Path("run", a.Name+lockSuffix)); !os.IsNotExist(err) {
		t.Errorf("lock file of a closed session: %v", err)
	}
	if !s.SessionAlive(b.Name) {
		t.Errorf("closing %s ended %s", a.Name, b.Name)
	}
	b.Close()
}

func TestClaimDiesWithItsProcess(t *testing.T) {
	root := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestClaimHelperProcess$")
	cmd.Env = append(os.Environ(), "STRATA_CLAIM_HELPER_ROOT="+root)
	stdin, _ := cmd.StdinPipe()
	out, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer stdin.Close()
	name, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatal(err)
	}
	name = strings.TrimSpace(name)
	s, err := Open(root)
	if err != nil {
		t.Fatal(err)
	}
	if !s.SessionAlive(name) {
		t.Fatalf("session %s of a running process is not alive", name)
	}
	// Reclaim leaves a live session alone.
	if err := s.Reclaim(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "run", name)); err != nil {
		t.Fatalf("Reclaim removed a live session: %v", err)
	}
	cmd.Process.Kill() // SIGKILL: no chance to release anything
	cmd.Wait()
	if s.SessionAlive(name) {
		t.Fatalf("session %s alive after its process was killed", name)
	}
	if err := s.Reclaim(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{name, name + lockSuffix} {
		if _, err := os.Stat(filepath.Join(root, "run", p)); !os.IsNotExist(err) {
			t.Errorf("run/%s after Reclaim: %v", p, err)
		}
	}
}

// TestTakeDeadHoldsTheName: while a reclaimer removes a dead session, the
// name stays taken: other reclaimers see it held, and no new claim can get
// it, so a lock file unlinked by one reclaimer is never a new owner's.
func TestTakeDeadHoldsTheName(t *testing.T) {
	s, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	run := s.Path("run")
	live, err := s.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	defer live.Close()
	if _, ok := takeDead(run, live.Name); ok {
		t.Fatalf("takeDead took the live session %s", live.Name)
	}
	// A dead claim: a lock file nobody holds.
	dead := sessionName(999999, 1)
	if err := os.WriteFile(filepath.Join(run, dead+lockSuffix), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(run, dead), 0o700); err != nil {
		t.Fatal(err)
	}
	if s.SessionAlive(dead) {
		t.Fatalf("%s alive with nobody holding it", dead)
	}
	release, ok := takeDead(run, dead)
	if !ok {
		t.Fatalf("takeDead did not take the dead %s", dead)
	}
	if !s.SessionAlive(dead) {
		t.Errorf("%s judged dead while a reclaimer holds it", dead)
	}
	if _, ok := takeDead(run, dead); ok {
		t.Errorf("a second reclaimer took %s too", dead)
	}
	release()
	if _, err := os.Stat(filepath.Join(run, dead+lockSuffix)); !os.IsNotExist(err) {
		t.Errorf("lock file after release: %v", err)
	}
}
