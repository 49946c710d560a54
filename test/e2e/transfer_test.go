package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/strata-build/strata/test/internal/testenv"
)

// TestSaveLoad saves an image (with a whiteout in it) to a docker archive,
// loads it into a fresh store and runs it there.
func TestSaveLoad(t *testing.T) {
	t.Parallel()
	store := suite.NewBusyboxStore(t)
	ctx := suite.WriteFiles(t, map[string]string{"Dockerfile": "FROM busybox\nRUN rm /etc/group && echo saved > /s\nCMD [\"cat\", \"/s\"]\n"})
	strata(t, store, "build", "-t", "saveme:v1", ctx)
	archive := filepath.Join(suite.TempDir(t), "saveme.tar")
	strata(t, store, "save", "-o", archive, "saveme:v1")
	if fi, err := os.Stat(archive); err != nil || fi.Size() == 0 {
		t.Fatalf("strata save wrote no archive: %v", err)
	}
	if img := testenv.ReadDockerArchive(t, archive); img.Name != "saveme:v1" || len(img.Layers) != 2 {
		t.Errorf("saved archive: RepoTags[0] = %q, %d layers; want saveme:v1 with 2 layers", img.Name, len(img.Layers))
	}

	fresh := suite.NewStore(t)
	r := strata(t, fresh, "load", "-i", archive)
	if !strings.Contains(r.Stdout, "saveme:v1") {
		t.Errorf("strata load should name the loaded image:\n%s", r)
	}
	if r := strata(t, fresh, "run", "saveme:v1"); strings.TrimSpace(r.Stdout) != "saved" {
		t.Errorf("run of the loaded image: want \"saved\":\n%s", r)
	}
	if r := strataRun(t, fresh, runOpts{}, "run", "saveme:v1", "cat", "/etc/group"); r.Code == 0 {
		t.Errorf("the loaded image lost the whiteout of /etc/group:\n%s", r)
	}
	if r := strata(t, fresh, "images"); !strings.Contains(r.Stdout, "saveme") || !strings.Contains(r.Stdout, "v1") {
		t.Errorf("strata images after load:\n%s", r)
	}
}

// TestImportDirectory imports a directory as an image with an ENTRYPOINT set
// by --change, and runs it with arguments.
func TestImportDirectory(t *testing.T) {
	t.Parallel()
	store := suite.NewStore(t)
	dir := suite.TempDir(t)
	if err := os.MkdirAll(filepath.Join(dir, "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(suite.BusyboxRoot, "bin", "busybox"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "bin", "busybox"), b, 0o755); err != nil {
		t.Fatal(err)
	}
	r := strata(t, store, "import", "--change", `ENTRYPOINT ["/bin/busybox","echo"]`, dir, "echoer:latest")
	if !strings.HasPrefix(strings.TrimSpace(r.Stdout), "sha256:") {
		t.Errorf("strata import should print the image ID:\n%s", r)
	}
	r = strata(t, store, "run", "echoer", "hello", "from", "import")
	if strings.TrimSpace(r.Stdout) != "hello from import" {
		t.Errorf("run of the imported image: want \"hello from import\":\n%s", r)
	}
	r = strata(t, store, "version")
	if !strings.Contains(r.Stdout, "strata") {
		t.Errorf("strata version:\n%s", r)
	}
}
