package kubernetes

import (
	"bytes"
	"encoding/json"
	"path"
	"regexp"
	"slices"
	"strings"
	"testing"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
)

// buildJob is the Job of build-job.yaml and its strata container.
func buildJob(t *testing.T) (objs []object, job *batchv1.Job, c *corev1.Container) {
	t.Helper()
	objs = manifests(t)
	job = find[*batchv1.Job](t, objs, "strata-build")
	for i := range job.Spec.Template.Spec.Containers {
		if job.Spec.Template.Spec.Containers[i].Name == "strata" {
			return objs, job, &job.Spec.Template.Spec.Containers[i]
		}
	}
	t.Fatal("Job strata-build has no container named strata")
	return nil, nil, nil
}

// allContainers returns the init containers and the containers of spec.
func allContainers(spec *corev1.PodSpec) []*corev1.Container {
	var cs []*corev1.Container
	for i := range spec.InitContainers {
		cs = append(cs, &spec.InitContainers[i])
	}
	for i := range spec.Containers {
		cs = append(cs, &spec.Containers[i])
	}
	return cs
}

// envValue is the literal value of the container's variable name ("" when unset).
func envValue(c *corev1.Container, name string) string {
	for _, e := range c.Env {
		if e.Name == name {
			return e.Value
		}
	}
	return ""
}

// mountOf returns the volume mounted at dir in c (nil when none is).
func mountOf(spec *corev1.PodSpec, c *corev1.Container, dir string) (*corev1.VolumeMount, *corev1.Volume) {
	for i, m := range c.VolumeMounts {
		if path.Clean(m.MountPath) != path.Clean(dir) {
			continue
		}
		for j := range spec.Volumes {
			if spec.Volumes[j].Name == m.Name {
				return &c.VolumeMounts[i], &spec.Volumes[j]
			}
		}
	}
	return nil, nil
}

// TestPodIsUnprivileged checks each promise of the pod template that Pod
// Security's baseline level does not check by itself: no escalation,
// RuntimeDefault seccomp, resources, only pod-local volumes, no API token.
func TestPodIsUnprivileged(t *testing.T) {
	for _, tpl := range podTemplates(manifests(t)) {
		s := tpl.spec
		if s.SecurityContext == nil || s.SecurityContext.SeccompProfile == nil || s.SecurityContext.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
			t.Errorf("%s: the pod's seccompProfile must be RuntimeDefault", tpl.where)
		}
		if s.AutomountServiceAccountToken == nil || *s.AutomountServiceAccountToken {
			t.Errorf("%s: automountServiceAccountToken must be false (a build needs no API access)", tpl.where)
		}
		for _, v := range s.Volumes {
			if v.EmptyDir == nil && v.Secret == nil && v.ConfigMap == nil {
				t.Errorf("%s: volume %s is not an emptyDir, Secret or ConfigMap", tpl.where, v.Name)
			}
		}
		for _, c := range allContainers(s) {
			sc := c.SecurityContext
			if sc == nil || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
				t.Errorf("%s: container %s: allowPrivilegeEscalation must be false", tpl.where, c.Name)
			}
			if sc == nil || sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) {
				t.Errorf("%s: container %s: capabilities must drop ALL (and add back what it needs)", tpl.where, c.Name)
			}
			for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory, corev1.ResourceEphemeralStorage} {
				if _, ok := c.Resources.Requests[r]; !ok {
					t.Errorf("%s: container %s: no %s request", tpl.where, c.Name, r)
				}
				if _, ok := c.Resources.Limits[r]; !ok {
					t.Errorf("%s: container %s: no %s limit", tpl.where, c.Name, r)
				}
			}
			checkMounts(t, tpl.where, s, c)
			checkVarRefs(t, tpl.where, c)
		}
	}
}

// checkMounts: every mount names a volume of the pod.
func checkMounts(t *testing.T, where string, s *corev1.PodSpec, c *corev1.Container) {
	t.Helper()
	for _, m := range c.VolumeMounts {
		if !slices.ContainsFunc(s.Volumes, func(v corev1.Volume) bool { return v.Name == m.Name }) {
			t.Errorf("%s: container %s mounts %s: no such volume", where, c.Name, m.Name)
		}
	}
}

// varRef is a $(NAME) reference, which the kubelet expands in command and
// args; a reference to an undefined variable is left as it is, silently.
var varRef = regexp.MustCompile(`\$\(([A-Za-z_][A-Za-z0-9_]*)\)`)

// checkVarRefs: every $(NAME) in command and args is a variable of c.
func checkVarRefs(t *testing.T, where string, c *corev1.Container) {
	t.Helper()
	for _, arg := range slices.Concat(c.Command, c.Args) {
		for _, m := range varRef.FindAllStringSubmatch(arg, -1) {
			if !slices.ContainsFunc(c.Env, func(e corev1.EnvVar) bool { return e.Name == m[1] }) {
				t.Errorf("%s: container %s: %q refers to $(%s), which it does not define", where, c.Name, arg, m[1])
			}
		}
	}
}

// flagValue returns the value of --name=VALUE in args ("" when absent).
func flagValue(args []string, name string) string {
	for _, a := range args {
		if v, ok := strings.CutPrefix(a, "--"+name+"="); ok {
			return v
		}
	}
	return ""
}

// csvFields parses strata's key=value,key=value option syntax.
func csvFields(s string) map[string]string {
	m := map[string]string{}
	for _, kv := range strings.Split(s, ",") {
		k, v, _ := strings.Cut(kv, "=")
		m[k] = v
	}
	return m
}

// TestBuildCommand checks strata's command line in the Job: chroot
// isolation, a registry output, registry cache to and from one ref with
// mode=max, and a context inside what the init container fetched.
func TestBuildCommand(t *testing.T) {
	_, job, c := buildJob(t)
	if !slices.Equal(c.Command, []string{"strata"}) {
		t.Errorf("command %q, want [strata]", c.Command)
	}
	words := slices.Concat(c.Command, c.Args)
	checkFlagsExist(t, "build-job.yaml", []command{parseCommand(strings.Join(words, " "), words)})
	if i := slices.Index(c.Args, "build"); i < 0 || !slices.Contains(c.Args[:i], "--isolation=chroot") {
		t.Errorf("args %q: want --isolation=chroot before build", c.Args)
	}
	out := csvFields(flagValue(c.Args, "output"))
	if out["type"] != "registry" || out["name"] != "$(IMAGE)" {
		t.Errorf("--output %v: want type=registry,name=$(IMAGE)", out)
	}
	to, from := csvFields(flagValue(c.Args, "cache-to")), csvFields(flagValue(c.Args, "cache-from"))
	if to["type"] != "registry" || to["mode"] != "max" || to["ref"] == "" {
		t.Errorf("--cache-to %v: want type=registry,ref=...,mode=max", to)
	}
	if from["type"] != "registry" || from["ref"] != to["ref"] {
		t.Errorf("--cache-from %v: want type=registry and the --cache-to ref %q", from, to["ref"])
	}
	if envValue(c, "IMAGE") == envValue(c, "CACHE_REF") {
		t.Errorf("IMAGE and CACHE_REF are both %q: the cache would overwrite the image", envValue(c, "IMAGE"))
	}
	ctxDir := c.Args[len(c.Args)-1]
	spec := &job.Spec.Template.Spec
	if len(spec.InitContainers) != 1 {
		t.Fatalf("%d init containers, want 1 (fetch-context)", len(spec.InitContainers))
	}
	fetch := &spec.InitContainers[0]
	last := fetch.Args[len(fetch.Args)-1]
	_, fetched := mountOf(spec, fetch, last)
	_, built := mountOf(spec, c, strings.TrimSuffix(ctxDir, "/$(CONTEXT_DIR)"))
	if fetched == nil || built == nil || fetched.Name != built.Name || fetched.EmptyDir == nil {
		t.Errorf("the context %s is not in the emptyDir that %s clones into (%s)", ctxDir, fetch.Name, last)
	}
}

// dockerCaps is Docker's (and containerd's) default capability set: what a
// Dockerfile's RUN steps expect. The strata container adds all of it back
// but NET_RAW, which Pod Security's baseline level does not allow.
var dockerCaps = []corev1.Capability{"AUDIT_WRITE", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL",
	"MKNOD", "NET_BIND_SERVICE", "NET_RAW", "SETFCAP", "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT"}

func TestCapabilities(t *testing.T) {
	_, _, c := buildJob(t)
	want := slices.DeleteFunc(slices.Clone(dockerCaps), func(c corev1.Capability) bool { return c == "NET_RAW" })
	got := slices.Sorted(slices.Values(c.SecurityContext.Capabilities.Add))
	if !slices.Equal(got, want) {
		t.Errorf("the strata container adds %q, want Docker's default set less NET_RAW: %q", got, want)
	}
	if sc := c.SecurityContext; sc.RunAsUser == nil || *sc.RunAsUser != 0 {
		t.Errorf("the strata container must run as uid 0 (chroot mode needs it)")
	}
}

// TestStoreAndConfig checks where strata keeps its store and reads its
// credentials and registry configuration, and that those files are right:
// a dockerconfigjson Secret as DOCKER_CONFIG/config.json, a ConfigMap with
// a strata config.json, the store on an emptyDir.
func TestStoreAndConfig(t *testing.T) {
	objs, job, c := buildJob(t)
	spec := &job.Spec.Template.Spec
	if _, v := mountOf(spec, c, envValue(c, "STRATA_ROOT")); v == nil || v.EmptyDir == nil {
		t.Errorf("STRATA_ROOT=%q is not an emptyDir mount", envValue(c, "STRATA_ROOT"))
	}
	_, v := mountOf(spec, c, envValue(c, "DOCKER_CONFIG"))
	if v == nil || v.Secret == nil || len(v.Secret.Items) != 1 || v.Secret.Items[0].Key != corev1.DockerConfigJsonKey || v.Secret.Items[0].Path != "config.json" {
		t.Fatalf("DOCKER_CONFIG=%q: want a Secret volume mapping %s to config.json there", envValue(c, "DOCKER_CONFIG"), corev1.DockerConfigJsonKey)
	}
	sec := find[*corev1.Secret](t, objs, v.Secret.SecretName)
	if sec.Type != corev1.SecretTypeDockerConfigJson {
		t.Errorf("Secret %s has type %q, want %s", sec.Name, sec.Type, corev1.SecretTypeDockerConfigJson)
	}
	var auths struct {
		Auths map[string]json.RawMessage `json:"auths"`
	}
	if err := strictJSON(sec.StringData[corev1.DockerConfigJsonKey], &auths); err != nil || len(auths.Auths) == 0 {
		t.Errorf("Secret %s: %s is no Docker config with auths: %v", sec.Name, corev1.DockerConfigJsonKey, err)
	}
	cfgPath := envValue(c, "STRATA_CONFIG")
	_, v = mountOf(spec, c, path.Dir(cfgPath))
	if v == nil || v.ConfigMap == nil {
		t.Fatalf("STRATA_CONFIG=%q is not in a ConfigMap mount", cfgPath)
	}
	cm := find[*corev1.ConfigMap](t, objs, v.ConfigMap.Name)
	var cfg struct {
		Registries map[string]struct {
			Mirrors  []string `json:"mirrors"`
			Insecure bool     `json:"insecure"`
		} `json:"registries"`
	}
	if err := strictJSON(cm.Data[path.Base(cfgPath)], &cfg); err != nil {
		t.Errorf("ConfigMap %s: %s is no strata registry config: %v", cm.Name, path.Base(cfgPath), err)
	}
	for _, o := range objs {
		if ns := o.obj.(interface{ GetNamespace() string }).GetNamespace(); o.gvk.Kind != "Namespace" && ns != "strata-builds" {
			t.Errorf("%s: namespace %q, want strata-builds", o.where, ns)
		}
	}
}

// strictJSON decodes s into v, with unknown fields as errors.
func strictJSON(s string, v any) error {
	d := json.NewDecoder(bytes.NewReader([]byte(s)))
	d.DisallowUnknownFields()
	return d.Decode(v)
}
