package builder

import (
	"context"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/parser"
	"github.com/moby/buildkit/util/entitlements"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/strata-build/strata/internal/binfmt"
	"github.com/strata-build/strata/internal/cache"
	"github.com/strata-build/strata/internal/executor"
	"github.com/strata-build/strata/internal/fscopy"
	"github.com/strata-build/strata/internal/platform"
	"github.com/strata-build/strata/internal/progress"
	"github.com/strata-build/strata/internal/source"
)

// RunError is a failed RUN: the stage, step, command, exit code and the last
// lines of its output.
type RunError struct {
	Stage    string
	Step     string
	Command  string
	ExitCode int
	Tail     []string
	Note     string // the executor's word on failed runs (executor.Noter)
}

func (e *RunError) Error() string {
	s := fmt.Sprintf("process %q did not complete successfully: exit code: %d (stage %s, step %s)", e.Command, e.ExitCode, e.Stage, e.Step)
	if len(e.Tail) > 0 {
		s += "\nlast output lines:\n  " + strings.Join(e.Tail, "\n  ")
	}
	if e.Note != "" {
		s += "\nnote: " + e.Note
	}
	return s
}

// runArgs builds argv for a RUN, heredocs included (as dockerfile2llb does).
func (sb *stageBuilder) runArgs(c *instructions.RunCommand) ([]string, []specs.Mount, func(), error) {
	args := c.CmdLine
	var mounts []specs.Mount
	cleanup := func() {}
	if len(c.Files) > 0 {
		if len(args) != 1 || !c.PrependShell {
			return nil, nil, cleanup, fmt.Errorf("parsing produced an invalid run command: %v", args)
		}
		if hd := parser.MustParseHeredoc(args[0]); hd != nil {
			data := c.Files[0].Data
			if c.Files[0].Chomp {
				data = parser.ChompHeredocContent(data)
			}
			if strings.HasPrefix(data, "#!") {
				dir, err := os.MkdirTemp(sb.svc.session.Dir, "pipes-")
				if err != nil {
					return nil, nil, cleanup, err
				}
				cleanup = func() { os.RemoveAll(dir) }
				name := path.Base(c.Files[0].Name)
				if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o755); err != nil {
					return nil, nil, cleanup, err
				}
				os.Chmod(filepath.Join(dir, name), 0o755)
				mounts = append(mounts, specs.Mount{Destination: "/dev/pipes", Type: "bind", Source: dir, Options: []string{"rbind", "ro"}})
				return []string{"/dev/pipes/" + name}, mounts, cleanup, nil
			}
			args = []string{data}
		} else {
			var b strings.Builder
			b.WriteString(args[0])
			for _, f := range c.Files {
				b.WriteByte('\n')
				b.WriteString(f.Data)
				b.WriteString(f.Name)
			}
			args = []string{b.String()}
		}
	}
	if c.PrependShell {
		args = append(sb.img.shell(), strings.Join(args, " "))
	}
	return args, mounts, cleanup, nil
}

// run executes a RUN instruction in runc on an overlay snapshot.
func (sb *stageBuilder) run(ctx context.Context, c *instructions.RunCommand, p *progress.Step) error {
	emulator, err := binfmt.Check(sb.svc.opts.BinfmtDir, sb.state.platform)
	if err != nil {
		return err
	}
	args, extra, cleanup, err := sb.runArgs(c)
	defer cleanup()
	if err != nil {
		return err
	}
	network, security, err := sb.runModes(c)
	if err != nil {
		return err
	}
	releases := []func(){}
	defer func() {
		for i := len(releases) - 1; i >= 0; i-- {
			releases[i]()
		}
	}()
	mounts, secretEnv, err := sb.runMounts(ctx, c, &releases)
	if err != nil {
		return err
	}
	mounts = append(mounts, extra...)

	createdBy := "RUN " + sb.runCommandString(args) + " # buildkit"
	cfg := sb.img.cfg.Config
	cwd := cfg.WorkingDir
	if cwd == "" {
		cwd = "/"
	}
	inputs, err := sb.runInputs(ctx, c, args, network, security, secretEnv)
	if err != nil {
		return err
	}
	return sb.change(ctx, p, createdBy, inputs, func(rootfs string) error {
		if emulator != "" {
			p.SetEmulated(platform.Format(sb.state.platform))
			fmt.Fprintf(p, "emulated: %s through %s\n", platform.Format(sb.state.platform), emulator)
		}
		id := sb.svc.session.NextContainerID()
		code, err := sb.svc.runner.Run(ctx, executor.Process{
			ID:       id,
			Rootfs:   rootfs,
			Args:     args,
			Env:      append(append([]string(nil), sb.img.env...), secretEnv...),
			Cwd:      cwd,
			User:     cfg.User,
			Network:  network,
			Security: security,
			Stdout:   p,
			Stderr:   p,
			Mounts:   mounts,
		})
		if err != nil {
			return err
		}
		if code != 0 {
			cmd := strings.Join(args, " ")
			re := &RunError{Stage: sb.display(), Step: fmt.Sprintf("%d/%d", sb.step, sb.total), Command: cmd, ExitCode: code, Tail: p.Tail()}
			if n, ok := sb.svc.runner.(executor.Noter); ok {
				re.Note = n.FailureNote()
			}
			return re
		}
		return nil
	})
}

// runModes returns the network and security modes of a RUN: the build's
// network unless --network says otherwise, and the sandbox unless
// --security=insecure; host network and insecure need their entitlement.
func (sb *stageBuilder) runModes(c *instructions.RunCommand) (network, security string, err error) {
	if network, err = sb.runNetwork(instructions.GetNetwork(c)); err != nil {
		return "", "", err
	}
	if security, err = sb.runSecurity(instructions.GetSecurity(c)); err != nil {
		return "", "", err
	}
	return network, security, nil
}

func (sb *stageBuilder) runNetwork(n string) (string, error) {
	switch n {
	case "", instructions.NetworkDefault:
		return sb.svc.opts.Network, nil
	case instructions.NetworkHost:
		// As in BuildKit: a Dockerfile may not reach the host's network on its
		// own; the user grants it (unless the whole build has it anyway).
		if sb.svc.opts.Network != executor.NetworkHost {
			return n, sb.entitled(entitlements.Values{NetworkHost: true}, "network.host")
		}
		return n, nil
	case instructions.NetworkNone:
		return n, nil
	}
	return "", fmt.Errorf("RUN --network=%s is not supported (use default, host or none)", n)
}

func (sb *stageBuilder) runSecurity(sec string) (string, error) {
	switch sec {
	case "", instructions.SecuritySandbox:
		return executor.SecuritySandbox, nil
	case instructions.SecurityInsecure:
		return executor.SecurityInsecure, sb.entitled(entitlements.Values{SecurityInsecure: true}, "security.insecure")
	}
	return "", fmt.Errorf("RUN --security=%s is not supported", sec)
}

// entitled checks that the build was granted what a RUN asks for
// (BuildKit's check and words, when it loads the build).
func (sb *stageBuilder) entitled(v entitlements.Values, allow string) error {
	if err := sb.svc.opts.Entitlements.Check(v); err != nil {
		return fmt.Errorf("%w (start the build with --allow %s)", err, allow)
	}
	return nil
}

// runInputs are the cache key inputs of a RUN: what it runs, with which
// environment, user, directory and network, and what its mounts bring in.
// Secret values never take part (only the secret's name).
func (sb *stageBuilder) runInputs(ctx context.Context, c *instructions.RunCommand, args []string, network, security string, secretEnv []string) ([]cache.Input, error) {
	cfg := sb.img.cfg.Config
	in := []cache.Input{
		{Name: "instruction", Value: strings.Join(args, "\x00")},
		{Name: "env", Value: strings.Join(sb.img.env, "\x00")},
		{Name: "user", Value: cfg.User},
		{Name: "workdir", Value: cfg.WorkingDir},
		{Name: "network", Value: network},
	}
	if security != executor.SecuritySandbox {
		// only when set, so that the keys of sandboxed RUNs stay as they were
		in = append(in, cache.Input{Name: "security", Value: security})
	}
	for _, kv := range secretEnv {
		k, _, _ := strings.Cut(kv, "=")
		in = append(in, cache.Input{Name: "secret env", Value: k})
	}
	for i, m := range instructions.GetMounts(c) {
		name := fmt.Sprintf("mount %d", i)
		desc := fmt.Sprintf("type=%s target=%s source=%s from=%s id=%s sharing=%s ro=%v", m.Type, m.Target, m.Source, m.From, m.CacheID, m.CacheSharing, m.ReadOnly)
		in = append(in, cache.Input{Name: name, Value: desc})
		if m.Type != instructions.MountTypeBind {
			continue // caches, tmpfs, secrets and ssh do not make the result
		}
		// what a bind mount shows counts: a stage or image by its key, the
		// context (or a named directory) by its files
		ref, err := sb.resolveFrom(m.From)
		if err != nil {
			return nil, err
		}
		v, err := sb.mountKey(ctx, ref, m.Source)
		if err != nil {
			return nil, err
		}
		in = append(in, cache.Input{Name: name + " content", Value: v})
	}
	return in, nil
}

// runCommandString is BuildKit's history text of a RUN: the stage's
// declared ARGs ("|N K=V ...", values as the RUN sees them) then argv.
func (sb *stageBuilder) runCommandString(args []string) string {
	var kv []string
	idx := map[string]int{}
	for _, a := range sb.img.argOrder {
		v, ok := sb.img.env.get(a.Key)
		if !ok {
			v = a.ValueString()
		}
		if i, ok := idx[a.Key]; ok {
			kv[i] = a.Key + "=" + v
			continue
		}
		idx[a.Key] = len(kv)
		kv = append(kv, a.Key+"="+v)
	}
	if len(kv) > 0 {
		kv = append([]string{fmt.Sprintf("|%d", len(kv))}, kv...)
	}
	return strings.Join(append(kv, args...), " ")
}

// workdir runs WORKDIR: sets the config and creates the directory (and its
// parents) owned by the current USER when missing.
func (sb *stageBuilder) workdir(ctx context.Context, c *instructions.WorkdirCommand, p *progress.Step) error {
	wd := sb.img.resolvePath(c.Path)
	wd = path.Clean(wd)
	sb.img.cfg.Config.WorkingDir = wd
	user := sb.img.cfg.Config.User
	inputs := []cache.Input{{Name: "instruction", Value: "WORKDIR " + wd}, {Name: "user", Value: user}}
	return sb.change(ctx, p, "WORKDIR "+wd, inputs, func(rootfs string) error {
		o, err := workdirOwner(rootfs, user)
		if err != nil {
			return err
		}
		return fscopy.MkdirAll(rootfs, wd, o, 0o755)
	})
}

// filteredContext returns the build context as RUN --mount binds show it:
// with the .dockerignore rules applied, as BuildKit's context transfer does.
// Without rules it is the context directory itself; with rules, a tree of
// hard links (copies across filesystems) made once per build.
func (r *run) filteredContext(ctx context.Context) (string, error) {
	if len(r.bctx.Patterns()) == 0 {
		return r.bctx.Dir, nil
	}
	r.filterOnce.Do(func() {
		dir, err := os.MkdirTemp(r.b.Session.Dir, "context-")
		if err != nil {
			r.filterErr = err
			return
		}
		r.filterErr = source.Context(r.bctx, nil).Mirror(ctx, dir)
		r.filterDir = dir
	})
	return r.filterDir, r.filterErr
}
