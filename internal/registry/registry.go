// Package registry pulls and pushes images with go-containerregistry, applying
// strata's registry configuration: mirrors, insecure (plain http) registries
// and Docker config credentials.
package registry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// MirrorsEnv names the environment variable with extra mirrors:
// comma-separated REGISTRY=URL pairs, e.g. docker.io=http://127.0.0.1:5000.
const MirrorsEnv = "STRATA_REGISTRY_MIRRORS"

// Host is the configuration of one registry host.
type Host struct {
	// Mirrors are tried in order before the registry itself, as URLs
	// (http://host:port makes the mirror insecure).
	Mirrors []string `json:"mirrors,omitempty"`
	// Insecure allows plain http (and unverified TLS) to this registry.
	Insecure bool `json:"insecure,omitempty"`
}

// Config is strata's registry configuration.
type Config struct {
	// Registries maps a registry host (docker.io, ghcr.io, localhost:5000) to its settings.
	Registries map[string]Host `json:"registries,omitempty"`
	// Timeout is how long a registry may stay silent before a request
	// fails (0: DefaultTimeout); see TimeoutEnv.
	Timeout time.Duration `json:"-"`
}

// LoadConfig reads the JSON config file at path (a missing file is an empty
// config) and adds the mirrors of the STRATA_REGISTRY_MIRRORS value env.
func LoadConfig(path, env string) (Config, error) {
	cfg := Config{Registries: map[string]Host{}}
	if path != "" {
		b, err := os.ReadFile(path)
		switch {
		case errors.Is(err, fs.ErrNotExist):
		case err != nil:
			return cfg, fmt.Errorf("registry config: %w", err)
		default:
			var file Config
			if err := json.Unmarshal(b, &file); err != nil {
				return cfg, fmt.Errorf("registry config %s: %w", path, err)
			}
			for reg, h := range file.Registries {
				reg = canonicalRegistry(reg)
				cur := cfg.Registries[reg]
				cur.Mirrors = append(cur.Mirrors, h.Mirrors...)
				cur.Insecure = cur.Insecure || h.Insecure
				cfg.Registries[reg] = cur
			}
		}
	}
	envMirrors := map[string][]string{}
	for _, pair := range strings.Split(env, ",") {
		pair = strings.TrimSpace(pair)
		if pair == "" {
			continue
		}
		reg, u, ok := strings.Cut(pair, "=")
		if !ok || reg == "" || u == "" {
			return cfg, fmt.Errorf("%s: %q is not REGISTRY=URL", MirrorsEnv, pair)
		}
		if _, err := parseMirror(u); err != nil {
			return cfg, fmt.Errorf("%s: %w", MirrorsEnv, err)
		}
		reg = canonicalRegistry(reg)
		envMirrors[reg] = append(envMirrors[reg], u)
	}
	// The environment's mirrors come first, in the order given.
	for reg, ms := range envMirrors {
		h := cfg.Registries[reg]
		h.Mirrors = append(ms, h.Mirrors...)
		cfg.Registries[reg] = h
	}
	return cfg, nil
}

// DefaultConfigPath is where the config file is looked for: $STRATA_CONFIG,
// else $XDG_CONFIG_HOME/strata/config.json (~/.config/...), else
// /etc/strata/config.json for root.
func DefaultConfigPath() string {
	if p := os.Getenv("STRATA_CONFIG"); p != "" {
		return p
	}
	if os.Geteuid() == 0 {
		return "/etc/strata/config.json"
	}
	if x := os.Getenv("XDG_CONFIG_HOME"); x != "" {
		return filepath.Join(x, "strata", "config.json")
	}
	if h, err := os.UserHomeDir(); err == nil {
		return filepath.Join(h, ".config", "strata", "config.json")
	}
	return ""
}

func canonicalRegistry(r string) string {
	switch r {
	case "docker.io", "index.docker.io", "registry-1.docker.io":
		return name.DefaultRegistry
	}
	return r
}

type mirror struct {
	host     string
	insecure bool
}

func parseMirror(u string) (mirror, error) {
	if !strings.Contains(u, "://") {
		return mirror{host: strings.TrimSuffix(u, "/")}, nil
	}
	p, err := url.Parse(u)
	if err != nil || p.Host == "" {
		return mirror{}, fmt.Errorf("bad mirror URL %q", u)
	}
	return mirror{host: p.Host, insecure: p.Scheme == "http"}, nil
}

// Client talks to registries.
type Client struct {
	cfg      Config
	keychain authn.Keychain
	// chunkSize is the PATCH size of blob uploads (0: DefaultChunkSize).
	chunkSize int64
	// retryDelay is the first wait after a failed upload request, doubled
	// for each failure in a row (0: 200 ms).
	retryDelay time.Duration
	// transport carries every request: idle timeouts, a redirect limit.
	transport http.RoundTripper
}

// New returns a client for cfg using Docker's credential config.
func New(cfg Config) *Client {
	return &Client{cfg: cfg, keychain: authn.DefaultKeychain, transport: newTransport(cfg.Timeout)}
}

// options are the go-containerregistry options of every remote call.
func (c *Client) options(ctx context.Context, more ...remote.Option) []remote.Option {
	return append([]remote.Option{remote.WithContext(ctx), remote.WithAuthFromKeychain(c.keychain), remote.WithTransport(c.transport)}, more...)
}

func (c *Client) host(reg string) Host { return c.cfg.Registries[canonicalRegistry(reg)] }

// candidates returns the references to try for ref: its mirrors, then itself.
func (c *Client) candidates(ref name.Reference) ([]name.Reference, error) {
	reg := ref.Context().RegistryStr()
	h := c.host(reg)
	var out []name.Reference
	for _, m := range h.Mirrors {
		mm, err := parseMirror(m)
		if err != nil {
			return nil, err
		}
		var opts []name.Option
		if mm.insecure {
			opts = append(opts, name.Insecure)
		}
		s := mm.host + "/" + ref.Context().RepositoryStr()
		switch r := ref.(type) {
		case name.Digest:
			s += "@" + r.DigestStr()
		default:
			s += ":" + ref.Identifier()
		}
		mr, err := name.ParseReference(s, opts...)
		if err != nil {
			return nil, fmt.Errorf("mirror %s for %s: %w", m, ref, err)
		}
		out = append(out, mr)
	}
	self := ref
	if h.Insecure {
		var err error
		self, err = name.ParseReference(ref.String(), name.Insecure)
		if err != nil {
			return nil, err
		}
	}
	return append(out, self), nil
}

// Image fetches the manifest of ref for platform (resolving an index), trying
// mirrors first. Layers are fetched lazily by the returned image.
func (c *Client) Image(ctx context.Context, ref string, platform v1.Platform) (v1.Image, error) {
	img, _, err := c.ImageAndIndex(ctx, ref, platform)
	return img, err
}

// ImageAndIndex is Image that also returns the image index ref names, as
// the registry sent it (its media type says whether it is an OCI index or
// a Docker manifest list), or nil when ref names an image manifest: a pull
// keeps the index, as containerd does, so that its name means every
// platform.
func (c *Client) ImageAndIndex(ctx context.Context, ref string, platform v1.Platform) (v1.Image, *Manifest, error) {
	r, err := ParseReference(ref)
	if err != nil {
		return nil, nil, err
	}
	type result struct {
		img   v1.Image
		index *Manifest
	}
	res, err := firstCandidate(ctx, c, r, "pull "+r.Name(), func(cand name.Reference) (result, error) {
		img, index, err := c.imageAndIndex(ctx, cand, platform)
		return result{img, index}, err
	})
	return res.img, res.index, err
}

func (c *Client) imageAndIndex(ctx context.Context, ref name.Reference, platform v1.Platform) (v1.Image, *Manifest, error) {
	d, err := remote.Get(ref, c.options(ctx, remote.WithPlatform(platform))...)
	if err != nil {
		return nil, nil, err
	}
	img, err := d.Image() // the platform's image of an index
	if err != nil {
		return nil, nil, err
	}
	if d.MediaType.IsIndex() {
		return img, &Manifest{Raw: d.Manifest, MediaType: string(d.MediaType)}, nil
	}
	return img, nil, nil
}

// Manifest is a manifest as a registry sent it.
type Manifest struct {
	Raw       []byte
	MediaType string
}

// Push uploads img as ref.
func (c *Client) Push(ctx context.Context, ref string, img v1.Image) error {
	return c.PushProgress(ctx, ref, img, nil)
}

// PushProgress is Push that reports the bytes uploaded so far (and the
// total) to progress as the upload runs.
func (c *Client) PushProgress(ctx context.Context, ref string, img v1.Image, progress func(done, total int64)) error {
	var opts []name.Option
	if r0, err := name.ParseReference(ref); err == nil && c.host(r0.Context().RegistryStr()).Insecure {
		opts = append(opts, name.Insecure)
	}
	r, err := ParseReference(ref, opts...)
	if err != nil {
		return err
	}
	return c.write(ctx, r, img, progress)
}

// PushIndex uploads the images of an image index to ref's repository by
// digest, then the index (raw, of media type mt) as ref.
func (c *Client) PushIndex(ctx context.Context, ref string, imgs []v1.Image, raw []byte, mt types.MediaType) error {
	r, err := c.resolve(ref)
	if err != nil {
		return err
	}
	for _, img := range imgs {
		d, err := img.Digest()
		if err != nil {
			return fmt.Errorf("push %s: %w", r.Name(), err)
		}
		if err := c.write(ctx, r.Context().Digest(d.String()), img, nil); err != nil {
			return err
		}
	}
	err = c.retryBlobUnknown(ctx, func() error {
		return remote.Put(r, rawManifest{raw: raw, mt: mt}, c.options(ctx)...)
	})
	if err != nil {
		return fmt.Errorf("push %s: %w", r.Name(), describe(err))
	}
	return nil
}

// rawManifest is a manifest to put as it is.
type rawManifest struct {
	raw []byte
	mt  types.MediaType
}

func (m rawManifest) RawManifest() ([]byte, error)        { return m.raw, nil }
func (m rawManifest) MediaType() (types.MediaType, error) { return m.mt, nil }

// write uploads img's blobs with the resumable uploader, then lets
// go-containerregistry put the manifest (and mount what lives in other
// repositories).
func (c *Client) write(ctx context.Context, r name.Reference, img v1.Image, progress func(done, total int64)) error {
	blobs, err := imageBlobs(img)
	if err != nil {
		return fmt.Errorf("push %s: %w", r.Name(), describe(err))
	}
	u, err := c.newUploader(ctx, r.Context(), progress)
	if err != nil {
		return fmt.Errorf("push %s: %w", r.Name(), describe(err))
	}
	if err := u.uploadAll(ctx, blobs); err != nil {
		return fmt.Errorf("push %s: %w", r.Name(), describe(err))
	}
	err = c.retryBlobUnknown(ctx, func() error {
		return remote.Write(r, img, c.options(ctx)...)
	})
	if err != nil {
		return fmt.Errorf("push %s: %w", r.Name(), describe(err))
	}
	return nil
}

// blobUnknownRetries is how many times a manifest the registry refuses
// for a blob it does not know is put again.
const blobUnknownRetries = 4

// retryBlobUnknown runs put (a manifest put, with go-containerregistry's
// check of the blobs it names) and runs it again, after a wait doubled
// each time, while the registry answers that a blob it names is unknown.
// Docker's distribution registry on its filesystem driver answers that
// for a blob it holds while another client's upload of the same blob
// rewrites the repository's link file in place (distribution issues
// #2077, #4489): builders sharing a cache ref push the same layers at the
// same moment. A blob really missing still fails, after a few seconds.
func (c *Client) retryBlobUnknown(ctx context.Context, put func() error) error {
	for try := 0; ; try++ {
		err := put()
		if err == nil || try == blobUnknownRetries || !isBlobUnknown(err) {
			return err
		}
		if err := backoff(ctx, c.firstRetryDelay(), try); err != nil {
			return err
		}
	}
}

// firstRetryDelay is the wait before the first retry of a request
// (retryDelay, else 200 ms); backoff doubles it for each retry after.
func (c *Client) firstRetryDelay() time.Duration {
	if c.retryDelay > 0 {
		return c.retryDelay
	}
	return 200 * time.Millisecond
}

// backoff waits first doubled n times, or until ctx is done.
func backoff(ctx context.Context, first time.Duration, n int) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(first << n):
		return nil
	}
}

// isBlobUnknown reports whether err is a registry's answer that a blob
// (or a manifest an index names) is unknown to it.
func isBlobUnknown(err error) bool {
	var te *transport.Error
	if !errors.As(err, &te) {
		return false
	}
	for _, d := range te.Errors {
		switch d.Code {
		case transport.BlobUnknownErrorCode, transport.ManifestBlobUnknownErrorCode:
			return true
		}
	}
	return false
}

// resolve parses ref applying the insecure setting of its registry.
func (c *Client) resolve(ref string) (name.Reference, error) {
	var opts []name.Option
	if r0, err := name.ParseReference(ref); err == nil && c.host(r0.Context().RegistryStr()).Insecure {
		opts = append(opts, name.Insecure)
	}
	r, err := ParseReference(ref, opts...)
	if err != nil {
		return nil, err
	}
	return r, nil
}

// Get fetches the manifest (image or index) that ref points to, without
// platform resolution, trying mirrors first.
func (c *Client) Get(ctx context.Context, ref string) (*remote.Descriptor, error) {
	r, err := c.resolve(ref)
	if err != nil {
		return nil, err
	}
	return firstCandidate(ctx, c, r, "get "+r.Name(), func(cand name.Reference) (*remote.Descriptor, error) {
		return remote.Get(cand, c.options(ctx)...)
	})
}

// firstCandidate runs try on each candidate of r (its mirrors, then r)
// until one works, and returns what that gave; the error of all failing
// names each candidate's registry, under what.
func firstCandidate[T any](ctx context.Context, c *Client, r name.Reference, what string, try func(name.Reference) (T, error)) (T, error) {
	var zero T
	cands, err := c.candidates(r)
	if err != nil {
		return zero, err
	}
	var errs []error
	for _, cand := range cands {
		v, err := try(cand)
		if err == nil {
			return v, nil
		}
		if ctx.Err() != nil {
			return zero, ctx.Err()
		}
		errs = append(errs, fmt.Errorf("%s: %w", cand.Context().RegistryStr(), describe(err)))
	}
	return zero, fmt.Errorf("%s: %w", what, errors.Join(errs...))
}

// PushImage uploads img as ref (any v1.Image, e.g. a cache manifest).
func (c *Client) PushImage(ctx context.Context, ref string, img v1.Image) error {
	r, err := c.resolve(ref)
	if err != nil {
		return err
	}
	return c.write(ctx, r, img, nil)
}
