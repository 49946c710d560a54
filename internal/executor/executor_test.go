package executor

import (
	"strings"
	"testing"
)

func TestValidate(t *testing.T) {
	ok := Process{ID: "strata-1-2-3", Args: []string{"true"}, Rootfs: "/r"}
	for _, tc := range []struct {
		name   string
		change func(p *Process)
		err    string // "" valid
	}{
		{"minimal", func(p *Process) {}, ""},
		{"all modes", func(p *Process) { p.Network, p.Security, p.Cwd = NetworkPrivate, SecurityInsecure, "/w" }, ""},
		{"bad id", func(p *Process) { p.ID = "a/b" }, `invalid container id "a/b"`},
		{"empty id", func(p *Process) { p.ID = "" }, "invalid container id"},
		{"no command", func(p *Process) { p.Args = nil }, "run strata-1-2-3: no command"},
		{"network", func(p *Process) { p.Network = "bridge" }, `unknown network mode "bridge"`},
		{"security", func(p *Process) { p.Security = "privileged" }, `unknown security mode "privileged"`},
		{"no rootfs", func(p *Process) { p.Rootfs = "" }, "no rootfs"},
		{"relative cwd", func(p *Process) { p.Cwd = "w" }, `working directory "w" is not absolute`},
	} {
		p := ok
		tc.change(&p)
		err := p.Validate()
		switch {
		case tc.err == "" && err != nil:
			t.Errorf("%s: %v", tc.name, err)
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("%s: error %v, want %q", tc.name, err, tc.err)
		}
	}
	for cwd, want := range map[string]string{"": "/", "/a/../b/": "/b", "/": "/"} {
		p := Process{Cwd: cwd}
		if got := p.WorkingDir(); got != want {
			t.Errorf("WorkingDir(%q) = %q, want %q", cwd, got, want)
		}
	}
}
