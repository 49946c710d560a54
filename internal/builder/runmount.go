package builder

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"path"
	"path/filepath"
	"sort"
	"time"

	securejoin "github.com/cyphar/filepath-securejoin"
	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/strata-build/strata/internal/executor/user"
	"github.com/strata-build/strata/internal/source"
)

// runMounts prepares the RUN --mount mounts and the secret environment
// variables; releases undo what they set up.
func (sb *stageBuilder) runMounts(ctx context.Context, c *instructions.RunCommand, releases *[]func()) (out []specs.Mount, env []string, err error) {
	sshN := 0
	for _, m := range instructions.GetMounts(c) {
		target := m.Target
		switch m.Type {
		case instructions.MountTypeSecret:
			mnt, kv, err := sb.secretMount(m, releases)
			if err != nil {
				return nil, nil, err
			}
			if mnt != nil {
				out = append(out, *mnt)
			}
			if kv != "" {
				env = append(env, kv)
			}
			continue
		case instructions.MountTypeSSH:
			mnt, kv, err := sb.sshMount(m, sshN, releases)
			if err != nil {
				return nil, nil, err
			}
			sshN++
			if mnt != nil {
				out = append(out, *mnt)
				env = append(env, kv)
			}
			continue
		}
		if target == "" {
			return nil, nil, fmt.Errorf("--mount: target is required")
		}
		target = sb.img.resolvePath(target)
		switch m.Type {
		case instructions.MountTypeBind:
			root, err := sb.mountSource(ctx, m.From, releases)
			if err != nil {
				return nil, nil, err
			}
			src, err := securejoin.SecureJoin(root, m.Source)
			if err != nil {
				return nil, nil, err
			}
			if _, err := os.Stat(src); err != nil {
				return nil, nil, fmt.Errorf("--mount source %q: %w", m.Source, err)
			}
			opts := []string{"rbind", "ro"}
			if fi, err := os.Stat(src); err == nil && fi.IsDir() && !m.ReadOnly {
				// rw: writes go to a throwaway snapshot and are discarded.
				snap, err := sb.svc.snapshots.Prepare(ctx, []string{src})
				if err != nil {
					return nil, nil, fmt.Errorf("--mount rw: %w", err)
				}
				*releases = append(*releases, func() { snap.Remove() })
				src = snap.Root()
				opts = []string{"rbind", "rw"}
			}
			out = append(out, specs.Mount{Destination: target, Type: "bind", Source: src, Options: opts})
		case instructions.MountTypeCache:
			dir, err := sb.cacheMount(ctx, m, target, releases)
			if err != nil {
				return nil, nil, err
			}
			out = append(out, specs.Mount{Destination: target, Type: "bind", Source: dir, Options: []string{"rbind", "rw"}})
		case instructions.MountTypeTmpfs:
			opts := []string{"nosuid", "nodev"}
			if m.SizeLimit > 0 {
				opts = append(opts, fmt.Sprintf("size=%d", m.SizeLimit))
			}
			out = append(out, specs.Mount{Destination: target, Type: "tmpfs", Source: "tmpfs", Options: opts})
		default:
			return nil, nil, fmt.Errorf("RUN --mount=type=%s is not supported yet", m.Type)
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return len(out[i].Destination) < len(out[j].Destination) })
	return out, env, nil
}

// secretMount exposes a --secret to one RUN: as a read-only file (default
// /run/secrets/ID, mode 0400) and/or an environment variable. A missing
// secret is skipped unless required.
func (sb *stageBuilder) secretMount(m *instructions.Mount, releases *[]func()) (*specs.Mount, string, error) {
	id := m.CacheID
	if id == "" {
		id = m.Source
	}
	if id == "" && m.Target != "" {
		id = path.Base(m.Target)
	}
	sec, ok := sb.svc.opts.Secrets[id]
	if !ok {
		if m.Required {
			return nil, "", fmt.Errorf("secret %s: not provided (pass --secret id=%s,src=FILE or env=VAR)", id, id)
		}
		return nil, "", nil
	}
	val, err := sec.value()
	if err != nil {
		return nil, "", fmt.Errorf("secret %s: %w", id, err)
	}
	var kv string
	if m.Env != nil {
		name := *m.Env
		if name == "" {
			name = id
		}
		kv = name + "=" + string(val)
		if m.Target == "" {
			return nil, kv, nil
		}
	}
	target := m.Target
	if target == "" {
		target = "/run/secrets/" + id
	}
	dir, err := os.MkdirTemp(sb.svc.session.Dir, "secret-")
	if err != nil {
		return nil, "", err
	}
	*releases = append(*releases, func() { os.RemoveAll(dir) })
	f := filepath.Join(dir, "secret")
	mode := os.FileMode(0o400)
	if m.Mode != nil {
		mode = os.FileMode(*m.Mode)
	}
	if err := os.WriteFile(f, val, 0o600); err != nil {
		return nil, "", err
	}
	if err := setMountOwner(f, m, mode); err != nil {
		return nil, "", err
	}
	return &specs.Mount{Destination: sb.img.resolvePath(target), Type: "bind", Source: f, Options: []string{"bind", "ro"}}, kv, nil
}

// sshMount forwards the agent of --ssh ID to the RUN through a socket of its
// own (mode 0600 and owner 0:0 unless mode/uid/gid say otherwise, as
// BuildKit's), proxied to the host agent, and points SSH_AUTH_SOCK at it.
func (sb *stageBuilder) sshMount(m *instructions.Mount, n int, releases *[]func()) (*specs.Mount, string, error) {
	id := m.CacheID
	if id == "" {
		id = "default"
	}
	sock, ok := sb.svc.opts.SSH[id]
	if !ok {
		if m.Required {
			return nil, "", fmt.Errorf("ssh %s: no agent forwarded (pass --ssh %s[=SOCKET])", id, id)
		}
		return nil, "", nil
	}
	target := m.Target
	if target == "" {
		target = fmt.Sprintf("/run/buildkit/ssh_agent.%d", n)
	}
	dir, err := os.MkdirTemp(sb.svc.session.Dir, "ssh-")
	if err != nil {
		return nil, "", err
	}
	proxy := filepath.Join(dir, "agent.sock")
	ln, err := net.Listen("unix", proxy)
	if err != nil {
		os.RemoveAll(dir)
		return nil, "", fmt.Errorf("ssh %s: %w", id, err)
	}
	*releases = append(*releases, func() { ln.Close(); os.RemoveAll(dir) })
	if err := setMountOwner(proxy, m, 0o600); err != nil {
		return nil, "", err
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				up, err := net.Dial("unix", sock)
				if err != nil {
					return
				}
				defer up.Close()
				go func() { io.Copy(up, c); up.(*net.UnixConn).CloseWrite() }()
				io.Copy(c, up)
			}()
		}
	}()
	t := sb.img.resolvePath(target)
	return &specs.Mount{Destination: t, Type: "bind", Source: proxy, Options: []string{"bind"}}, "SSH_AUTH_SOCK=" + t, nil
}

// setMountOwner gives a mount's file or directory the mount's uid, gid
// (default 0) and mode (default def).
func setMountOwner(p string, m *instructions.Mount, def os.FileMode) error {
	uid, gid, mode := 0, 0, def
	for _, id := range []*uint64{m.UID, m.GID} {
		if id != nil && *id > user.MaxID {
			return fmt.Errorf("invalid id %d: %w", *id, user.ErrIDRange)
		}
	}
	if m.UID != nil {
		uid = int(*m.UID)
	}
	if m.GID != nil {
		gid = int(*m.GID)
	}
	if m.Mode != nil {
		mode = os.FileMode(*m.Mode)
	}
	if err := os.Chown(p, uid, gid); err != nil {
		return err
	}
	return os.Chmod(p, mode)
}

// cacheMount returns the directory of a RUN --mount=type=cache. Caches live
// in the store (ROOT/cache/mounts), persist across builds and never land in a
// layer. sharing=locked serializes the users of one cache (across processes,
// with flock), private gives a concurrent user its own instance, shared lets
// everyone in. A new cache starts empty (mode/uid/gid applied) or, with from=,
// as a copy of that stage's or image's source path.
func (sb *stageBuilder) cacheMount(ctx context.Context, m *instructions.Mount, target string, releases *[]func()) (string, error) {
	id := m.CacheID
	if id == "" {
		id = target
	}
	sum := sha256.Sum256([]byte(id + "\x00" + m.From + "\x00" + m.Source))
	if err := os.MkdirAll(sb.svc.store.Path("cache", "mounts"), 0o700); err != nil {
		return "", err
	}
	base := sb.svc.store.Path("cache", "mounts", hex.EncodeToString(sum[:16]))
	dir := base
	switch m.CacheSharing {
	case instructions.MountSharingLocked:
		unlock, err := flockFile(ctx, base+".lock", true)
		if err != nil {
			return "", err
		}
		*releases = append(*releases, unlock)
	case instructions.MountSharingPrivate:
		for n := 0; ; n++ {
			if n > 0 {
				dir = fmt.Sprintf("%s-private-%d", base, n)
			}
			unlock, err := flockFile(ctx, dir+".lock", false)
			if err == nil {
				*releases = append(*releases, unlock)
				break
			}
			if !errors.Is(err, unix.EWOULDBLOCK) {
				return "", err
			}
		}
	}
	if _, err := os.Stat(dir); err == nil {
		return dir, nil
	}
	tmp, err := os.MkdirTemp(sb.svc.store.Path("cache", "mounts"), ".new-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(tmp)
	if m.From != "" {
		if err := sb.seedCache(ctx, m, tmp); err != nil {
			return "", err
		}
	}
	if err := setMountOwner(tmp, m, 0o755); err != nil {
		return "", err
	}
	if err := os.Rename(tmp, dir); err != nil && !errors.Is(err, fs.ErrExist) && !errors.Is(err, unix.ENOTEMPTY) {
		return "", fmt.Errorf("create cache mount: %w", err)
	}
	return dir, nil
}

// flockFile takes an exclusive flock on path (waiting when wait is set) and
// returns its release.
func flockFile(ctx context.Context, path string, wait bool) (func(), error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, err
	}
	how := unix.LOCK_EX
	if !wait {
		how |= unix.LOCK_NB
	}
	for {
		err = unix.Flock(int(f.Fd()), how|unix.LOCK_NB)
		if err == nil || !wait || !errors.Is(err, unix.EWOULDBLOCK) {
			break
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	return func() { unix.Flock(int(f.Fd()), unix.LOCK_UN); f.Close() }, nil
}

// seedCache fills the new cache directory dir with the contents of the
// mount's source path in what its from= names (owners kept).
func (sb *stageBuilder) seedCache(ctx context.Context, m *instructions.Mount, dir string) error {
	ref, err := sb.resolveFrom(m.From)
	if err != nil {
		return err
	}
	return sb.withSource(ctx, ref, forMount, func(s *source.Source) error {
		src := m.Source
		if src == "" {
			src = "/"
		}
		it, err := s.WithOwners("cache source " + m.From).Stat(path.Clean("/" + src))
		if err != nil {
			return fmt.Errorf("--mount=type=cache,from=%s,source=%s: %w", m.From, src, err)
		}
		if !it.Info.IsDir() {
			return nil
		}
		return copyTree(ctx, it, dir)
	})
}

// mountSource returns the root a bind mount reads from: the filtered build
// context, a named context directory, or a read-only view of a stage or
// image that stays until the releases run.
func (sb *stageBuilder) mountSource(ctx context.Context, from string, releases *[]func()) (string, error) {
	ref, err := sb.resolveFrom(from)
	if err != nil {
		return "", err
	}
	src, err := sb.openSource(ctx, ref, forMount)
	if err != nil {
		return "", err
	}
	*releases = append(*releases, func() { src.Close() })
	return src.Root(), nil
}
