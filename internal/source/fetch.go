package source

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
	"time"

	"github.com/moby/buildkit/frontend/dockerfile/dfgitutil"
	"github.com/opencontainers/go-digest"

	"github.com/strata-build/strata/internal/httpx"
	"github.com/strata-build/strata/internal/layer"
)

// IsHTTP reports whether an ADD source is an http(s) URL.
func IsHTTP(s string) bool {
	return strings.HasPrefix(s, "http://") || strings.HasPrefix(s, "https://")
}

// ParseGit parses an ADD source as a git reference; ok is false for
// anything else (including local paths that only look like one).
func ParseGit(s string) (*dfgitutil.GitRef, bool, error) {
	ref, isGit, err := dfgitutil.ParseGitRef(s)
	if err != nil {
		if isGit {
			return nil, true, err
		}
		return nil, false, nil
	}
	if ref.IndistinguishableFromLocal {
		return nil, false, nil
	}
	return ref, true, nil
}

// HTTPOptions bound an ADD URL download.
type HTTPOptions struct {
	Timeout    time.Duration      // without a byte: connect, headers, each body read
	TimeoutEnv string             // the setting that raises Timeout, named in errors
	Bound      layer.ApplyOptions // MaxBytes: what the body may hold
}

// errHTTPIdle is the cause of a download stopped for want of bytes.
var errHTTPIdle = errors.New("no data")

// FetchHTTP downloads u into dir as BuildKit's HTTP source does: the file is
// named after the last path element (or __unnamed__), mode 0600, with the
// server's Last-Modified time; a checksum, when given, must match. The
// download fails once o.Timeout passes without a byte from the server, and
// when the body is over the layer byte bound (at once when Content-Length
// says so), and after more than httpx.MaxRedirects redirects; what it wrote
// is in dir, which the caller removes.
func FetchHTTP(ctx context.Context, u, dir, checksum string, o HTTPOptions) (Item, error) {
	var want digest.Digest
	if checksum != "" {
		d, err := digest.Parse(checksum)
		if err != nil {
			return Item{}, fmt.Errorf("--checksum=%s: %w", checksum, err)
		}
		want = d
	}
	name := "__unnamed__"
	if pu, err := url.Parse(u); err == nil {
		if b := path.Base(pu.Path); b != "." && b != "/" && b != "" {
			name = b
		}
	}
	// httpx's watchdog fails the request (connecting, waiting for the
	// headers, reading the body) when the server is silent for o.Timeout,
	// and stops redirect loops.
	silent := fmt.Errorf("%w from the server for %s (set %s to wait longer)", errHTTPIdle, o.Timeout, o.TimeoutEnv)
	fail := func(err error) (Item, error) {
		if errors.Is(err, errHTTPIdle) {
			err = silent
		}
		return Item{}, fmt.Errorf("ADD %s: %w", u, err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return fail(err)
	}
	client := &http.Client{Transport: httpx.NewTransport(o.Timeout, func(*http.Request) error { return silent })}
	defer client.CloseIdleConnections()
	resp, err := client.Do(req)
	if err != nil {
		return fail(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode >= 300 {
		return fail(fmt.Errorf("invalid response status %s", resp.Status))
	}
	newBound := func() *layer.Counter { return &layer.Counter{Max: o.Bound.MaxBytes, Hint: o.Bound.BoundHint} }
	if resp.ContentLength > 0 {
		if err := newBound().Add(resp.ContentLength); err != nil {
			return fail(fmt.Errorf("the server announces %d bytes, %w", resp.ContentLength, err))
		}
	}
	sub, err := os.MkdirTemp(dir, "http-")
	if err != nil {
		return Item{}, err
	}
	host := filepath.Join(sub, name)
	got, err := saveBody(host, newBound().Reader(resp.Body))
	if err != nil {
		var be *layer.BoundError
		if errors.As(err, &be) {
			err = fmt.Errorf("the download is %w", err)
		}
		return fail(err)
	}
	if want != "" && got != want {
		return Item{}, fmt.Errorf("ADD %s: checksum mismatch: want %s, got %s", u, want, got)
	}
	if err := os.Chmod(host, 0o600); err != nil {
		return Item{}, err
	}
	if lm := resp.Header.Get("Last-Modified"); lm != "" {
		if t, err := http.ParseTime(lm); err == nil {
			os.Chtimes(host, t, t)
		}
	}
	fi, err := os.Lstat(host)
	if err != nil {
		return Item{}, err
	}
	return Item{Source: Dir(sub, u), Rel: "/" + name, Host: host, Info: fi}, nil
}

// saveBody writes body to a new file at p and returns its digest.
func saveBody(p string, body io.Reader) (digest.Digest, error) {
	f, err := os.OpenFile(p, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return "", err
	}
	h := sha256.New()
	_, err = io.Copy(io.MultiWriter(f, h), body)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return "", err
	}
	return digest.NewDigestFromEncoded(digest.SHA256, hex.EncodeToString(h.Sum(nil))), nil
}

// FetchGit clones ref into dir and returns the item for its tree (or the
// requested subdirectory). The .git directory is removed unless keepGitDir.
// A ref starting with "-" is refused, and every git invocation puts "--"
// between its options and what came from the Dockerfile.
func FetchGit(ctx context.Context, ref *dfgitutil.GitRef, dir string, keepGitDir bool) (Item, error) {
	if strings.HasPrefix(ref.Ref, "-") {
		// as BuildKit (validateGitRef): git would read it as an option
		return Item{}, fmt.Errorf("ADD %s: invalid git ref %q: a ref cannot start with \"-\"", ref.Remote, ref.Ref)
	}
	if _, err := exec.LookPath("git"); err != nil {
		return Item{}, fmt.Errorf("ADD %s: git is not installed", ref.Remote)
	}
	sub, err := os.MkdirTemp(dir, "git-")
	if err != nil {
		return Item{}, err
	}
	tree := filepath.Join(sub, "tree")
	git := func(args ...string) error {
		cmd := exec.CommandContext(ctx, "git", args...)
		cmd.Env = append(os.Environ(), "GIT_TERMINAL_PROMPT=0", "GIT_CONFIG_NOSYSTEM=1")
		out, err := cmd.CombinedOutput()
		if err != nil {
			return fmt.Errorf("git %s: %w: %s", args[0], err, strings.TrimSpace(string(out)))
		}
		return nil
	}
	if err := git("init", "-q", "--", tree); err != nil {
		return Item{}, err
	}
	want := ref.Ref
	if want == "" {
		want = "HEAD"
	}
	if err := git("-C", tree, "fetch", "-q", "--depth=1", "--no-tags", "--", ref.Remote, want); err != nil {
		// a commit id or an old server: fetch everything, then check out the ref
		if err2 := git("-C", tree, "fetch", "-q", "--tags", "--", ref.Remote, "+refs/heads/*:refs/remotes/origin/*"); err2 != nil {
			return Item{}, fmt.Errorf("ADD %s: %w", ref.Remote, err)
		}
		if err := git("-C", tree, "checkout", "-q", want, "--"); err != nil {
			if err := git("-C", tree, "checkout", "-q", "origin/"+want, "--"); err != nil {
				return Item{}, fmt.Errorf("ADD %s: ref %s: %w", ref.Remote, want, err)
			}
		}
	} else if err := git("-C", tree, "checkout", "-q", "FETCH_HEAD", "--"); err != nil {
		return Item{}, err
	}
	if ref.Checksum != "" {
		cmd := exec.CommandContext(ctx, "git", "-C", tree, "rev-parse", "HEAD")
		out, err := cmd.Output()
		if err != nil {
			return Item{}, err
		}
		if head := strings.TrimSpace(string(out)); !strings.HasPrefix(head, ref.Checksum) {
			return Item{}, fmt.Errorf("ADD %s: checksum mismatch: commit %s, want %s", ref.Remote, head, ref.Checksum)
		}
	}
	if ref.Submodules == nil || *ref.Submodules {
		if _, err := os.Stat(filepath.Join(tree, ".gitmodules")); err == nil {
			if err := git("-C", tree, "submodule", "update", "--init", "--recursive", "--depth=1"); err != nil {
				return Item{}, err
			}
		}
	}
	if !keepGitDir {
		if err := os.RemoveAll(filepath.Join(tree, ".git")); err != nil {
			return Item{}, err
		}
	}
	root := tree
	rel := "/"
	if ref.SubDir != "" {
		rel = path.Clean("/" + ref.SubDir)
	}
	it, err := Dir(root, ref.Remote).Stat(rel)
	if err != nil {
		return Item{}, fmt.Errorf("ADD %s: %s: %w", ref.Remote, rel, err)
	}
	return it, nil
}
