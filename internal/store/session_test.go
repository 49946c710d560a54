package store

import "testing"

func TestContainerIDs(t *testing.T) {
	a, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	b, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	sa, err := a.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	defer sa.Close()
	sb, err := b.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	defer sb.Close()
	// Two sessions of one process (two stores) never give out one id: runc
	// names cgroups after container ids, machine-wide.
	seen := map[string]bool{}
	for i := 0; i < 3; i++ {
		for _, se := range []*Session{sa, sb} {
			id := se.NextContainerID()
			if seen[id] {
				t.Fatalf("container id %s given out twice", id)
			}
			seen[id] = true
			session, ok := ContainerSession(id)
			if !ok || session != se.Name {
				t.Errorf("ContainerSession(%s) = %q, %v; want %q", id, session, ok, se.Name)
			}
			if !map[*Session]*Store{sa: a, sb: b}[se].SessionAlive(session) {
				t.Errorf("session %s of this process is not alive", session)
			}
		}
	}
	if s, ok := ContainerSession(sa.ContainerID("run")); !ok || s != sa.Name {
		t.Errorf("ContainerSession(ContainerID(run)) = %q, %v", s, ok)
	}
	for _, id := range []string{"other-1-2-3", "strata-x-y-1", "strata-12", "strata--1-2", "strata-0-5-1"} {
		if s, ok := ContainerSession(id); ok {
			t.Errorf("ContainerSession(%q) = %q, true; want not a strata container", id, s)
		}
	}
}
