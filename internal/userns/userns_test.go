package userns

import (
	"os"
	"testing"

	"github.com/moby/sys/user"
)

func TestWithSubIDs(t *testing.T) {
	got := withSubIDs(1000, []user.SubID{{Name: "u", SubID: 100000, Count: 65536}, {Name: "u", SubID: 0, Count: 0}, {Name: "u", SubID: 300000, Count: 10}})
	want := []user.IDMap{{ID: 0, ParentID: 1000, Count: 1}, {ID: 1, ParentID: 100000, Count: 65536}, {ID: 65537, ParentID: 300000, Count: 10}}
	if len(got) != len(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("range %d: got %v, want %v", i, got[i], want[i])
		}
	}
	m := Mapping{UIDs: got}
	if s := m.String(); s != "0→1000, 1…65536→100000…165535, 65537…65546→300000…300009" {
		t.Errorf("String() = %q", s)
	}
}

// TestInitIgnoresInheritedStage: a strata that inherits the stage
// variable but is not the process Run started (not PID 1 of a user
// namespace) must not touch mounts or descriptors.
func TestInitIgnoresInheritedStage(t *testing.T) {
	for _, stage := range []string{stageWait, stageIn} {
		t.Setenv(stageEnv, stage)
		inside, err := Init()
		if inside || err != nil {
			t.Errorf("Init with %s=%s in an ordinary process: inside %v, err %v", stageEnv, stage, inside, err)
		}
		if v, ok := os.LookupEnv(stageEnv); ok {
			t.Errorf("%s still set to %q", stageEnv, v)
		}
	}
}

func TestMissingErrorIsOneLine(t *testing.T) {
	e := &MissingError{What: "user u has no range in /etc/subuid", Fix: "as root: usermod --add-subuids 100000-165535 --add-subgids 100000-165535 u"}
	want := "rootless builds need a user namespace, but user u has no range in /etc/subuid; fix: as root: usermod --add-subuids 100000-165535 --add-subgids 100000-165535 u"
	if e.Error() != want {
		t.Errorf("Error() = %q", e.Error())
	}
}
