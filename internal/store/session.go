package store

import (
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
)

// The names a session gives out, written and read only here:
//
//	session     PID-STARTTIME                (ROOT/run/NAME, ROOT/tmp/NAME)
//	container   strata-PID-STARTTIME-SUFFIX  (runc container ids)
//
// A process may open several sessions (one per store it uses, as tests and
// library users do), and container ids must be unique on the machine (runc
// names cgroups after them), so NextContainerID's suffix carries a token
// random per session besides its counter.
//
// A name is alive while its process holds its claim (see claim.go).
const containerPrefix = "strata-"

// sessionName is the session name of process pid started at start.
func sessionName(pid int, start uint64) string { return fmt.Sprintf("%d-%d", pid, start) }

// parseSessionName splits a session name; ok is false for anything else.
func parseSessionName(name string) (pid int, start uint64, ok bool) {
	pidS, startS, ok := strings.Cut(name, "-")
	if !ok {
		return 0, 0, false
	}
	pid, err1 := strconv.Atoi(pidS)
	start, err2 := strconv.ParseUint(startS, 10, 64)
	if err1 != nil || err2 != nil || pid <= 0 {
		return 0, 0, false
	}
	return pid, start, true
}

// validSessionName reports whether name has the form of a session name.
func validSessionName(name string) bool {
	_, _, ok := parseSessionName(name)
	return ok
}

// sessionAlive reports whether name is a session name and whether its
// process still holds it.
func (s *Store) sessionAlive(name string) (valid, alive bool) {
	return nameAlive(s.Path("run"), name)
}

// SessionAlive reports whether the process a session or temp name
// ("PID-STARTTIME") belongs to still runs and holds it.
func (s *Store) SessionAlive(name string) bool {
	_, alive := s.sessionAlive(name)
	return alive
}

// ContainerID is the runc container id suffix names in this session.
func (se *Session) ContainerID(suffix string) string {
	return containerPrefix + se.Name + "-" + suffix
}

// NextContainerID is a container id not given out before, by this
// session or another of this process.
func (se *Session) NextContainerID() string {
	return se.ContainerID(se.token + "-" + strconv.FormatInt(se.seq.Add(1), 10))
}

// ContainerSession returns the session name of a container id strata made
// (see ContainerID); ok is false for an id strata did not make.
func ContainerSession(id string) (session string, ok bool) {
	rest, ok := strings.CutPrefix(id, containerPrefix)
	if !ok {
		return "", false
	}
	parts := strings.SplitN(rest, "-", 3)
	if len(parts) < 2 {
		return "", false
	}
	name := parts[0] + "-" + parts[1]
	if _, _, ok := parseSessionName(name); !ok {
		return "", false
	}
	return name, true
}

// sessionSeq numbers the containers of one session.
type sessionSeq = atomic.Int64
