package conformance

// The helpers a feature case can ask for through placeholders in its args and
// env files: a local HTTP server, a git daemon, an SSH agent socket and an OCI
// layout. Everything listens on 127.0.0.1 only and is stopped (by PID for
// processes) when the case ends.

import (
	"bytes"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/strata-build/strata/test/internal/testenv"
)

// wwwLastModified is the Last-Modified of every file the test HTTP server sends.
var wwwLastModified = time.Date(2015, 10, 21, 7, 28, 0, 0, time.UTC)

// gitDate is the author and committer date of the test repositories' commits.
const gitDate = "2020-01-02T03:04:05Z"

// placeholders expands {{CASE}}, {{HTTP}}, {{GIT}}, {{SSH}} and {{OCI}},
// starting each helper the first time it is named.
type placeholders struct {
	t                   *testing.T
	f                   *featureRun
	http, git, ssh, oci string
}

func (p *placeholders) expand(s string) string {
	t := p.t
	s = strings.ReplaceAll(s, "{{GOARCH}}", runtime.GOARCH)
	if strings.Contains(s, "{{CASE}}") {
		s = strings.ReplaceAll(s, "{{CASE}}", p.f.staged)
	}
	if strings.Contains(s, "{{HTTP}}") {
		if p.http == "" {
			p.http = startHTTPServer(t, filepath.Join(p.f.src, "www"))
		}
		s = strings.ReplaceAll(s, "{{HTTP}}", p.http)
	}
	if strings.Contains(s, "{{GIT}}") {
		if p.git == "" {
			p.git = startGitDaemon(t, filepath.Join(p.f.src, "repos"), filepath.Join(p.f.dir, "git"))
		}
		s = strings.ReplaceAll(s, "{{GIT}}", p.git)
	}
	if strings.Contains(s, "{{SSH}}") {
		if p.ssh == "" {
			p.ssh = startSSHAgent(t, filepath.Join(p.f.dir, "ssh"))
		}
		s = strings.ReplaceAll(s, "{{SSH}}", p.ssh)
	}
	if strings.Contains(s, "{{OCI}}") {
		if p.oci == "" {
			p.oci = ociLayoutForFeatures(t)
		}
		s = strings.ReplaceAll(s, "{{OCI}}", p.oci)
	}
	return s
}

// startHTTPServer serves dir on 127.0.0.1 with a fixed Last-Modified and
// returns its base URL; it is closed when the test ends.
func startHTTPServer(t *testing.T, dir string) string {
	t.Helper()
	if _, err := os.Stat(dir); err != nil {
		t.Fatalf("{{HTTP}} needs a www/ folder: %v", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		clean := path.Clean("/" + r.URL.Path)
		fh, err := os.Open(filepath.Join(dir, filepath.FromSlash(clean)))
		if err != nil {
			http.NotFound(w, r)
			return
		}
		defer fh.Close()
		if st, err := fh.Stat(); err != nil || st.IsDir() {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/octet-stream")
		http.ServeContent(w, r, path.Base(clean), wwwLastModified, fh)
	})
	srv := &http.Server{Handler: handler, ReadHeaderTimeout: 10 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(ln)
	}()
	t.Cleanup(func() {
		_ = srv.Close()
		<-done
	})
	return "http://" + ln.Addr().String()
}

// freePort finds a free TCP port on 127.0.0.1.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func waitFor(t *testing.T, what string, ready func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !ready() {
		if time.Now().After(deadline) {
			t.Fatalf("%s did not become ready in 10s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// stopProcess kills a process the test started, by its PID, and reaps it.
func stopProcess(cmd *exec.Cmd) {
	if cmd.Process != nil {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	}
}

// startGitDaemon makes a repository of every folder repos/NAME (one commit
// with fixed dates, tagged v1; a folder repos/NAME.v2 is committed on top of
// it as the branch head), serves them with git daemon on 127.0.0.1 and returns
// git://127.0.0.1:PORT.
func startGitDaemon(t *testing.T, reposDir, work string) string {
	t.Helper()
	entries, err := os.ReadDir(reposDir)
	if err != nil {
		t.Fatalf("{{GIT}} needs a repos/ folder: %v", err)
	}
	home := filepath.Join(work, "home")
	if err := os.MkdirAll(home, 0o755); err != nil {
		t.Fatal(err)
	}
	gitEnv := suite.Environ("HOME="+home, "GIT_CONFIG_NOSYSTEM=1", "GIT_CONFIG_GLOBAL=/dev/null",
		"GIT_AUTHOR_NAME=Feature Test", "GIT_AUTHOR_EMAIL=test@example.invalid",
		"GIT_COMMITTER_NAME=Feature Test", "GIT_COMMITTER_EMAIL=test@example.invalid",
		"GIT_AUTHOR_DATE="+gitDate, "GIT_COMMITTER_DATE="+gitDate)
	git := func(dir string, args ...string) {
		t.Helper()
		cmd := exec.Command("git", append([]string{"-c", "commit.gpgsign=false", "-c", "tag.gpgsign=false",
			"-c", "init.defaultBranch=main"}, args...)...)
		cmd.Dir = dir
		cmd.Env = gitEnv
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("git %s in %s: %v\n%s", strings.Join(args, " "), dir, err, out)
		}
	}
	base := filepath.Join(work, "repos")
	for _, e := range entries {
		if !e.IsDir() || strings.HasSuffix(e.Name(), ".v2") {
			continue
		}
		repo := filepath.Join(base, e.Name())
		if err := stageTree(filepath.Join(reposDir, e.Name()), repo, nil); err != nil {
			t.Fatal(err)
		}
		git(repo, "init", "-q")
		git(repo, "add", "-A")
		git(repo, "commit", "-q", "-m", "v1")
		git(repo, "tag", "v1")
		if v2 := filepath.Join(reposDir, e.Name()+".v2"); fileExists(v2) {
			git(repo, "rm", "-q", "-r", ".")
			if err := stageTree(v2, repo, func(rel string) bool { return rel == ".git" }); err != nil {
				t.Fatal(err)
			}
			git(repo, "add", "-A")
			git(repo, "commit", "-q", "-m", "v2")
		}
	}
	execPath, err := exec.Command("git", "--exec-path").Output()
	if err != nil {
		t.Fatalf("git --exec-path: %v", err)
	}
	daemon := filepath.Join(strings.TrimSpace(string(execPath)), "git-daemon")
	port := freePort(t)
	cmd := exec.Command(daemon, "--reuseaddr", "--export-all", "--informative-errors",
		"--base-path="+base, "--listen=127.0.0.1", fmt.Sprintf("--port=%d", port))
	cmd.Env = gitEnv
	var logBuf bytes.Buffer
	cmd.Stdout, cmd.Stderr = &logBuf, &logBuf
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting git daemon: %v", err)
	}
	t.Cleanup(func() { stopProcess(cmd) })
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	waitFor(t, "git daemon on "+addr, func() bool {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	return "git://" + addr
}

// startSSHAgent starts `ssh-agent -D -a SOCK` (or, without ssh-agent, a
// python listener on a unix socket) and returns the socket path.
func startSSHAgent(t *testing.T, dir string) string {
	t.Helper()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "agent.sock")
	var cmd *exec.Cmd
	if p, err := exec.LookPath("ssh-agent"); err == nil {
		cmd = exec.Command(p, "-D", "-a", sock)
	} else {
		cmd = exec.Command("python3", "-c", `import socket,sys
s=socket.socket(socket.AF_UNIX); s.bind(sys.argv[1]); s.listen(8)
while True:
    c,_=s.accept(); c.close()`, sock)
	}
	var logBuf bytes.Buffer
	cmd.Stdout, cmd.Stderr = &logBuf, &logBuf
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting an SSH agent: %v", err)
	}
	t.Cleanup(func() { stopProcess(cmd) })
	waitFor(t, "SSH agent socket "+sock, func() bool {
		c, err := net.Dial("unix", sock)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	// Open to all, so that a builder that hands the host socket to RUN as it
	// is (instead of the documented 0600 root socket) is noticed.
	if err := os.Chmod(sock, 0o777); err != nil {
		t.Fatal(err)
	}
	return sock
}

var featuresOCI struct {
	once sync.Once
	dir  string
	err  error
}

// ociLayoutMarker is the file that only the {{OCI}} layout's image holds.
const ociLayoutMarker = "from the oci layout\n"

// ociLayoutForFeatures returns an OCI image layout folder (made once) holding
// one image, tagged latest: the busybox files plus /oci-marker.txt. It is
// imported under a throwaway name, saved with `strata save --format oci` and
// removed from the store again, so a build can only get it from the layout.
func ociLayoutForFeatures(t *testing.T) string {
	t.Helper()
	featuresOCI.once.Do(func() {
		featuresOCI.dir, featuresOCI.err = makeOCILayout(filepath.Join(suite.WorkDir, "oci"))
	})
	if featuresOCI.err != nil {
		t.Fatalf("making the OCI layout: %v", featuresOCI.err)
	}
	return featuresOCI.dir
}

func makeOCILayout(work string) (string, error) {
	rootfs := filepath.Join(work, "rootfs")
	if err := testenv.KitRoot(rootfs, suite.Busybox); err != nil {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(rootfs, "oci-marker.txt"), []byte(ociLayoutMarker), 0o644); err != nil {
		return "", err
	}
	strata := func(args ...string) error {
		if r := suite.Run(suite.store, testenv.RunOpts{}, args...); r.Code != 0 || r.Err != nil {
			return fmt.Errorf("%s", r)
		}
		return nil
	}
	const name = "features-oci-source:latest"
	if err := strata(testenv.ImportArgs(rootfs, name, testenv.ImagePATH)...); err != nil {
		return "", err
	}
	archive := filepath.Join(work, "layout.tar")
	if err := strata("save", "--format", "oci", "-o", archive, name); err != nil {
		return "", err
	}
	if err := strata("rmi", name); err != nil {
		return "", err
	}
	dir := filepath.Join(work, "layout")
	if err := testenv.UntarPlain(archive, dir); err != nil {
		return "", err
	}
	return dir, os.RemoveAll(rootfs)
}
