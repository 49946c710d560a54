package builder

import (
	"context"
	"fmt"
	"path"
	"strings"
	"sync"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/linter"
	"github.com/moby/buildkit/frontend/dockerfile/parser"

	"github.com/strata-build/strata/internal/cache"
	"github.com/strata-build/strata/internal/dockerfile"
	"github.com/strata-build/strata/internal/image"
	"github.com/strata-build/strata/internal/plan"
	"github.com/strata-build/strata/internal/platform"
	"github.com/strata-build/strata/internal/progress"
	"github.com/strata-build/strata/internal/source"
)

// historyComment marks history entries made by a Dockerfile build, as BuildKit does.
const historyComment = "buildkit.dockerfile.v0"

// defaultPath is the PATH Docker gives images that set none.
const defaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// stageResult is a built stage: its layers (with their unpacked
// directories, bottom first) and its image config.
type stageResult struct {
	layers []image.Layer
	dirs   []string
	cfg    v1.ConfigFile
	// platform is the stage's: its FROM --platform, or its base stage's,
	// or the build's target.
	platform v1.Platform
	// unknownEnv marks a --check stage whose base image config is not known.
	unknownEnv bool
	// key is the cache key of the stage's filesystem.
	key cache.Key
	// alts are the other filesystems the stage's last step may have left
	// (retake.go): a COPY --from the stage looks its alias up on them too.
	alts []cache.Key
	// env and argOrder are the stage's state env (ENV and ARG values) and
	// ARG declarations: a stage built FROM this one inherits them.
	env      envList
	argOrder []instructions.KeyValuePairOptional
	mu       *sync.Mutex // guards unpacking in ensureDirs

	// from is the stage's FROM step while its base image may still have to
	// be unpacked (on first use, so a build whose steps all hit the cache
	// never unpacks it): the unpack is part of that step, which then ends,
	// and is left out of running, the step that needed it. Guarded by mu.
	from, running *progress.Step
}

// ensureDirs makes sure the stage's layers are unpacked (fetching layers a
// --cache-from source offered) and returns their directories, bottom first.
// Layers are unpacked on first use, so a build whose steps all hit the
// cache never unpacks its base image.
func (r *run) ensureDirs(ctx context.Context, s *stageResult) ([]string, error) {
	if s.mu != nil {
		s.mu.Lock()
		defer s.mu.Unlock()
	}
	start := time.Now()
	if s.from != nil {
		n := 0
		for _, l := range s.layers {
			if !r.b.Store.HasLayer(l.DiffID) {
				n++
			}
		}
		fmt.Fprintf(s.from, "unpacking %d of %d layers\n", n, len(s.layers))
	}
	for _, l := range s.layers {
		if err := r.ensureLayer(ctx, l); err != nil {
			if s.from != nil {
				s.from.Fail(err)
				s.from = nil
			}
			return nil, err
		}
	}
	if s.from != nil {
		s.from.Done()
		s.from = nil
		if s.running != nil {
			s.running.Exclude(time.Since(start))
		}
	}
	return s.dirs, nil
}

// unpacked reports whether every layer is unpacked in the store.
func (r *run) unpacked(layers []image.Layer) bool {
	for _, l := range layers {
		if !r.b.Store.HasLayer(l.DiffID) {
			return false
		}
	}
	return true
}

// endFrom ends the FROM step if the base was not needed (not unpacked).
func (s *stageResult) endFrom() {
	if s == nil || s.mu == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.from != nil {
		s.from.Done()
		s.from = nil
	}
	s.running = nil
}

// setRunning records the step running in the stage (see from).
func (s *stageResult) setRunning(p *progress.Step) {
	if s.mu == nil {
		return
	}
	s.mu.Lock()
	s.running = p
	s.mu.Unlock()
}

// isStep reports whether c is shown as a step of its own (numbered
// "[stage i/N]"): as in BuildKit, RUN, COPY, ADD and WORKDIR, besides FROM;
// the other instructions only change the image config.
func isStep(c instructions.Command) bool {
	switch c.(type) {
	case *instructions.RunCommand, *instructions.CopyCommand, *instructions.AddCommand, *instructions.WorkdirCommand:
		return true
	}
	return false
}

func (s *stageResult) clone() *stageResult {
	c := &stageResult{
		layers:     append([]image.Layer(nil), s.layers...),
		dirs:       append([]string(nil), s.dirs...),
		unknownEnv: s.unknownEnv,
		platform:   s.platform,
		key:        s.key,
		env:        append(envList(nil), s.env...),
		argOrder:   append([]instructions.KeyValuePairOptional(nil), s.argOrder...),
		mu:         &sync.Mutex{},
	}
	s.cfg.DeepCopyInto(&c.cfg)
	return c
}

// stageBuilder executes the instructions of one stage. Its handlers use
// svc (store, snapshotter, runtime, options), img (the config-only
// instructions), cache (the step cache) and r only for what the build
// coordinates between stages: other stages' results, the per-build image
// pulls, the build context and its filtered copy, the ARG bookkeeping and
// how layers are committed and unpacked.
type stageBuilder struct {
	r     *run
	svc   *services
	df    *dockerfile.Dockerfile
	st    *plan.Stage
	state *stageResult
	img   imageState // the config and state env of state
	step  int
	total int

	cache *stepCache // finds and records the stage's steps
	// retake is the last step, if it may take another layer (retake.go)
	retake *retakePoint
	// reuse is what the step may take from its previous build (reuse.go)
	reuse stepReuse
	// check state
	seenCmd, seenEntrypoint, seenHealthcheck instructions.Command
	workdirSet                               bool
}

func (r *run) buildStage(ctx context.Context, st *plan.Stage) (*stageResult, error) {
	sb := &stageBuilder{r: r, svc: &r.svc, df: r.df, st: st, cache: r.stepCache(st), total: 1, step: 1}
	for _, c := range st.Source.Commands {
		if isStep(c) {
			sb.total++
		}
	}
	name := fmt.Sprintf("[%s 1/%d] FROM %s", sb.display(), sb.total, st.Base)
	if st.Name != "" && st.BaseStage < 0 {
		name = fmt.Sprintf("[%s 1/%d] FROM %s", sb.display(), sb.total, st.Base)
	}
	pstep := r.opts.Progress.StartStage(sb.display(), name)
	base, err := sb.base(ctx)
	if err != nil {
		err = r.df.Wrap(st.Source.Location, err)
		pstep.Fail(err)
		return nil, err
	}
	if st.BaseStage < 0 && base.mu != nil && !r.unpacked(base.layers) {
		// the FROM step goes on until the base is unpacked (or not needed)
		base.mu.Lock()
		base.from = pstep
		base.mu.Unlock()
		defer base.endFrom()
	} else {
		pstep.Done()
	}
	sb.setState(base)
	if st.BaseStage >= 0 {
		// ARGs declared in the parent stage are inherited with their values.
		sb.img.env = append(envList(nil), base.env...)
		sb.img.argOrder = append(sb.img.argOrder, base.argOrder...)
		for _, a := range base.argOrder {
			sb.img.declared[a.Key] = true
		}
	}
	if _, ok := sb.img.env.get("PATH"); !ok {
		sb.img.env = sb.img.env.set("PATH", defaultPath)
		sb.img.cfg.Config.Env = sb.img.env
	}
	// ONBUILD triggers of the base run first and are not inherited.
	triggers := base.cfg.Config.OnBuild
	sb.img.cfg.Config.OnBuild = nil
	for _, t := range triggers {
		if err := sb.onbuild(ctx, t); err != nil {
			return nil, err
		}
	}
	for _, c := range st.Source.Commands {
		if err := sb.dispatch(ctx, c); err != nil {
			return nil, err
		}
	}
	sb.state.env = sb.img.env
	sb.state.argOrder = sb.img.argOrder
	sb.state.alts = sb.retakeAlternatives()
	return sb.state, nil
}

// display is the stage's name in step names: with the build's platform
// before it when several are built (BuildIndex).
func (sb *stageBuilder) display() string {
	if sb.svc.opts.showPlatform {
		return platform.Format(sb.svc.opts.Platform) + " " + sb.st.Display()
	}
	return sb.st.Display()
}

// setState makes res the stage's state, its image state starting from
// res's config.
func (sb *stageBuilder) setState(res *stageResult) {
	sb.state = res
	sb.img = imageState{
		cfg:        &res.cfg,
		env:        envList(res.cfg.Config.Env),
		declared:   map[string]bool{},
		escape:     sb.df.Escape,
		epoch:      sb.svc.opts.SourceDateEpoch,
		lint:       sb.df.Lint,
		unknownEnv: res.unknownEnv,
	}
}

// base returns the starting state of the stage: an earlier stage (as the
// plan resolved it), or what source.ResolveBase finds: a named context,
// scratch or an image (which a --check run never pulls).
func (sb *stageBuilder) base(ctx context.Context) (*stageResult, error) {
	st := sb.st
	if st.BaseStage >= 0 {
		return sb.r.results[st.BaseStage].clone(), nil
	}
	plat, err := sb.platform()
	if err != nil {
		return nil, err
	}
	res, err := sb.baseFor(ctx, plat)
	if err != nil {
		return nil, err
	}
	res.platform = plat
	return res, nil
}

// platform returns the stage's platform: its FROM --platform (expanded
// with the global ARGs, normalized), or the build's target.
func (sb *stageBuilder) platform() (v1.Platform, error) {
	if sb.st.Source.Platform == "" {
		return sb.svc.opts.Platform, nil
	}
	p, _, err := sb.df.Lexer().ProcessWord(sb.st.Source.Platform, sb.r.globals)
	if err != nil {
		return v1.Platform{}, err
	}
	if strings.TrimSpace(p) == "" {
		return v1.Platform{}, fmt.Errorf("FROM --platform=%s is empty", sb.st.Source.Platform)
	}
	plat, err := platform.Parse(p)
	if err != nil {
		return v1.Platform{}, fmt.Errorf("FROM --platform=%s: %w", sb.st.Source.Platform, err)
	}
	return plat, nil
}

// baseFor returns the starting state of a stage for platform plat that
// does not start from an earlier stage.
func (sb *stageBuilder) baseFor(ctx context.Context, plat v1.Platform) (*stageResult, error) {
	st := sb.st
	ref, err := source.ResolveBase(st.Base, stageNames{r: sb.r, in: st.Index})
	if err != nil {
		return nil, err
	}
	switch ref.Kind {
	case source.NamedDir:
		return sb.fromDir(ctx, ref, plat)
	case source.NamedImage:
		img, err := sb.r.refImage(ctx, ref, plat)
		if err != nil {
			return nil, err
		}
		return sb.fromImage(ctx, img)
	case source.Scratch:
		res := &stageResult{}
		res.cfg.OS = plat.OS
		res.cfg.Architecture = plat.Architecture
		res.cfg.Variant = plat.Variant
		res.cfg.Config.Env = []string{"PATH=" + defaultPath}
		res.cfg.Config.WorkingDir = "/"
		res.key = scratchKey(plat)
		return res, nil
	}
	if sb.svc.opts.CheckOnly {
		// Checks never pull: a base that is not in the store has an unknown config.
		res := &stageResult{}
		if im, ok, err := sb.svc.store.Lookup(st.Base); err == nil && ok {
			if img, err := image.LoadFor(sb.svc.store, im.Descriptor, plat); err == nil {
				img.Config.DeepCopyInto(&res.cfg)
				return res, nil
			}
		}
		res.unknownEnv = true
		return res, nil
	}
	img, err := sb.r.refImage(ctx, ref, plat)
	if err != nil {
		return nil, err
	}
	if got := image.PlatformOf(img); got.OS != "" && !platform.Same(got, plat) {
		// As BuildKit: a base of one platform is used for another, with a warning.
		sb.df.Lint.Run(&linter.RuleInvalidBaseImagePlatform, st.Source.Location,
			linter.RuleInvalidBaseImagePlatform.Format(st.Base, platform.Format(plat), platform.Format(got)))
	}
	return sb.fromImage(ctx, img)
}

// scratchKey is the cache key of an empty filesystem for plat.
func scratchKey(plat v1.Platform) cache.Key {
	return cache.NewKey("", cache.Input{Name: "base", Value: "scratch"}, cache.Input{Name: "platform", Value: plat.OS + "/" + plat.Architecture + "/" + plat.Variant})
}

// fromDir starts a stage from a directory build context: like scratch
// with the directory's files in one layer (owned by root, as context files).
func (sb *stageBuilder) fromDir(ctx context.Context, ref source.Ref, plat v1.Platform) (*stageResult, error) {
	res := &stageResult{platform: plat}
	res.cfg.OS, res.cfg.Architecture, res.cfg.Variant = plat.OS, plat.Architecture, plat.Variant
	res.cfg.Config.Env = []string{"PATH=" + defaultPath}
	res.cfg.Config.WorkingDir = "/"
	res.key = scratchKey(plat)
	sb.setState(res)
	it, err := source.Dir(ref.Dir, ref.Name).Stat("/")
	if err != nil {
		return nil, err
	}
	sum, err := it.Key(ctx, nil)
	if err != nil {
		return nil, err
	}
	inputs := []cache.Input{{Name: "instruction", Value: "FROM context"}, {Name: "source", Value: sum}}
	err = sb.changeOn(ctx, nil, "FROM "+sb.st.Base, inputs, true, func(rootfs string) error {
		return copyInto(ctx, rootfs, []copyItem{{Item: it}}, "/", copyOptions{})
	})
	return res, err
}

// fromImage starts a stage from an image: its layers and its config.
func (sb *stageBuilder) fromImage(ctx context.Context, img *image.Image) (*stageResult, error) {
	dirs := make([]string, len(img.Layers))
	for i, l := range img.Layers {
		dirs[i] = sb.svc.store.LayerDir(l.DiffID)
	}
	res := &stageResult{layers: append([]image.Layer(nil), img.Layers...), dirs: dirs, mu: &sync.Mutex{},
		key: cache.NewKey("", cache.Input{Name: "base", Value: img.Descriptor.Digest.String()})}
	img.Config.DeepCopyInto(&res.cfg)
	return res, nil
}

// onbuild parses and runs one ONBUILD trigger inherited from the base.
func (sb *stageBuilder) onbuild(ctx context.Context, expr string) error {
	res, err := parser.Parse(strings.NewReader(expr))
	if err != nil || len(res.AST.Children) != 1 {
		return sb.df.Errorf(sb.st.Source.Location, "invalid ONBUILD trigger %q in the base image: %v", expr, err)
	}
	node := res.AST.Children[0]
	// Locate the trigger at the FROM line for messages.
	node.StartLine = sb.st.Source.Location[0].Start.Line
	node.EndLine = node.StartLine
	cmd, err := instructions.ParseCommand(node)
	if err != nil {
		return sb.df.Errorf(sb.st.Source.Location, "ONBUILD trigger %q: %v", expr, err)
	}
	if isStep(cmd) {
		sb.total++ // as BuildKit adds its triggers to the count
	}
	return sb.dispatch(ctx, cmd)
}

func (sb *stageBuilder) dispatch(ctx context.Context, c instructions.Command) error {
	df := sb.df
	loc := c.Location()
	if _, isArg := c.(*instructions.ArgCommand); !isArg {
		if err := sb.img.expand(c); err != nil {
			return df.Wrap(loc, err)
		}
	}
	sb.check(c)
	if sb.svc.opts.CheckOnly {
		switch c := c.(type) {
		case *instructions.RunCommand, *instructions.CopyCommand, *instructions.AddCommand:
			return nil // a dry run changes no files
		case *instructions.WorkdirCommand:
			sb.img.cfg.Config.WorkingDir = path.Clean(sb.img.resolvePath(c.Path))
			return nil
		}
	}
	if isStep(c) {
		sb.step++
	}
	label := fmt.Sprintf("[%s %d/%d] %s", sb.display(), sb.step, sb.total, oneLine(c))
	var err error
	switch c := c.(type) {
	case *instructions.RunCommand:
		err = sb.withStep(label, func(p *progress.Step) error { return sb.run(ctx, c, p) })
	case *instructions.CopyCommand:
		err = sb.withStep(label, func(p *progress.Step) error { return sb.copy(ctx, c, p) })
	case *instructions.AddCommand:
		err = sb.withStep(label, func(p *progress.Step) error { return sb.add(ctx, c, p) })
	case *instructions.WorkdirCommand:
		err = sb.withStep(label, func(p *progress.Step) error { return sb.workdir(ctx, c, p) })
	case *instructions.ArgCommand:
		err = sb.img.arg(c, argSources{buildArgs: sb.svc.opts.BuildArgs, globals: sb.r.globals, use: sb.r.useArg})
	default:
		err = sb.img.config(c)
	}
	if err != nil {
		return df.Wrap(loc, err)
	}
	return nil
}

func (sb *stageBuilder) withStep(label string, fn func(p *progress.Step) error) error {
	p := sb.svc.progress.StartStage(sb.display(), label)
	sb.state.setRunning(p)
	defer sb.state.setRunning(nil)
	if err := fn(p); err != nil {
		p.Fail(err)
		return err
	}
	p.Done()
	return nil
}

// oneLine renders an instruction for progress output.
func oneLine(c instructions.Command) string {
	s := fmt.Sprint(c)
	if st, ok := c.(fmt.Stringer); ok {
		s = st.String()
	}
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > 120 {
		s = s[:117] + "..."
	}
	return s
}
