package builder

import (
	"fmt"
	"path"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/linter"
	"github.com/moby/buildkit/frontend/dockerfile/shell"

	"github.com/strata-build/strata/internal/dockerfile"
)

// imageState is what a stage's instructions know of its image besides its
// files: the config (with its history), BuildKit's "state env" and the ARG
// declarations. The config-only instructions (ENV, ARG, LABEL, CMD, ...)
// change nothing else, so they are its methods and need no build.
type imageState struct {
	cfg *v1.ConfigFile
	// env is BuildKit's "state env": ENV values and ARG values in the order
	// they were set; RUN sees it and word expansion uses it. The image config
	// keeps only ENV.
	env envList
	// declared holds every ARG name declared in the stage, with or without a
	// value; argOrder the declarations in order (for RUN's history entry).
	declared map[string]bool
	argOrder []instructions.KeyValuePairOptional
	cmdSet   bool // CMD set in this stage (ENTRYPOINT keeps it)

	escape     rune           // the Dockerfile's escape character (0: backslash)
	epoch      *time.Time     // SOURCE_DATE_EPOCH: the time of config-only history entries
	lint       *linter.Linter // reports variables expansion does not find; nil: none
	unknownEnv bool           // a --check stage whose base config is unknown: no such reports
}

// argSources are where ARG finds the values a stage does not give.
type argSources struct {
	buildArgs map[string]string // --build-arg values
	globals   shell.EnvGetter   // the ARGs before the first FROM
	use       func(name string) // notes a --build-arg the stage declares; nil: none
}

// lexer returns a word expander for the Dockerfile's escape character.
func (s *imageState) lexer() *shell.Lex {
	esc := s.escape
	if esc == 0 {
		esc = '\\'
	}
	return shell.NewLex(esc)
}

// expand expands the variables in c's words with the state env, with or
// without processing quotes as the instruction asks.
func (s *imageState) expand(c instructions.Command) error {
	word := func(raw bool) func(string) (string, error) {
		lex := s.lexer()
		lex.SkipProcessQuotes = raw
		return func(word string) (string, error) {
			v, unmatched, err := lex.ProcessWord(word, s.env.getter())
			s.reportUnmatched(c, unmatched)
			if err == nil {
				err = dockerfile.CheckWord(v)
			}
			return v, err
		}
	}
	if ex, ok := c.(instructions.SupportsSingleWordExpansion); ok {
		if err := ex.Expand(word(false)); err != nil {
			return err
		}
	}
	if ex, ok := c.(instructions.SupportsSingleWordExpansionRaw); ok {
		return ex.ExpandRaw(word(true))
	}
	return nil
}

// reportUnmatched reports UndefinedVar for variables an expansion did not find.
func (s *imageState) reportUnmatched(c instructions.Command, unmatched map[string]struct{}) {
	if len(unmatched) == 0 || s.unknownEnv {
		return
	}
	for v := range unmatched {
		if s.declared[v] {
			continue
		}
		msg := linter.RuleUndefinedVar.Format(v, suggestName(v, s.env.getter().Keys()))
		s.lint.Run(&linter.RuleUndefinedVar, c.Location(), msg)
	}
}

// resolvePath makes p absolute against the working directory.
func (s *imageState) resolvePath(p string) string {
	if path.IsAbs(p) {
		return p
	}
	wd := s.cfg.Config.WorkingDir
	if wd == "" {
		wd = "/"
	}
	return path.Join(wd, p)
}

// history appends the history entry of a config-only step. Without
// SOURCE_DATE_EPOCH it has no time yet: the image's writer fills it in as
// BuildKit does (image.FillHistoryTimes), from the layers around it.
func (s *imageState) history(createdBy string, empty bool) {
	var t time.Time
	if e := s.epoch; e != nil {
		t = e.UTC()
	}
	s.historyAt(createdBy, empty, t)
}

// historyAt appends a history entry made at t.
func (s *imageState) historyAt(createdBy string, empty bool, t time.Time) {
	h := v1.History{CreatedBy: createdBy, Comment: historyComment, EmptyLayer: empty}
	if !t.IsZero() {
		h.Created = v1.Time{Time: t}
	}
	s.cfg.History = append(s.cfg.History, h)
}

// config applies an instruction that only changes the image config.
func (s *imageState) config(c instructions.Command) error {
	cfg := &s.cfg.Config
	switch c := c.(type) {
	case *instructions.EnvCommand:
		var parts []string
		for _, kv := range c.Env {
			s.env = s.env.set(kv.Key, kv.Value)
			cfg.Env = envList(cfg.Env).set(kv.Key, kv.Value)
			parts = append(parts, kv.Key+"="+kv.Value)
		}
		s.history("ENV "+strings.Join(parts, " "), true)
	case *instructions.LabelCommand:
		if cfg.Labels == nil {
			cfg.Labels = map[string]string{}
		}
		var parts []string
		for _, kv := range c.Labels {
			cfg.Labels[kv.Key] = kv.Value
			parts = append(parts, kv.Key+"="+kv.Value)
		}
		s.history("LABEL "+strings.Join(parts, " "), true)
	case *instructions.MaintainerCommand:
		s.cfg.Author = c.Maintainer
		s.history(fmt.Sprintf("MAINTAINER %v", c.Maintainer), true)
	case *instructions.CmdCommand:
		cfg.Cmd = s.withShell(c.ShellDependantCmdLine)
		s.cmdSet = true
		s.history(fmt.Sprintf("CMD %q", cfg.Cmd), true)
	case *instructions.EntrypointCommand:
		cfg.Entrypoint = s.withShell(c.ShellDependantCmdLine)
		if !s.cmdSet {
			cfg.Cmd = nil
		}
		s.history(fmt.Sprintf("ENTRYPOINT %q", cfg.Entrypoint), true)
	case *instructions.UserCommand:
		cfg.User = c.User
		s.history(fmt.Sprintf("USER %v", c.User), true)
	case *instructions.ExposeCommand:
		return s.expose(c)
	case *instructions.VolumeCommand:
		return s.volume(c)
	case *instructions.StopSignalCommand:
		cfg.StopSignal = c.Signal
		s.history(fmt.Sprintf("STOPSIGNAL %v", c.Signal), true)
	case *instructions.ShellCommand:
		cfg.Shell = append([]string(nil), c.Shell...)
		s.history(fmt.Sprintf("SHELL %v", c.Shell), true)
	case *instructions.HealthCheckCommand:
		h := c.Health
		cfg.Healthcheck = &v1.HealthConfig{Test: h.Test, Interval: h.Interval, Timeout: h.Timeout, StartPeriod: h.StartPeriod, Retries: h.Retries}
		s.history(fmt.Sprintf("HEALTHCHECK %+v", *h), true)
	case *instructions.OnbuildCommand:
		cfg.OnBuild = append(cfg.OnBuild, c.Expression) // BuildKit adds no history entry
	default:
		return fmt.Errorf("instruction %s is not supported", strings.ToUpper(c.Name()))
	}
	return nil
}

// expose applies EXPOSE: the ports, expanded, in the config.
func (s *imageState) expose(c *instructions.ExposeCommand) error {
	cfg := &s.cfg.Config
	if cfg.ExposedPorts == nil {
		cfg.ExposedPorts = map[string]struct{}{}
	}
	lex := s.lexer()
	var ports []string
	for _, p := range c.Ports {
		words, err := lex.ProcessWords(p, s.env.getter())
		if err != nil {
			return err
		}
		for _, w := range words {
			ps, err := parsePorts(w)
			if err != nil {
				return err
			}
			for _, p := range ps {
				cfg.ExposedPorts[p] = struct{}{}
				ports = append(ports, p)
			}
		}
	}
	s.history(fmt.Sprintf("EXPOSE %v", ports), true)
	return nil
}

// volume applies VOLUME.
func (s *imageState) volume(c *instructions.VolumeCommand) error {
	cfg := &s.cfg.Config
	if cfg.Volumes == nil {
		cfg.Volumes = map[string]struct{}{}
	}
	for _, v := range c.Volumes {
		if v == "" {
			return fmt.Errorf("VOLUME specified can not be an empty string")
		}
		cfg.Volumes[v] = struct{}{}
	}
	s.history(fmt.Sprintf("VOLUME %v", c.Volumes), true)
	return nil
}

// arg declares build arguments in the stage (BuildKit's dispatchArg).
func (s *imageState) arg(c *instructions.ArgCommand, from argSources) error {
	lex := s.lexer()
	var parts []string
	for _, kv := range c.Args {
		if s.declared == nil {
			s.declared = map[string]bool{}
		}
		s.declared[kv.Key] = true
		s.argOrder = append(s.argOrder, kv)
		val, hasValue := from.buildArgs[kv.Key]
		if hasValue && from.use != nil {
			from.use(kv.Key)
		}
		var v *string
		switch {
		case hasValue:
			v = &val
		case kv.Value != nil:
			w, unmatched, err := lex.ProcessWord(*kv.Value, s.env.getter())
			s.reportUnmatched(c, unmatched)
			if err == nil {
				err = dockerfile.CheckWord(w)
			}
			if err != nil {
				return err
			}
			v = &w
		default:
			if from.globals == nil {
				break
			}
			if g, ok := from.globals.Get(kv.Key); ok {
				v = &g
			}
		}
		part := kv.Key
		if v != nil {
			s.env = s.env.set(kv.Key, *v)
			part += "=" + *v
		}
		parts = append(parts, part)
	}
	s.history("ARG "+strings.Join(parts, " "), true)
	return nil
}

// withShell wraps a shell-form command line in the image's SHELL.
func (s *imageState) withShell(c instructions.ShellDependantCmdLine) []string {
	if !c.PrependShell {
		return append([]string(nil), c.CmdLine...)
	}
	return append(s.shell(), strings.Join(c.CmdLine, " "))
}

func (s *imageState) shell() []string {
	if sh := s.cfg.Config.Shell; len(sh) > 0 {
		return append([]string(nil), sh...)
	}
	return []string{"/bin/sh", "-c"}
}

// parsePorts turns "80", "53/udp", "8000-8002/tcp" (or the legacy
// "[ip:][hostport:]port/proto") into "PORT/PROTO" keys.
func parsePorts(s string) ([]string, error) {
	spec := s
	if i := strings.LastIndex(spec, ":"); i >= 0 {
		spec = spec[i+1:]
	}
	port, proto, _ := strings.Cut(spec, "/")
	if proto == "" {
		proto = "tcp"
	}
	proto = strings.ToLower(proto)
	lo, hi, isRange := strings.Cut(port, "-")
	var a, b int
	if _, err := fmt.Sscanf(lo, "%d", &a); err != nil || a < 0 || a > 65535 {
		return nil, fmt.Errorf("invalid port %q", s)
	}
	b = a
	if isRange {
		if _, err := fmt.Sscanf(hi, "%d", &b); err != nil || b < a || b > 65535 {
			return nil, fmt.Errorf("invalid port range %q", s)
		}
	}
	var out []string
	for p := a; p <= b; p++ {
		out = append(out, fmt.Sprintf("%d/%s", p, proto))
	}
	return out, nil
}
