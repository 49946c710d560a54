package registry

import (
	"context"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	ggcrregistry "github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// TestMain keeps the tests off the network: every non-loopback request goes
// to a closed port on 127.0.0.1 (Go never proxies loopback addresses), and
// no Docker credentials of the machine are read.
func TestMain(m *testing.M) {
	os.Setenv("HTTP_PROXY", "http://127.0.0.1:1")
	os.Setenv("HTTPS_PROXY", "http://127.0.0.1:1")
	os.Unsetenv("http_proxy")
	os.Unsetenv("https_proxy")
	os.Unsetenv("NO_PROXY")
	os.Unsetenv("no_proxy")
	dir, err := os.MkdirTemp("", "strata-registry-test-")
	if err != nil {
		panic(err)
	}
	os.Setenv("DOCKER_CONFIG", dir)
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

var linuxAMD64 = v1.Platform{OS: "linux", Architecture: "amd64"}

// testRegistry is an in-process registry on 127.0.0.1 that counts requests.
type testRegistry struct {
	srv  *httptest.Server
	host string // 127.0.0.1:PORT
	hits atomic.Int32
}

func newRegistry(t *testing.T) *testRegistry {
	t.Helper()
	tr := &testRegistry{}
	h := ggcrregistry.New(ggcrregistry.Logger(log.New(io.Discard, "", 0)))
	tr.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tr.hits.Add(1)
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(tr.srv.Close)
	tr.host = strings.TrimPrefix(tr.srv.URL, "http://")
	return tr
}

func (tr *testRegistry) url() string { return "http://" + tr.host }

// push writes img to repo:tag on the test registry directly with ggcr.
func (tr *testRegistry) push(t *testing.T, repoTag string, img v1.Image) v1.Hash {
	t.Helper()
	ref, err := name.ParseReference(tr.host+"/"+repoTag, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref, img); err != nil {
		t.Fatal(err)
	}
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// deadAddr returns a 127.0.0.1 address nothing listens on.
func deadAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

func randomImage(t *testing.T) v1.Image {
	t.Helper()
	img, err := random.Image(512, 2)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

func writeFile(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "config.json")
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLoadConfig(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "nope.json")
	file := writeFile(t, `{"registries":{"ghcr.io":{"mirrors":["https://m1.example","m2.example:5000"],"insecure":true},"localhost:5000":{"insecure":true}}}`)
	emptyFile := writeFile(t, `{}`)
	tests := []struct {
		name string
		path string
		env  string
		want map[string]Host
	}{
		{"nothing", "", "", map[string]Host{}},
		{"missing file", missing, "", map[string]Host{}},
		{"empty object", emptyFile, "", map[string]Host{}},
		{"file", file, "", map[string]Host{
			"ghcr.io":        {Mirrors: []string{"https://m1.example", "m2.example:5000"}, Insecure: true},
			"localhost:5000": {Insecure: true},
		}},
		{"env pairs", "", "docker.io=http://127.0.0.1:5000, quay.io=mirror.local:5000 ,,", map[string]Host{
			"index.docker.io": {Mirrors: []string{"http://127.0.0.1:5000"}},
			"quay.io":         {Mirrors: []string{"mirror.local:5000"}},
		}},
		{"index.docker.io spelling", "", "index.docker.io=http://a:1", map[string]Host{
			"index.docker.io": {Mirrors: []string{"http://a:1"}},
		}},
		{"registry-1.docker.io spelling", "", "registry-1.docker.io=http://b:2", map[string]Host{
			"index.docker.io": {Mirrors: []string{"http://b:2"}},
		}},
		{"other registries are not renamed", "", "localhost:5000=http://c:3,ghcr.io=https://d", map[string]Host{
			"localhost:5000": {Mirrors: []string{"http://c:3"}},
			"ghcr.io":        {Mirrors: []string{"https://d"}},
		}},
		{"env before file", file, "ghcr.io=https://env.example", map[string]Host{
			"ghcr.io":        {Mirrors: []string{"https://env.example", "https://m1.example", "m2.example:5000"}, Insecure: true},
			"localhost:5000": {Insecure: true},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := LoadConfig(tt.path, tt.env)
			if err != nil {
				t.Fatal(err)
			}
			if cfg.Registries == nil {
				t.Fatal("Registries is nil")
			}
			if !reflect.DeepEqual(cfg.Registries, tt.want) {
				t.Errorf("Registries = %+v\n        want %+v", cfg.Registries, tt.want)
			}
		})
	}
}

func TestLoadConfigEnvOrder(t *testing.T) {
	cfg, err := LoadConfig("", "docker.io=http://first:1,docker.io=http://second:2")
	if err != nil {
		t.Fatal(err)
	}
	got := cfg.Registries[name.DefaultRegistry].Mirrors
	if !reflect.DeepEqual(got, []string{"http://first:1", "http://second:2"}) {
		t.Errorf("%s=docker.io=http://first:1,docker.io=http://second:2 gives mirrors %q: the mirrors of one registry are tried in reverse order of the variable", MirrorsEnv, got)
	}
}

func TestLoadConfigErrors(t *testing.T) {
	badJSON := writeFile(t, `{"registries": [}`)
	for _, tt := range []struct {
		name, path, env, want string
	}{
		{"bad json", badJSON, "", badJSON},
		{"dir as file", t.TempDir(), "", "registry config"},
		{"no equals", "", "docker.io", MirrorsEnv + `: "docker.io" is not REGISTRY=URL`},
		{"no registry", "", "=http://x:1", MirrorsEnv + `: "=http://x:1" is not REGISTRY=URL`},
		{"no url", "", "docker.io=", MirrorsEnv + `: "docker.io=" is not REGISTRY=URL`},
		{"one bad among good", "", "quay.io=http://a:1,ghcr.io", MirrorsEnv + `: "ghcr.io" is not REGISTRY=URL`},
		{"url without host", "", "docker.io=http://", MirrorsEnv + `: bad mirror URL "http://"`},
		{"unparsable url", "", "docker.io=http://[::1", MirrorsEnv + `: bad mirror URL "http://[::1"`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := LoadConfig(tt.path, tt.env)
			if err == nil {
				t.Fatal("no error")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not contain %q", err, tt.want)
			}
		})
	}
}

func TestDefaultConfigPath(t *testing.T) {
	t.Setenv("STRATA_CONFIG", "/some/where.json")
	if got := DefaultConfigPath(); got != "/some/where.json" {
		t.Errorf("with STRATA_CONFIG: %q", got)
	}
	t.Setenv("STRATA_CONFIG", "")
	t.Setenv("XDG_CONFIG_HOME", "/xdg")
	want := "/xdg/strata/config.json"
	if os.Geteuid() == 0 {
		want = "/etc/strata/config.json"
	}
	if got := DefaultConfigPath(); got != want {
		t.Errorf("DefaultConfigPath() = %q, want %q", got, want)
	}
}

func TestImageThroughMirror(t *testing.T) {
	ctx := context.Background()
	mir := newRegistry(t)
	img := randomImage(t)
	want := mir.push(t, "library/busybox:latest", img)

	cfg, err := LoadConfig("", "docker.io="+mir.url())
	if err != nil {
		t.Fatal(err)
	}
	c := New(cfg)
	for _, ref := range []string{"busybox", "busybox:latest", "docker.io/library/busybox", "index.docker.io/library/busybox:latest", "busybox@" + want.String()} {
		mir.hits.Store(0)
		got, err := c.Image(ctx, ref, linuxAMD64)
		if err != nil {
			t.Errorf("Image(%q): %v", ref, err)
			continue
		}
		d, err := got.Digest()
		if err != nil || d != want {
			t.Errorf("Image(%q) digest = %s %v, want %s", ref, d, err, want)
		}
		if mir.hits.Load() == 0 {
			t.Errorf("Image(%q) did not go through the mirror", ref)
		}
	}
	// the layers are fetched from the mirror too
	got, err := c.Image(ctx, "busybox", linuxAMD64)
	if err != nil {
		t.Fatal(err)
	}
	ls, err := got.Layers()
	if err != nil || len(ls) != 2 {
		t.Fatalf("layers: %d %v", len(ls), err)
	}
	rc, err := ls[1].Compressed()
	if err != nil {
		t.Fatal(err)
	}
	n, err := io.Copy(io.Discard, rc)
	rc.Close()
	if err != nil || n == 0 {
		t.Errorf("reading a layer through the mirror: %d %v", n, err)
	}

	// an image the mirror does not have: falls back to the origin, which is
	// unreachable here, and the error names both
	_, err = c.Image(ctx, "alpine:3", linuxAMD64)
	if err == nil {
		t.Fatal("alpine found")
	}
	for _, part := range []string{"alpine", mir.host, "index.docker.io"} {
		if !strings.Contains(err.Error(), part) {
			t.Errorf("error %q does not name %q", err, part)
		}
	}
}

func TestImageFileMirrorForDockerHub(t *testing.T) {
	ctx := context.Background()
	mir := newRegistry(t)
	want := mir.push(t, "library/busybox:latest", randomImage(t))
	for _, key := range []string{"docker.io", "index.docker.io"} {
		t.Run(key, func(t *testing.T) {
			cfg, err := LoadConfig(writeFile(t, fmt.Sprintf(`{"registries":{%q:{"mirrors":[%q]}}}`, key, mir.url())), "")
			if err != nil {
				t.Fatal(err)
			}
			got, err := New(cfg).Image(ctx, "busybox", linuxAMD64)
			if err != nil {
				if key == "docker.io" {
					t.Fatalf("a config file mirror for \"docker.io\" is ignored (only the env variable's keys are normalized to %s): %v", name.DefaultRegistry, err)
				}
				t.Fatal(err)
			}
			if d, _ := got.Digest(); d != want {
				t.Errorf("digest %s, want %s", d, want)
			}
		})
	}
}

func TestImageMirrorFallback(t *testing.T) {
	ctx := context.Background()
	origin := newRegistry(t)
	img := randomImage(t)
	want := origin.push(t, "team/app:1", img)
	ref := origin.host + "/team/app:1"

	emptyMirror := newRegistry(t)
	dead := deadAddr(t)

	tests := []struct {
		name    string
		mirrors []string
	}{
		{"mirror down", []string{"http://" + dead}},
		{"mirror without the image", []string{emptyMirror.url()}},
		{"first mirror down, second empty", []string{"http://" + dead, emptyMirror.url()}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			origin.hits.Store(0)
			emptyMirror.hits.Store(0)
			c := New(Config{Registries: map[string]Host{origin.host: {Mirrors: tt.mirrors}}})
			got, err := c.Image(ctx, ref, linuxAMD64)
			if err != nil {
				t.Fatal(err)
			}
			if d, _ := got.Digest(); d != want {
				t.Errorf("digest %s, want %s", d, want)
			}
			if origin.hits.Load() == 0 {
				t.Error("origin not used")
			}
			for _, m := range tt.mirrors {
				if m == emptyMirror.url() && emptyMirror.hits.Load() == 0 {
					t.Error("the empty mirror was not tried first")
				}
			}
		})
	}

	// The second mirror has it: the origin is not asked.
	good := newRegistry(t)
	good.push(t, "team/app:1", img)
	origin.hits.Store(0)
	c := New(Config{Registries: map[string]Host{origin.host: {Mirrors: []string{"http://" + dead, good.url()}}}})
	got, err := c.Image(ctx, ref, linuxAMD64)
	if err != nil {
		t.Fatal(err)
	}
	if d, _ := got.Digest(); d != want {
		t.Errorf("digest %s, want %s", d, want)
	}
	if origin.hits.Load() != 0 {
		t.Errorf("origin asked %d times although the second mirror had the image", origin.hits.Load())
	}

	// Mirror and origin down: one error naming both.
	deadOrigin := deadAddr(t)
	c = New(Config{Registries: map[string]Host{deadOrigin: {Mirrors: []string{"http://" + dead}}}})
	_, err = c.Image(ctx, deadOrigin+"/team/app:1", linuxAMD64)
	if err == nil {
		t.Fatal("no error with everything down")
	}
	msg := err.Error()
	if !strings.HasPrefix(msg, "pull "+deadOrigin+"/team/app:1: ") {
		t.Errorf("error %q does not start with the image", msg)
	}
	if !strings.Contains(msg, dead+": ") || !strings.Contains(msg, deadOrigin+": ") {
		t.Errorf("error %q does not name both the mirror %s and the origin %s", msg, dead, deadOrigin)
	}
	if strings.Index(msg, dead+": ") > strings.Index(msg, deadOrigin+": ") {
		t.Errorf("error %q lists the origin before the mirror", msg)
	}
}

func TestImagePlatformFromIndex(t *testing.T) {
	ctx := context.Background()
	reg := newRegistry(t)
	amd, arm := randomImage(t), randomImage(t)
	idx := mutate.AppendManifests(empty.Index,
		mutate.IndexAddendum{Add: amd, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "amd64"}}},
		mutate.IndexAddendum{Add: arm, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "arm64", Variant: "v8"}}},
	)
	ref, _ := name.ParseReference(reg.host+"/multi:1", name.Insecure)
	if err := remote.WriteIndex(ref, idx); err != nil {
		t.Fatal(err)
	}
	c := New(Config{})
	for _, tt := range []struct {
		p    v1.Platform
		want v1.Image
	}{
		{linuxAMD64, amd},
		{v1.Platform{OS: "linux", Architecture: "arm64", Variant: "v8"}, arm},
	} {
		got, err := c.Image(ctx, reg.host+"/multi:1", tt.p)
		if err != nil {
			t.Fatal(err)
		}
		gd, _ := got.Digest()
		wd, _ := tt.want.Digest()
		if gd != wd {
			t.Errorf("platform %s: got %s, want %s", tt.p, gd, wd)
		}
	}
	if _, err := c.Image(ctx, reg.host+"/multi:1", v1.Platform{OS: "linux", Architecture: "s390x"}); err == nil {
		t.Error("an index without the platform gave an image")
	}
}

func TestImageErrors(t *testing.T) {
	c := New(Config{})
	if _, err := c.Image(context.Background(), "Not A Ref", linuxAMD64); err == nil || !strings.Contains(err.Error(), "invalid image reference") {
		t.Errorf("invalid ref: %v", err)
	}
	reg := newRegistry(t)
	reg.push(t, "x:1", randomImage(t))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := c.Image(ctx, reg.host+"/x:1", linuxAMD64); err != context.Canceled {
		t.Errorf("cancelled context: %v, want context.Canceled", err)
	}
}

func TestPushAndReadBack(t *testing.T) {
	ctx := context.Background()
	reg := newRegistry(t)
	img := randomImage(t)
	want, _ := img.Digest()
	c := New(Config{})
	ref := reg.host + "/pushed/img:v1"
	if err := c.Push(ctx, ref, img); err != nil {
		t.Fatal(err)
	}
	got, err := c.Image(ctx, ref, linuxAMD64)
	if err != nil {
		t.Fatal(err)
	}
	if d, _ := got.Digest(); d != want {
		t.Errorf("read back %s, want %s", d, want)
	}
	// by digest, with ggcr directly
	r, _ := name.ParseReference(reg.host+"/pushed/img@"+want.String(), name.Insecure)
	direct, err := remote.Image(r)
	if err != nil {
		t.Fatal(err)
	}
	wantCfg, _ := img.RawConfigFile()
	gotCfg, _ := direct.RawConfigFile()
	if string(wantCfg) != string(gotCfg) {
		t.Error("config differs after push")
	}
	ls, _ := direct.Layers()
	for i, l := range ls {
		rc, err := l.Compressed()
		if err != nil {
			t.Fatalf("layer %d: %v", i, err)
		}
		io.Copy(io.Discard, rc) // verifies the digest at EOF
		if err := rc.Close(); err != nil {
			t.Errorf("layer %d: %v", i, err)
		}
	}

	// insecure host from the config
	c = New(Config{Registries: map[string]Host{reg.host: {Insecure: true}}})
	if err := c.Push(ctx, reg.host+"/pushed/other:v2", img); err != nil {
		t.Errorf("push with insecure config: %v", err)
	}

	if err := c.Push(ctx, "Bad Ref", img); err == nil || !strings.Contains(err.Error(), "invalid image reference") {
		t.Errorf("push to an invalid ref: %v", err)
	}
	dead := deadAddr(t)
	if err := c.Push(ctx, dead+"/x:1", img); err == nil || !strings.HasPrefix(err.Error(), "push "+dead+"/x:1: ") {
		t.Errorf("push to a dead registry: %v", err)
	}
}
