package testenv

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
)

// ModuleRoot is the strata module root: the nearest folder at or above the
// working directory (a test's package folder) that holds go.mod and
// cmd/strata.
func ModuleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		_, errMod := os.Stat(filepath.Join(dir, "go.mod"))
		_, errCmd := os.Stat(filepath.Join(dir, "cmd", "strata"))
		if errMod == nil && errCmd == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("cannot find the strata module root (go.mod and cmd/strata) above the working directory")
		}
		dir = parent
	}
}

// BuildStrata builds ./cmd/strata of the module at root into out, with
// more environment for go build (e.g. CGO_ENABLED=0 for a static binary).
func BuildStrata(ctx context.Context, root, out string, env ...string) error {
	cmd := exec.CommandContext(ctx, "go", "build", "-o", out, "./cmd/strata")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), env...)
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build ./cmd/strata: %w\n%s", err, b)
	}
	return nil
}
