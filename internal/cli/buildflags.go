package cli

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/moby/buildkit/util/entitlements"
	"golang.org/x/term"

	"github.com/strata-build/strata/internal/builder"
	"github.com/strata-build/strata/internal/export"
	"github.com/strata-build/strata/internal/layer"
	"github.com/strata-build/strata/internal/registry"
)

// parseAllow parses --allow entitlements as buildx does (BuildKit's names);
// strata grants security.insecure and network.host, not devices.
func parseAllow(vals []string) (entitlements.Set, error) {
	set := entitlements.Set{}
	for _, v := range vals {
		e, _, err := entitlements.Parse(v)
		if err != nil {
			return nil, usagef("--allow: %v", err)
		}
		switch e {
		case entitlements.EntitlementSecurityInsecure, entitlements.EntitlementNetworkHost:
			set[e] = nil
		default:
			return nil, usagef("--allow=%s is not supported (security.insecure or network.host)", v)
		}
	}
	return set, nil
}

// readArgFile reads --build-arg-file: KEY=VALUE lines; blank lines and lines
// starting with # are skipped; a KEY alone takes the value from the environment.
func readArgFile(path string) (map[string]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("--build-arg-file: %w", err)
	}
	defer f.Close()
	out := map[string]string{}
	sc := bufio.NewScanner(f)
	n := 0
	for sc.Scan() {
		n++
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			ev, set := os.LookupEnv(k)
			if !set {
				continue
			}
			v = ev
		}
		if k == "" {
			return nil, fmt.Errorf("--build-arg-file %s:%d: empty name", path, n)
		}
		out[k] = v
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("--build-arg-file %s: %w", path, err)
	}
	return out, nil
}

// parseSecrets parses --secret id=ID[,src=FILE|,source=FILE|,env=VAR][,type=file|env].
func parseSecrets(vals []string) (map[string]builder.Secret, error) {
	out := map[string]builder.Secret{}
	for _, v := range vals {
		var id, typ string
		var sec builder.Secret
		for _, kv := range strings.Split(v, ",") {
			k, val, _ := strings.Cut(kv, "=")
			switch strings.ToLower(strings.TrimSpace(k)) {
			case "id":
				id = val
			case "src", "source":
				sec.File = val
			case "env":
				sec.Env = val
			case "type":
				typ = val
			default:
				return nil, usagef("--secret %q: unknown key %q", v, k)
			}
		}
		if id == "" {
			return nil, usagef("--secret %q: id= is required", v)
		}
		if sec.File == "" && sec.Env == "" {
			// like buildx: an env var of that name when it exists, else a file named like the id
			if typ == "file" {
				sec.File = id
			} else if _, ok := os.LookupEnv(id); ok || typ == "env" {
				sec.Env = id
			} else {
				sec.File = id
			}
		}
		if sec.File != "" {
			if _, err := os.Stat(sec.File); err != nil {
				return nil, fmt.Errorf("--secret id=%s: %w", id, err)
			}
		}
		out[id] = sec
	}
	return out, nil
}

// parseSSH parses --ssh default|ID[=SOCKET]; without a socket $SSH_AUTH_SOCK is used.
func parseSSH(vals []string) (map[string]string, error) {
	out := map[string]string{}
	for _, v := range vals {
		id, sock, ok := strings.Cut(v, "=")
		if !ok || sock == "" {
			sock = os.Getenv("SSH_AUTH_SOCK")
			if sock == "" {
				return nil, usagef("--ssh %s: no socket given and SSH_AUTH_SOCK is not set", v)
			}
		}
		fi, err := os.Stat(sock)
		if err != nil {
			return nil, fmt.Errorf("--ssh %s: %w", id, err)
		}
		if fi.Mode()&os.ModeSocket == 0 {
			return nil, usagef("--ssh %s: %s is not an agent socket (key files are not supported; use ssh-agent)", id, sock)
		}
		out[id] = sock
	}
	return out, nil
}

// parseContexts parses --build-context NAME=VALUE.
func parseContexts(vals []string) (map[string]string, error) {
	out := map[string]string{}
	for _, v := range vals {
		k, val, ok := strings.Cut(v, "=")
		if !ok || k == "" || val == "" {
			return nil, usagef("--build-context %q: use NAME=DIR|docker-image://REF|oci-layout://PATH", v)
		}
		if !strings.Contains(val, "://") {
			abs, err := filepath.Abs(val)
			if err != nil {
				return nil, err
			}
			if fi, err := os.Stat(abs); err != nil || !fi.IsDir() {
				return nil, fmt.Errorf("--build-context %s: %s is not a directory", k, val)
			}
			val = abs
		}
		out[strings.ToLower(k)] = val
	}
	return out, nil
}

// contextFromStdin reads `strata build -`: a tar (plain or compressed) is
// unpacked into a temp directory used as the build context; anything else is
// a Dockerfile, built with an empty context, as docker does.
func (a *app) contextFromStdin(ctx context.Context) (dir string, dockerfile []byte, err error) {
	dir, err = os.MkdirTemp("", "strata-context-")
	if err != nil {
		return "", nil, err
	}
	br := bufio.NewReaderSize(a.stdin, layer.ArchiveHeadSize)
	head, _ := br.Peek(layer.ArchiveHeadSize)
	if !layer.IsArchive(head) {
		b, err := io.ReadAll(br)
		if err != nil {
			os.RemoveAll(dir)
			return "", nil, fmt.Errorf("read Dockerfile from stdin: %w", err)
		}
		return dir, b, nil
	}
	if err := layer.Unpack(ctx, dir, br, nil, layer.ApplyOptions{}); err != nil {
		os.RemoveAll(dir)
		return "", nil, fmt.Errorf("build context from stdin: %w", err)
	}
	return dir, nil, nil
}

// isTerminal reports whether w is a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	return term.IsTerminal(int(f.Fd()))
}

// checkNames checks the names the build will give its image (-t, --output
// name=) and that a push has one.
func checkNames(tags []string, outs []export.Output) error {
	for _, t := range tags {
		if _, err := registry.ParseTag(t); err != nil {
			return usagef("-t %s: %v", t, err)
		}
	}
	for _, o := range outs {
		for _, n := range o.Names {
			if _, err := registry.ParseTag(n); err != nil {
				return usagef("--output name=%s: %v", n, err)
			}
		}
		if o.Push && len(o.Names) == 0 && len(tags) == 0 {
			return usagef("nothing to push: give -t NAME or --output type=registry,name=NAME")
		}
	}
	return nil
}

// checkFileDests checks, before anything is built, that the files the build
// will write can be created: their folder exists (as buildx creates an
// output file before it solves). A folder output (type=local) is created
// when missing, so only its parent's kind matters.
func checkFileDests(outs []export.Output, files map[string]string) error {
	// what names the flag and its value, as the user gave them
	check := func(what, p string) error {
		if p == "" || p == "-" {
			return nil
		}
		dir := filepath.Dir(p)
		fi, err := os.Stat(dir)
		if err != nil {
			return usagef("%s: folder %s: %v", what, dir, errors.Unwrap(err))
		}
		if !fi.IsDir() {
			return usagef("%s: %s is not a folder", what, dir)
		}
		return nil
	}
	for _, o := range outs {
		if o.Type == "local" {
			continue // made with its parents, as buildx does
		}
		if err := check("--output type="+o.Type+",dest="+o.Dest, o.Dest); err != nil {
			return err
		}
	}
	for _, flag := range slices.Sorted(maps.Keys(files)) {
		if err := check(flag+" "+files[flag], files[flag]); err != nil {
			return err
		}
	}
	return nil
}

// parseCacheSpec parses a --cache-from or --cache-to value, with its
// registry reference checked.
func parseCacheSpec(v string) (builder.CacheSpec, error) {
	c, err := builder.ParseCacheSpec(v)
	if err != nil {
		return c, err
	}
	if c.Type == "registry" {
		if _, err := registry.ParseReference(c.Ref); err != nil {
			return c, err
		}
	}
	return c, nil
}
