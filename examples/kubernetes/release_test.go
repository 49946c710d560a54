package kubernetes

import (
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
)

// jobContainer returns Job name of objs and its container named strata.
func jobContainer(t *testing.T, objs []object, name string) (*batchv1.Job, *corev1.Container) {
	t.Helper()
	job := find[*batchv1.Job](t, objs, name)
	for i := range job.Spec.Template.Spec.Containers {
		if c := &job.Spec.Template.Spec.Containers[i]; c.Name == "strata" {
			return job, c
		}
	}
	t.Fatalf("Job %s has no container named strata", name)
	return nil, nil
}

func readFile(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestReleaseJob checks the sharded release: an Indexed Job with one pod
// per platform, each running shard.sh from the ConfigMap release.sh makes
// of it, with every variable shard.sh needs, a shared registry cache,
// a push by digest, and the digest where release.sh reads it.
func TestReleaseJob(t *testing.T) {
	objs := manifests(t)
	job, c := jobContainer(t, objs, "strata-release")
	spec := job.Spec
	platforms := strings.Fields(envValue(c, "PLATFORMS"))
	if spec.CompletionMode == nil || *spec.CompletionMode != batchv1.IndexedCompletion {
		t.Errorf("completionMode must be Indexed (JOB_COMPLETION_INDEX picks the platform)")
	}
	if spec.Completions == nil || int(*spec.Completions) != len(platforms) || spec.Parallelism == nil || *spec.Parallelism != *spec.Completions {
		t.Errorf("completions and parallelism must both be %d, the number of PLATFORMS %q", len(platforms), platforms)
	}
	if !slices.Equal(c.Command, []string{"sh", "/scripts/shard.sh"}) {
		t.Errorf("command %q, want sh /scripts/shard.sh", c.Command)
	}
	pod := &job.Spec.Template.Spec
	_, v := mountOf(pod, c, "/scripts")
	if v == nil || v.ConfigMap == nil || v.ConfigMap.Name != "strata-release-scripts" {
		t.Fatalf("/scripts is not the strata-release-scripts ConfigMap")
	}
	release := readFile(t, "release.sh")
	if !strings.Contains(release, "create configmap strata-release-scripts --from-file=shard.sh=") {
		t.Errorf("release.sh does not make the strata-release-scripts ConfigMap of shard.sh")
	}
	shard := readFile(t, "shard.sh")
	// every variable shard.sh takes without a default is set in the pod
	// (JOB_COMPLETION_INDEX by Kubernetes)
	for _, m := range regexp.MustCompile(`\$\{?([A-Z_]+)\}?`).FindAllStringSubmatch(shard, -1) {
		v := m[1]
		if strings.Contains(shard, "${"+v+":-") || v == "JOB_COMPLETION_INDEX" {
			continue
		}
		if envValue(c, v) == "" {
			t.Errorf("shard.sh uses $%s, which the pod does not set", v)
		}
	}
	if envValue(c, "STRATA_ISOLATION") != "chroot" {
		t.Errorf("STRATA_ISOLATION must be chroot in the unprivileged pod")
	}
	cmds := strataCommands(shard)
	if len(cmds) != 1 || cmds[0].sub != "build" {
		t.Fatalf("shard.sh: want one strata build, have %d commands", len(cmds))
	}
	checkFlagsExist(t, "shard.sh", cmds)
	checkCacheFlags(t, cmds[0], true)
	out := csvFields(strings.Join(cmds[0].flags["output"], ""))
	if out["type"] != "registry" || out["push-by-digest"] != "true" || out["name"] != "$IMAGE_REPO" {
		t.Errorf("shard.sh --output %v: want type=registry,name=$IMAGE_REPO,push-by-digest=true", out)
	}
	if len(cmds[0].flags["platform"]) != 1 || len(cmds[0].flags["metadata-file"]) != 1 {
		t.Errorf("shard.sh must build one --platform and write --metadata-file")
	}
	if c.TerminationMessagePath != "/dev/termination-log" || c.TerminationMessagePolicy != corev1.TerminationMessageReadFile ||
		!strings.Contains(shard, `"${TERMINATION_LOG:-/dev/termination-log}"`) {
		t.Errorf("shard.sh's digest does not go to the container's termination message")
	}
	if !strings.Contains(release, `containerStatuses[?(@.name=="strata")].state.terminated.message`) || !strings.Contains(release, "job-name=strata-release") {
		t.Errorf("release.sh does not read the strata containers' termination messages of strata-release")
	}
}

// TestReleaseJoinJob checks the join: release.sh fills in both
// placeholders, and the strata command joins the shards by digest and
// pushes the index.
func TestReleaseJoinJob(t *testing.T) {
	_, c := jobContainer(t, manifests(t), "strata-release-join")
	if envValue(c, "IMAGE") != "@IMAGE@" || envValue(c, "SHARDS") != "@SHARDS@" {
		t.Errorf("IMAGE and SHARDS must be the placeholders release.sh fills in")
	}
	release := readFile(t, "release.sh")
	for _, p := range []string{"s|@IMAGE@|", "s|@SHARDS@|", "release-join-job.yaml", "job/strata-release-join"} {
		if !strings.Contains(release, p) {
			t.Errorf("release.sh lacks %q", p)
		}
	}
	if len(c.Command) != 3 || c.Command[0] != "sh" || c.Command[1] != "-c" {
		t.Fatalf("command %q: want sh -c SCRIPT", c.Command)
	}
	cmds := strataCommands(c.Command[2])
	checkFlagsExist(t, "release-join-job.yaml", cmds)
	if len(cmds) != 1 || cmds[0].sub != "manifest" || len(cmds[0].args) < 2 || cmds[0].args[0] != "create" ||
		cmds[0].flags["push"] == nil || len(cmds[0].flags["t"]) != 1 || cmds[0].args[len(cmds[0].args)-1] != "$SHARDS" {
		t.Errorf("the join command %q: want strata manifest create --push -t \"$IMAGE\" $SHARDS", c.Command[2])
	}
}
