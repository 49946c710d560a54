package builder

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/moby/buildkit/frontend/dockerfile/instructions"

	"github.com/strata-build/strata/internal/cache"
	"github.com/strata-build/strata/internal/fscopy"
	"github.com/strata-build/strata/internal/progress"
	"github.com/strata-build/strata/internal/source"
)

// copy runs COPY.
func (sb *stageBuilder) copy(ctx context.Context, c *instructions.CopyCommand, p *progress.Step) error {
	// --link only changes how BuildKit rebases the layer; the files are the same.
	from := c.From
	if from != "" {
		v, _, err := sb.df.Lexer().ProcessWord(from, sb.img.env.getter())
		if err != nil {
			return fmt.Errorf("--from: %w", err)
		}
		from = v
	}
	return sb.copyLike(ctx, p, "COPY", from, c.Chown, c.Chmod, c.SourcesAndDest, copyOptions{parents: c.Parents, exclude: c.ExcludePatterns, link: c.Link}, nil)
}

// add runs ADD: local files and archives (extracted), http(s) URLs and git
// repositories.
func (sb *stageBuilder) add(ctx context.Context, c *instructions.AddCommand, p *progress.Step) error {
	unpack := c.Unpack == nil || *c.Unpack
	o := copyOptions{unpack: unpack, exclude: c.ExcludePatterns, link: c.Link, bound: sb.svc.unpack}
	var local []string
	var remote []string
	for _, s := range c.SourcePaths {
		if _, isGit, err := source.ParseGit(s); err != nil {
			return err
		} else if isGit || source.IsHTTP(s) {
			remote = append(remote, s)
			continue
		}
		local = append(local, s)
	}
	if c.Checksum != "" && (len(remote) != 1 || len(c.SourcePaths) != 1) {
		if len(c.SourcePaths) != 1 {
			return fmt.Errorf("checksum can't be specified for multiple sources")
		}
		return fmt.Errorf("checksum requires HTTP(S) or Git sources")
	}
	if c.KeepGitDir != nil && *c.KeepGitDir && len(remote) == 0 {
		return fmt.Errorf("--keep-git-dir is only valid with a git source")
	}
	if len(remote) == 0 {
		return sb.copyLike(ctx, p, "ADD", "", c.Chown, c.Chmod, c.SourcesAndDest, o, nil)
	}
	tmp, err := os.MkdirTemp(sb.svc.session.Dir, "add-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	var extra []copyItem
	for _, s := range remote {
		if ref, isGit, _ := source.ParseGit(s); isGit {
			sum := c.Checksum
			if sum != "" {
				if ref.Checksum != "" && ref.Checksum != sum {
					return fmt.Errorf("checksum mismatch %q != %q", sum, ref.Checksum)
				}
				ref.Checksum = sum
			}
			keep := c.KeepGitDir != nil && *c.KeepGitDir
			if ref.KeepGitDir != nil {
				keep = *ref.KeepGitDir
			}
			p.Write([]byte("git clone " + ref.Remote + "\n"))
			it, err := source.FetchGit(ctx, ref, tmp, keep)
			if err != nil {
				return err
			}
			extra = append(extra, copyItem{Item: it})
			continue
		}
		p.Write([]byte("download " + s + "\n"))
		it, err := source.FetchHTTP(ctx, s, tmp, c.Checksum, sb.svc.http)
		if err != nil {
			return err
		}
		// Remote files are extracted only with an explicit --unpack=true.
		extra = append(extra, copyItem{Item: it, noUnpack: c.Unpack == nil || !*c.Unpack})
	}
	sd := c.SourcesAndDest
	sd.SourcePaths = local
	return sb.copyLike(ctx, p, "ADD", "", c.Chown, c.Chmod, sd, o, extra)
}

// copyLike runs a COPY or ADD (verb) of the sources in sd (and extra,
// already fetched items of ADD) from the build context, a stage or an image
// (from) into the stage.
func (sb *stageBuilder) copyLike(ctx context.Context, p *progress.Step, verb, from, chown, chmod string, sd instructions.SourcesAndDest, o copyOptions, extra []copyItem) error {
	cm, err := fscopy.ParseChmod(chmod)
	if err != nil {
		return err
	}
	o.chmod = cm
	if o.link && chownByName(chown) {
		// as BuildKit: a linked layer is made without the stage below it
		return fmt.Errorf("--chown=%s: user and group names can't be resolved when used with --link, use numeric uid[:gid] instead", chown)
	}
	dest := sd.DestPath
	trailing := strings.HasSuffix(dest, "/") || dest == "." || strings.HasSuffix(dest, "/.")
	dest = sb.img.resolvePath(dest)
	if trailing && !strings.HasSuffix(dest, "/") {
		dest += "/"
	}
	req := copyRequest{verb: verb, chown: chown, chmod: chmod, sources: sd.SourcePaths, dest: dest, o: o, createdBy: copyCreatedBy(verb, chown, chmod, sd, o, extra)}
	ref, err := sb.resolveFrom(from)
	if err != nil {
		return err
	}
	if (ref.Kind == source.Stage || ref.Kind == source.Image) && len(extra) == 0 && len(sd.SourceContents) == 0 && !o.link {
		done, err := sb.copyShortcut(ctx, p, ref, req)
		if done || err != nil {
			return err
		}
	}
	return sb.withSource(ctx, ref, forCopy, func(src *source.Source) error {
		items := append([]copyItem(nil), extra...)
		if len(sd.SourcePaths) > 0 {
			local, err := src.Match(sd.SourcePaths, o.parents)
			if err != nil {
				return err
			}
			items = append(items, copyItemsOf(local)...)
		}
		if len(sd.SourceContents) > 0 {
			// Heredoc sources become files in a private temp dir.
			tmp, err := os.MkdirTemp(sb.svc.session.Dir, "heredoc-")
			if err != nil {
				return err
			}
			defer os.RemoveAll(tmp)
			docs, err := heredocItems(tmp, sd.SourceContents)
			if err != nil {
				return err
			}
			items = append(items, docs...)
		}
		return sb.copyItems(ctx, p, src, from, items, req)
	})
}

// copyCreatedBy is the history's created_by of a COPY or ADD, as BuildKit
// writes it.
func copyCreatedBy(verb, chown, chmod string, sd instructions.SourcesAndDest, o copyOptions, extra []copyItem) string {
	createdBy := verb
	if o.parents {
		createdBy += " --parents"
	}
	if chown != "" {
		createdBy += " --chown=" + chown
	}
	if chmod != "" {
		createdBy += " --chmod=" + chmod
	}
	for _, it := range extra {
		createdBy += " " + it.Source.Name()
	}
	for _, s := range sd.SourcePaths {
		createdBy += " " + s
	}
	for _, s := range sd.SourceContents {
		createdBy += " <<" + s.Path
	}
	return createdBy + " " + sd.DestPath + " # buildkit"
}

// copyShortcut handles a COPY --from that need not read its source first:
// from an image (copyFromImage fetches only what it needs), or from a stage
// that did not change, found by the cheap key (the stage's key and the
// patterns) before any content is read. done reports that the step is over.
func (sb *stageBuilder) copyShortcut(ctx context.Context, p *progress.Step, ref source.Ref, req copyRequest) (done bool, err error) {
	if ref.Kind == source.Image {
		return true, sb.copyFromImage(ctx, p, ref, req)
	}
	res := sb.r.results[ref.Stage]
	if res == nil {
		return false, nil
	}
	aliasInputs := func(stageKey cache.Key) []cache.Input {
		in := append(req.optionInputs(), cache.Input{Name: "from", Value: "stage " + string(stageKey)})
		for _, pat := range req.sources {
			in = append(in, cache.Input{Name: "source " + pat})
		}
		return in
	}
	if sb.tryAlias(p, req.createdBy, aliasInputs(res.key)) {
		return true, nil
	}
	// the copy may have been recorded from another layer of the source
	// stage's last step (retakeAlternatives): the copy is that of the
	// same step's result all the same
	for _, alt := range res.alts {
		if sb.tryAlias(p, req.createdBy, aliasInputs(alt)) {
			return true, nil
		}
	}
	if len(res.alts) > 0 {
		sb.tryAlias(p, req.createdBy, aliasInputs(res.key)) // the alias to record is the stage's own
	}
	return false, nil
}

// heredocItems writes heredoc sources as files into dir and returns them
// as items.
func heredocItems(dir string, docs []instructions.SourceContent) ([]copyItem, error) {
	var items []copyItem
	src := source.Dir(dir, "heredoc")
	for _, sc := range docs {
		h := filepath.Join(dir, filepath.Base(sc.Path))
		if err := os.WriteFile(h, []byte(sc.Data), 0o644); err != nil {
			return nil, err
		}
		if err := os.Chmod(h, 0o644); err != nil {
			return nil, err
		}
		fi, err := os.Lstat(h)
		if err != nil {
			return nil, err
		}
		items = append(items, copyItem{Item: source.Item{Source: src, Rel: "/" + filepath.Base(sc.Path), Host: h, Info: fi}})
	}
	return items, nil
}

// copyItems copies the resolved items of req from src into a new layer of
// the stage, keyed by their content.
func (sb *stageBuilder) copyItems(ctx context.Context, p *progress.Step, src *source.Source, from string, items []copyItem, req copyRequest) error {
	o, verb, dest, chown, chmod := req.o, req.verb, req.dest, req.chown, req.chmod
	// A COPY from the build context with no record for its prefix (its
	// key without the files' content) cannot hit the cache, so it does
	// not hash the files before copying them: the copy hashes what it
	// reads, the key is made and looked up afterwards (then from the stat
	// cache, without reading the files again). One read of the context
	// instead of two, and no hashing pass before the copy starts.
	keyInputs := func() ([]cache.Input, error) {
		in, err := sb.copyInputs(ctx, from, items, copyRequest{verb: verb, dest: dest, chown: chown, chmod: chmod, o: o})
		if err == nil && o.link {
			in = append(in, cache.Input{Name: "link", Value: "true"})
		}
		return in, err
	}
	var inputs []cache.Input
	var late func() ([]cache.Input, error)
	prefix, speculate := sb.copyPrefix(src, from, items, copyRequest{verb: verb, dest: dest, chown: chown, chmod: chmod, o: o})
	if speculate {
		if sb.svc.opts.DebugCache {
			sb.svc.progress.Logf("cache [%s %d/%d]: no record can match, hashing the files while copying them", sb.display(), sb.step, sb.total)
		}
		o.record = true
		late = keyInputs
	} else {
		var err error
		if inputs, err = keyInputs(); err != nil {
			return err
		}
	}
	marked := func(err error) error {
		if err == nil && prefix != "" {
			sb.cache.markPrefix(prefix)
		}
		return err
	}
	if !o.link {
		return marked(sb.changeKeyed(ctx, p, req.createdBy, false, func(rootfs, upper string) (func() error, error) {
			if chown != "" {
				ow, err := resolveChown(rootfs, chown)
				if err != nil {
					return nil, err
				}
				o.chown = &ow
			}
			return copyIntoSnapshot(ctx, sb.copyTarget(rootfs, upper), items, dest, o)
		}, inputs, late))
	}
	// --link: the files go into an empty layer, so nothing of the stage
	// (like a symlink on the destination path) changes where they land;
	// --chown is numeric (checked above), so no /etc/passwd is read.
	if chown != "" {
		ow, err := resolveChown("", chown)
		if err != nil {
			return err
		}
		o.chown = &ow
	}
	return marked(sb.changeKeyed(ctx, p, req.createdBy, true, func(rootfs, upper string) (func() error, error) {
		return copyIntoSnapshot(ctx, sb.copyTarget(rootfs, upper), items, dest, o)
	}, inputs, late))
}

// copyPrefix returns the key prefix of a COPY from the build context: the
// step's key without the content of its sources (Index.MarkPrefix), and
// whether the copy may run before its key is known: the cache cannot hold
// a record for it (no mark for the prefix, no --cache-from to ask, or
// --no-cache). Other copies have no prefix.
func (sb *stageBuilder) copyPrefix(src *source.Source, from string, items []copyItem, req copyRequest) (cache.Key, bool) {
	if from != "" || !src.IsContext() || sb.r.sums == nil {
		return "", false
	}
	in := append(req.optionInputs(), cache.Input{Name: "prefix", Value: "copy from the build context"})
	for _, it := range items {
		in = append(in, cache.Input{Name: "source " + it.Rel, Value: it.Keep})
	}
	return sb.cache.prefix(sb.state.key, in)
}
