package builder

import (
	"fmt"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/moby/buildkit/frontend/dockerfile/instructions"

	"github.com/strata-build/strata/internal/dockerfile"
)

// history appends the history entry of a config-only step. Without
// SOURCE_DATE_EPOCH it has no time yet: the image's writer fills it in as
// BuildKit does (image.FillHistoryTimes), from the layers around it.
func (sb *stageBuilder) history(createdBy string, empty bool) {
	var t time.Time
	if e := sb.r.opts.SourceDateEpoch; e != nil {
		t = e.UTC()
	}
	sb.historyAt(createdBy, empty, t)
}

// historyAt appends a history entry made at t.
func (sb *stageBuilder) historyAt(createdBy string, empty bool, t time.Time) {
	h := v1.History{CreatedBy: createdBy, Comment: historyComment, EmptyLayer: empty}
	if !t.IsZero() {
		h.Created = v1.Time{Time: t}
	}
	sb.state.cfg.History = append(sb.state.cfg.History, h)
}

// config applies an instruction that only changes the image config.
func (sb *stageBuilder) config(c instructions.Command) error {
	cfg := &sb.state.cfg.Config
	switch c := c.(type) {
	case *instructions.EnvCommand:
		var parts []string
		for _, kv := range c.Env {
			sb.env = sb.env.set(kv.Key, kv.Value)
			cfg.Env = envList(cfg.Env).set(kv.Key, kv.Value)
			parts = append(parts, kv.Key+"="+kv.Value)
		}
		sb.history("ENV "+strings.Join(parts, " "), true)
	case *instructions.ArgCommand:
		return sb.arg(c)
	case *instructions.LabelCommand:
		if cfg.Labels == nil {
			cfg.Labels = map[string]string{}
		}
		var parts []string
		for _, kv := range c.Labels {
			cfg.Labels[kv.Key] = kv.Value
			parts = append(parts, kv.Key+"="+kv.Value)
		}
		sb.history("LABEL "+strings.Join(parts, " "), true)
	case *instructions.MaintainerCommand:
		sb.state.cfg.Author = c.Maintainer
		sb.history(fmt.Sprintf("MAINTAINER %v", c.Maintainer), true)
	case *instructions.CmdCommand:
		cfg.Cmd = sb.withShell(c.ShellDependantCmdLine)
		sb.cmdSet = true
		sb.history(fmt.Sprintf("CMD %q", cfg.Cmd), true)
	case *instructions.EntrypointCommand:
		cfg.Entrypoint = sb.withShell(c.ShellDependantCmdLine)
		if !sb.cmdSet {
			cfg.Cmd = nil
		}
		sb.history(fmt.Sprintf("ENTRYPOINT %q", cfg.Entrypoint), true)
	case *instructions.UserCommand:
		cfg.User = c.User
		sb.history(fmt.Sprintf("USER %v", c.User), true)
	case *instructions.ExposeCommand:
		return sb.expose(c)
	case *instructions.VolumeCommand:
		return sb.volume(c)
	case *instructions.StopSignalCommand:
		cfg.StopSignal = c.Signal
		sb.history(fmt.Sprintf("STOPSIGNAL %v", c.Signal), true)
	case *instructions.ShellCommand:
		cfg.Shell = append([]string(nil), c.Shell...)
		sb.history(fmt.Sprintf("SHELL %v", c.Shell), true)
	case *instructions.HealthCheckCommand:
		h := c.Health
		cfg.Healthcheck = &v1.HealthConfig{Test: h.Test, Interval: h.Interval, Timeout: h.Timeout, StartPeriod: h.StartPeriod, Retries: h.Retries}
		sb.history(fmt.Sprintf("HEALTHCHECK %+v", *h), true)
	case *instructions.OnbuildCommand:
		cfg.OnBuild = append(cfg.OnBuild, c.Expression) // BuildKit adds no history entry
	default:
		return fmt.Errorf("instruction %s is not supported", strings.ToUpper(c.Name()))
	}
	return nil
}

// expose applies EXPOSE: the ports, expanded, in the config.
func (sb *stageBuilder) expose(c *instructions.ExposeCommand) error {
	cfg := &sb.state.cfg.Config
	if cfg.ExposedPorts == nil {
		cfg.ExposedPorts = map[string]struct{}{}
	}
	lex := sb.r.df.Lexer()
	var ports []string
	for _, p := range c.Ports {
		words, err := lex.ProcessWords(p, sb.env.getter())
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
	sb.history(fmt.Sprintf("EXPOSE %v", ports), true)
	return nil
}

// volume applies VOLUME.
func (sb *stageBuilder) volume(c *instructions.VolumeCommand) error {
	cfg := &sb.state.cfg.Config
	if cfg.Volumes == nil {
		cfg.Volumes = map[string]struct{}{}
	}
	for _, v := range c.Volumes {
		if v == "" {
			return fmt.Errorf("VOLUME specified can not be an empty string")
		}
		cfg.Volumes[v] = struct{}{}
	}
	sb.history(fmt.Sprintf("VOLUME %v", c.Volumes), true)
	return nil
}

// arg declares build arguments in the stage (BuildKit's dispatchArg).
func (sb *stageBuilder) arg(c *instructions.ArgCommand) error {
	lex := sb.r.df.Lexer()
	var parts []string
	for _, kv := range c.Args {
		sb.declared[kv.Key] = true
		sb.argOrder = append(sb.argOrder, kv)
		val, hasValue := sb.r.opts.BuildArgs[kv.Key]
		if hasValue {
			sb.r.useArg(kv.Key)
		}
		var v *string
		switch {
		case hasValue:
			v = &val
		case kv.Value != nil:
			s, unmatched, err := lex.ProcessWord(*kv.Value, sb.env.getter())
			sb.reportUnmatched(c, unmatched)
			if err == nil {
				err = dockerfile.CheckWord(s)
			}
			if err != nil {
				return err
			}
			v = &s
		default:
			if g, ok := sb.r.globals.Get(kv.Key); ok {
				v = &g
			}
		}
		part := kv.Key
		if v != nil {
			sb.env = sb.env.set(kv.Key, *v)
			part += "=" + *v
		}
		parts = append(parts, part)
	}
	sb.history("ARG "+strings.Join(parts, " "), true)
	return nil
}

// withShell wraps a shell-form command line in the image's SHELL.
func (sb *stageBuilder) withShell(c instructions.ShellDependantCmdLine) []string {
	if !c.PrependShell {
		return append([]string(nil), c.CmdLine...)
	}
	return append(sb.shell(), strings.Join(c.CmdLine, " "))
}

func (sb *stageBuilder) shell() []string {
	if s := sb.state.cfg.Config.Shell; len(s) > 0 {
		return append([]string(nil), s...)
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
