package kubernetes

import (
	"bytes"
	"os"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// The CI examples live in ../ci; these types are the part of each system's
// schema they use. Decoding with KnownFields makes any other key (a typo
// such as runs_on) an error, and YAML 1.2 keeps GitHub's "on" a string.

type ghWorkflow struct {
	Name        string            `yaml:"name"`
	On          map[string]any    `yaml:"on"`
	Permissions map[string]string `yaml:"permissions"`
	Env         map[string]string `yaml:"env"`
	Jobs        map[string]ghJob  `yaml:"jobs"`
}

type ghJob struct {
	RunsOn         string   `yaml:"runs-on"`
	TimeoutMinutes int      `yaml:"timeout-minutes"`
	Steps          []ghStep `yaml:"steps"`
}

type ghStep struct {
	Name string            `yaml:"name"`
	If   string            `yaml:"if"`
	Uses string            `yaml:"uses"`
	With map[string]string `yaml:"with"`
	Run  string            `yaml:"run"`
	Env  map[string]string `yaml:"env"`
}

type glJob struct {
	Stage string `yaml:"stage"`
	Image struct {
		Name       string   `yaml:"name"`
		Entrypoint []string `yaml:"entrypoint"`
	} `yaml:"image"`
	Tags      []string            `yaml:"tags"`
	Variables map[string]string   `yaml:"variables"`
	Script    []string            `yaml:"script"`
	Rules     []map[string]string `yaml:"rules"`
}

// decodeYAML decodes one YAML document strictly into v.
func decodeYAML(t *testing.T, file string, v any) {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	d := yaml.NewDecoder(bytes.NewReader(b))
	d.KnownFields(true)
	if err := d.Decode(v); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
}

// checkCacheFlags: registry cache from one ref, and to the same ref with
// mode=max where the command exports it.
func checkCacheFlags(t *testing.T, c command, export bool) {
	t.Helper()
	from := csvFields(strings.Join(c.flags["cache-from"], ""))
	if len(c.flags["cache-from"]) != 1 || from["type"] != "registry" || from["ref"] == "" {
		t.Errorf("%s: want one --cache-from type=registry,ref=...", c.line)
	}
	if !export {
		return
	}
	to := csvFields(strings.Join(c.flags["cache-to"], ""))
	if len(c.flags["cache-to"]) != 1 || to["type"] != "registry" || to["mode"] != "max" || to["ref"] != from["ref"] {
		t.Errorf("%s: want --cache-to type=registry,ref=%s,mode=max", c.line, from["ref"])
	}
}

func TestGitHubActions(t *testing.T) {
	const file = "../ci/github-actions.yml"
	var wf ghWorkflow
	decodeYAML(t, file, &wf)
	if _, ok := wf.On["push"]; !ok || len(wf.Jobs) == 0 {
		t.Fatalf("%s: want on.push and jobs", file)
	}
	var cmds []command
	for name, job := range wf.Jobs {
		if job.RunsOn != "ubuntu-latest" || len(job.Steps) == 0 {
			t.Errorf("job %s: runs-on %q with %d steps, want ubuntu-latest and steps", name, job.RunsOn, len(job.Steps))
		}
		installed := false
		for i, s := range job.Steps {
			if (s.Uses == "") == (s.Run == "") {
				t.Errorf("job %s step %d: want exactly one of uses and run", name, i)
			}
			if s.Uses != "" && !strings.Contains(s.Uses, "@") {
				t.Errorf("job %s step %d: %s has no version", name, i, s.Uses)
			}
			installed = installed || strings.Contains(s.Run, "go install") && strings.Contains(s.Run, "github.com/strata-build/strata/cmd/strata@")
			found := strataCommands(s.Run)
			if len(found) > 0 && !installed {
				t.Errorf("job %s step %d runs strata before a step installs it", name, i)
			}
			for _, line := range strings.Split(s.Run, "\n") {
				if w := shellWords(line); len(w) > 1 && w[0] == "sudo" && w[1] == "strata" {
					t.Errorf("job %s step %d: strata runs as the runner user, not with sudo: %s", name, i, line)
				}
			}
			for _, c := range found {
				checkGitHubBuild(t, c, s.If)
			}
			cmds = append(cmds, found...)
		}
	}
	if len(cmds) < 2 {
		t.Errorf("%s: %d strata commands, want a build for pushes and one for pull requests", file, len(cmds))
	}
	checkFlagsExist(t, file, cmds)
}

// checkGitHubBuild: rootless, registry cache; a push build exports the cache.
func checkGitHubBuild(t *testing.T, c command, cond string) {
	t.Helper()
	if c.sub != "build" || !c.global("isolation") || c.flags["isolation"][0] != "rootless" {
		t.Errorf("%s: want strata --isolation=rootless build", c.line)
	}
	_, push := c.flags["push"]
	if push != strings.Contains(cond, "'push'") {
		t.Errorf("%s: pushes=%v under if: %q; want a push only for push events", c.line, push, cond)
	}
	checkCacheFlags(t, c, push)
}

func TestGitLabCI(t *testing.T) {
	const file = "../ci/gitlab-ci.yml"
	var top map[string]yaml.Node
	decodeYAML(t, file, &top)
	var stages []string
	if n, ok := top["stages"]; !ok || n.Decode(&stages) != nil {
		t.Fatalf("%s: no stages list", file)
	}
	n, ok := top["build-image"]
	if !ok {
		t.Fatalf("%s: no build-image job", file)
	}
	var job glJob
	b, err := yaml.Marshal(&n)
	if err != nil {
		t.Fatal(err)
	}
	d := yaml.NewDecoder(bytes.NewReader(b))
	d.KnownFields(true)
	if err := d.Decode(&job); err != nil {
		t.Fatalf("%s: build-image: %v", file, err)
	}
	if !slices.Contains(stages, job.Stage) || job.Image.Name == "" || !slices.Equal(job.Image.Entrypoint, []string{""}) {
		t.Errorf("build-image: stage %q (of %q), image %q, entrypoint %q: want a listed stage, an image, entrypoint [\"\"]", job.Stage, stages, job.Image.Name, job.Image.Entrypoint)
	}
	script := strings.Join(job.Script, "\n")
	if job.Variables["DOCKER_CONFIG"] == "" || !strings.Contains(script, `"$DOCKER_CONFIG/config.json"`) {
		t.Errorf("build-image: the script must write the credentials to $DOCKER_CONFIG/config.json")
	}
	cmds := strataCommands(script)
	if len(cmds) != 1 {
		t.Fatalf("build-image: %d strata commands, want 1", len(cmds))
	}
	c := cmds[0]
	if c.sub != "build" || !c.global("isolation") || c.flags["isolation"][0] != "chroot" {
		t.Errorf("%s: want strata --isolation=chroot build", c.line)
	}
	if out := csvFields(strings.Join(c.flags["output"], "")); out["type"] != "registry" || out["name"] == "" {
		t.Errorf("%s: want --output type=registry,name=...", c.line)
	}
	checkCacheFlags(t, c, true)
	checkFlagsExist(t, file, cmds)
}
