package builder

import (
	"reflect"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/parser"
)

// applyLines runs Dockerfile lines of config-only instructions on s as a
// stage does: words expanded with the state env, then the instruction.
func applyLines(t *testing.T, s *imageState, from argSources, lines ...string) error {
	t.Helper()
	for _, line := range lines {
		res, err := parser.Parse(strings.NewReader(line + "\n"))
		if err != nil {
			t.Fatalf("parse %q: %v", line, err)
		}
		c, err := instructions.ParseCommand(res.AST.Children[0])
		if err != nil {
			t.Fatalf("parse %q: %v", line, err)
		}
		if _, isArg := c.(*instructions.ArgCommand); !isArg {
			if err := s.expand(c); err != nil {
				return err
			}
		}
		if a, ok := c.(*instructions.ArgCommand); ok {
			err = s.arg(a, from)
		} else {
			err = s.config(c)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// The config-only instructions change the config, the state env and the
// history of an image state, and nothing else: no build, store or runc.
func TestImageStateConfig(t *testing.T) {
	t.Parallel()
	base := func() v1.ConfigFile {
		return v1.ConfigFile{Config: v1.Config{Env: []string{"PATH=/bin", "A=base"}, Cmd: []string{"base-cmd"}, WorkingDir: "/w"}}
	}
	for _, tc := range []struct {
		name    string
		lines   []string
		check   func(t *testing.T, cfg v1.ConfigFile, s *imageState)
		history []string
		err     string
	}{
		// words are expanded before the instruction: B sees the old A
		{name: "env", lines: []string{"ENV A=1 B=${A}x", "ENV C $B"},
			check: func(t *testing.T, cfg v1.ConfigFile, s *imageState) {
				want := []string{"PATH=/bin", "A=1", "B=basex", "C=basex"}
				if !reflect.DeepEqual(cfg.Config.Env, want) || !reflect.DeepEqual([]string(s.env), want) {
					t.Errorf("env %q, state env %q", cfg.Config.Env, s.env)
				}
			},
			history: []string{"ENV A=1 B=basex", "ENV C=basex"}},
		{name: "label", lines: []string{`LABEL a=1 "b c"=$A`},
			check: func(t *testing.T, cfg v1.ConfigFile, _ *imageState) {
				if !reflect.DeepEqual(cfg.Config.Labels, map[string]string{"a": "1", "b c": "base"}) {
					t.Errorf("labels %v", cfg.Config.Labels)
				}
			},
			history: []string{"LABEL a=1 b c=base"}},
		{name: "cmd then entrypoint keeps cmd", lines: []string{"CMD echo hi", `ENTRYPOINT ["/e"]`},
			check: func(t *testing.T, cfg v1.ConfigFile, s *imageState) {
				if !reflect.DeepEqual(cfg.Config.Cmd, []string{"/bin/sh", "-c", "echo hi"}) || !reflect.DeepEqual(cfg.Config.Entrypoint, []string{"/e"}) || !s.cmdSet {
					t.Errorf("cmd %q entrypoint %q", cfg.Config.Cmd, cfg.Config.Entrypoint)
				}
			},
			history: []string{`CMD ["/bin/sh" "-c" "echo hi"]`, `ENTRYPOINT ["/e"]`}},
		{name: "entrypoint clears the base cmd", lines: []string{"ENTRYPOINT run"},
			check: func(t *testing.T, cfg v1.ConfigFile, _ *imageState) {
				if cfg.Config.Cmd != nil || !reflect.DeepEqual(cfg.Config.Entrypoint, []string{"/bin/sh", "-c", "run"}) {
					t.Errorf("cmd %q entrypoint %q", cfg.Config.Cmd, cfg.Config.Entrypoint)
				}
			},
			history: []string{`ENTRYPOINT ["/bin/sh" "-c" "run"]`}},
		{name: "shell", lines: []string{`SHELL ["/bin/bash", "-ec"]`, "CMD x"},
			check: func(t *testing.T, cfg v1.ConfigFile, _ *imageState) {
				if !reflect.DeepEqual(cfg.Config.Cmd, []string{"/bin/bash", "-ec", "x"}) {
					t.Errorf("cmd %q", cfg.Config.Cmd)
				}
			},
			history: []string{"SHELL [/bin/bash -ec]", `CMD ["/bin/bash" "-ec" "x"]`}},
		{name: "user stopsignal maintainer", lines: []string{"USER app:$A", "STOPSIGNAL SIGKILL", "MAINTAINER me"},
			check: func(t *testing.T, cfg v1.ConfigFile, _ *imageState) {
				if cfg.Config.User != "app:base" || cfg.Config.StopSignal != "SIGKILL" || cfg.Author != "me" {
					t.Errorf("user %q stopsignal %q author %q", cfg.Config.User, cfg.Config.StopSignal, cfg.Author)
				}
			},
			history: []string{"USER app:base", "STOPSIGNAL SIGKILL", "MAINTAINER me"}},
		{name: "expose", lines: []string{"ENV P=8000-8001", "EXPOSE 80 53/UDP $P"},
			check: func(t *testing.T, cfg v1.ConfigFile, _ *imageState) {
				want := map[string]struct{}{"80/tcp": {}, "53/udp": {}, "8000/tcp": {}, "8001/tcp": {}}
				if !reflect.DeepEqual(cfg.Config.ExposedPorts, want) {
					t.Errorf("ports %v", cfg.Config.ExposedPorts)
				}
			},
			history: []string{"ENV P=8000-8001", "EXPOSE [8000/tcp 8001/tcp 53/udp 80/tcp]"}},
		{name: "bad port", lines: []string{"EXPOSE http"}, err: `invalid port "http"`},
		{name: "volume", lines: []string{`VOLUME ["/data", "/$A"]`},
			check: func(t *testing.T, cfg v1.ConfigFile, _ *imageState) {
				if !reflect.DeepEqual(cfg.Config.Volumes, map[string]struct{}{"/data": {}, "/base": {}}) {
					t.Errorf("volumes %v", cfg.Config.Volumes)
				}
			},
			history: []string{"VOLUME [/data /base]"}},
		{name: "healthcheck and onbuild", lines: []string{"HEALTHCHECK --retries=2 CMD true", "ONBUILD RUN x"},
			check: func(t *testing.T, cfg v1.ConfigFile, _ *imageState) {
				if h := cfg.Config.Healthcheck; h == nil || h.Retries != 2 || !reflect.DeepEqual(h.Test, []string{"CMD-SHELL", "true"}) {
					t.Errorf("healthcheck %+v", h)
				}
				if !reflect.DeepEqual(cfg.Config.OnBuild, []string{"RUN x"}) {
					t.Errorf("onbuild %q", cfg.Config.OnBuild)
				}
			},
			history: []string{"HEALTHCHECK {Test:[CMD-SHELL true] Interval:0s Timeout:0s StartPeriod:0s StartInterval:0s Retries:2}"}},
		{name: "not config-only", lines: []string{"RUN true"}, err: "instruction RUN is not supported"},
		{name: "arg values", lines: []string{"ARG B=${A}-d C D G"},
			check: func(t *testing.T, cfg v1.ConfigFile, s *imageState) {
				want := []string{"PATH=/bin", "A=base", "B=base-d", "C=built", "G=global"}
				if !reflect.DeepEqual([]string(s.env), want) {
					t.Errorf("state env %q, want %q", s.env, want)
				}
				if len(cfg.Config.Env) != 2 {
					t.Errorf("ARG changed the config env: %q", cfg.Config.Env)
				}
				if !s.declared["D"] || len(s.argOrder) != 4 {
					t.Errorf("declared %v, order %v", s.declared, s.argOrder)
				}
			},
			history: []string{"ARG B=base-d C=built D G=global"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := base()
			s := &imageState{cfg: &cfg, env: envList(cfg.Config.Env)}
			var used []string
			from := argSources{buildArgs: map[string]string{"C": "built"}, globals: mapGetter{"G": "global"}, use: func(k string) { used = append(used, k) }}
			err := applyLines(t, s, from, tc.lines...)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tc.check != nil {
				tc.check(t, cfg, s)
			}
			var got []string
			for _, h := range cfg.History {
				got = append(got, h.CreatedBy)
				if !h.EmptyLayer || h.Comment != historyComment || !h.Created.IsZero() {
					t.Errorf("history entry %+v", h)
				}
			}
			if !reflect.DeepEqual(got, tc.history) {
				t.Errorf("history %q, want %q", got, tc.history)
			}
			if strings.HasPrefix(tc.name, "arg") && !reflect.DeepEqual(used, []string{"C"}) {
				t.Errorf("used build args %q", used)
			}
		})
	}
}

// With SOURCE_DATE_EPOCH, config-only history entries carry its time.
func TestImageStateEpoch(t *testing.T) {
	t.Parallel()
	epoch := time.Unix(1700000000, 0)
	var cfg v1.ConfigFile
	s := &imageState{cfg: &cfg, epoch: &epoch}
	if err := applyLines(t, s, argSources{}, "USER 1", "ARG X"); err != nil {
		t.Fatal(err)
	}
	for _, h := range cfg.History {
		if !h.Created.Time.Equal(epoch) {
			t.Errorf("%s at %v, want %v", h.CreatedBy, h.Created, epoch)
		}
	}
}

// resolvePath makes a path absolute against the working directory.
func TestImageStateResolvePath(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ wd, p, want string }{
		{"", "a", "/a"}, {"/w", "a/b", "/w/a/b"}, {"/w", "/abs", "/abs"}, {"/w/", "../x", "/x"},
	} {
		s := &imageState{cfg: &v1.ConfigFile{Config: v1.Config{WorkingDir: tc.wd}}}
		if got := s.resolvePath(tc.p); got != tc.want {
			t.Errorf("resolvePath(%q) in %q = %q, want %q", tc.p, tc.wd, got, tc.want)
		}
	}
}
