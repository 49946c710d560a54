package report

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/strata-build/strata/internal/image"
	"github.com/strata-build/strata/internal/progress"
)

// sample records the events of a two-stage build through a real Printer.
func sample(t *testing.T) Data {
	t.Helper()
	p := progress.New(nil, true)
	p.Record()
	start := time.Now()
	a := p.StartStage("builder", "[builder 1/2] FROM golang")
	a.Done()
	b := p.StartStage("builder", "[builder 2/2] RUN go build <script>")
	b.Write([]byte("compiling\n"))
	b.SetReason("changed: source server.go")
	b.SetEmulated("linux/arm64")
	b.Done()
	c := p.StartStage("app", "[app 1/2] FROM scratch")
	c.Done()
	d := p.StartStage("app", "[app 2/2] COPY --from=builder /server /")
	d.MarkCached()
	d.Done()
	p.Logf("a message")
	img := &image.Image{}
	img.Config.Config.Entrypoint = []string{"/server"}
	img.Config.History = []v1.History{{CreatedBy: "COPY /server / # buildkit"}}
	img.Layers = []image.Layer{{Digest: "sha256:aaaa", Size: 2 << 20}}
	return Data{Title: "seed", Started: start, Finished: time.Now(), Events: p.Events(), Image: img, Isolation: "rootless (user namespace)"}
}

func TestWrite(t *testing.T) {
	var b bytes.Buffer
	if err := Write(&b, sample(t)); err != nil {
		t.Fatal(err)
	}
	html := b.String()
	if n := strings.Count(html, `<div class="bar `); n != 4 {
		t.Errorf("%d timeline bars, want 4", n)
	}
	if !regexp.MustCompile(`<span id="emulated">1 emulated \([0-9.]+s\)</span>`).MatchString(html) || strings.Count(html, `<span class="emu">emulated linux/arm64</span>`) < 1 {
		t.Error("the report does not show the emulated step and its time")
	}
	for _, want := range []string{"miss: changed: source server.go", ">hit<", "COPY /server / # buildkit", "2.1MB", `&#34;/server&#34;`, "&lt;script&gt;", "compiling", "a message", "3 ran", "1 cached", `<span id="isolation">isolation rootless (user namespace)</span>`} {
		if !strings.Contains(html, want) {
			t.Errorf("report lacks %q", want)
		}
	}
	if regexp.MustCompile(`(?i)(src|href)="https?://`).MatchString(html) {
		t.Error("the report loads external resources")
	}
}

func TestWriteFailedBuild(t *testing.T) {
	d := sample(t)
	d.Image = nil
	d.Error = "Dockerfile:3: RUN false: exit code: 1"
	var b bytes.Buffer
	if err := Write(&b, d); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), `id="build-error"`) || strings.Contains(b.String(), `id="layers"`) {
		t.Error("a failed build's report shows no error or shows layers")
	}
}

// TestChromium loads the report in headless Chromium: no console errors,
// the script ran, and the timeline shows every step.
func TestChromium(t *testing.T) {
	bin := ""
	for _, c := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(c); err == nil {
			bin = p
			break
		}
	}
	if bin == "" {
		t.Skip("chromium is not installed (apt-get install chromium)")
	}
	dir := t.TempDir()
	page := filepath.Join(dir, "report.html")
	f, err := os.Create(page)
	if err != nil {
		t.Fatal(err)
	}
	if err := Write(f, sample(t)); err != nil {
		t.Fatal(err)
	}
	f.Close()
	cmd := exec.Command(bin, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--user-data-dir="+filepath.Join(dir, "profile"), "--enable-logging=stderr", "--v=0",
		"--virtual-time-budget=2000", "--dump-dom", "file://"+page)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	done := make(chan error, 1)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("chromium: %v\n%s", err, stderr.String())
		}
	case <-time.After(60 * time.Second):
		cmd.Process.Kill()
		<-done
		t.Fatal(errors.New("chromium did not finish in 60 s"))
	}
	dom := stdout.String()
	if !strings.Contains(dom, `data-ready="1"`) {
		t.Fatalf("the page's script did not run; DOM:\n%.2000s\nlog:\n%s", dom, stderr.String())
	}
	if !strings.Contains(dom, `data-bars="4"`) {
		t.Errorf("the timeline does not show the 4 steps; DOM:\n%.2000s", dom)
	}
	for _, l := range strings.Split(stderr.String(), "\n") {
		if strings.Contains(l, "CONSOLE") || strings.Contains(l, "Uncaught") {
			t.Errorf("console output: %s", l)
		}
	}
}

func TestWriteFile(t *testing.T) {
	d := sample(t)
	path := filepath.Join(t.TempDir(), "report.html")
	if err := WriteFile(path, d); err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if err := Write(&b, d); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(path); !bytes.Equal(got, b.Bytes()) {
		t.Error("WriteFile wrote something else than Write")
	}
	if err := WriteFile(filepath.Join(t.TempDir(), "missing", "r.html"), d); err == nil {
		t.Error("WriteFile into a missing folder: want an error")
	}
}
