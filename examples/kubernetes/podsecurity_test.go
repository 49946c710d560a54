package kubernetes

import (
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/pod-security-admission/api"
	"k8s.io/pod-security-admission/policy"
)

// restrictedReasons are the reasons Pod Security admission gives for
// rejecting the build pod at the restricted level; README.md names each.
var restrictedReasons = []string{
	"runAsNonRoot != true",      // chroot mode needs uid 0 in the container
	"runAsUser=0",               // the same, set explicitly
	"unrestricted capabilities", // SYS_CHROOT, SETUID, CHOWN, ... (restricted allows only NET_BIND_SERVICE)
}

// evaluate runs the Pod Security admission checks of level (latest version)
// on one pod template, as the admission plugin does for a Pod.
func evaluate(t *testing.T, level api.Level, tpl template) policy.AggregateCheckResult {
	t.Helper()
	ev, err := policy.NewEvaluator(policy.DefaultChecks(), nil)
	if err != nil {
		t.Fatal(err)
	}
	lv := api.LevelVersion{Level: level, Version: api.LatestVersion()}
	return policy.AggregateCheckResults(ev.EvaluatePod(lv, tpl.meta, tpl.spec))
}

// claimedLevel is the level the namespace enforces, after checking that
// README.md claims the same one.
func claimedLevel(t *testing.T) api.Level {
	t.Helper()
	ns := find[*corev1.Namespace](t, manifests(t), "strata-builds")
	enforce, err := api.ParseLevel(ns.Labels[api.EnforceLevelLabel])
	if err != nil {
		t.Fatalf("namespace %s: %s: %v", ns.Name, api.EnforceLevelLabel, err)
	}
	if v := ns.Labels[api.EnforceVersionLabel]; v != "latest" {
		t.Errorf("namespace %s: %s=%q, want latest (what this test checks)", ns.Name, api.EnforceVersionLabel, v)
	}
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`Pod Security level: \*\*(\w+)\*\*`).FindSubmatch(readme)
	if m == nil || api.Level(strings.ToLower(string(m[1]))) != enforce {
		t.Fatalf("README.md must say \"Pod Security level: **%s**\" (the namespace enforces %s), found %q", enforce, enforce, m)
	}
	for _, r := range restrictedReasons {
		if !strings.Contains(string(readme), r) {
			t.Errorf("README.md does not name the restricted-level reason %q", r)
		}
	}
	return enforce
}

func TestPodSecurity(t *testing.T) {
	level := claimedLevel(t)
	if level != api.LevelBaseline {
		t.Fatalf("the namespace enforces %s; this test expects baseline (and restricted to fail)", level)
	}
	for _, tpl := range podTemplates(manifests(t)) {
		res := evaluate(t, level, tpl)
		if !res.Allowed {
			t.Errorf("%s: not allowed at %s: %s", tpl.where, level, res.ForbiddenDetail())
		} else {
			t.Logf("%s: allowed at %s", tpl.where, level)
		}
		res = evaluate(t, api.LevelRestricted, tpl)
		if res.Allowed {
			t.Errorf("%s: allowed at restricted: README.md says it is not; update both", tpl.where)
			continue
		}
		t.Logf("%s: not allowed at restricted: %s", tpl.where, res.ForbiddenDetail())
		// README.md: the init container (fetching the context) alone meets restricted.
		if len(tpl.spec.InitContainers) > 0 {
			spec := tpl.spec.DeepCopy()
			spec.Containers, spec.InitContainers = spec.InitContainers, nil
			if r := evaluate(t, api.LevelRestricted, template{tpl.where, tpl.meta, spec}); !r.Allowed {
				t.Errorf("%s: its init containers alone are not allowed at restricted: %s", tpl.where, r.ForbiddenDetail())
			}
		}
		got := slices.Clone(res.ForbiddenReasons)
		slices.Sort(got)
		if want := slices.Sorted(slices.Values(restrictedReasons)); !slices.Equal(got, want) {
			t.Errorf("%s: restricted rejects it for %q, want exactly %q (README.md explains these)", tpl.where, got, want)
		}
	}
}

// TestPodSecurityInUserNamespace checks what the README says of
// hostUsers: false: in a user namespace uid 0 is no longer held against the
// pod, but the added capabilities still keep it from restricted.
func TestPodSecurityInUserNamespace(t *testing.T) {
	for _, tpl := range podTemplates(manifests(t)) {
		spec := tpl.spec.DeepCopy()
		spec.HostUsers = new(false)
		if res := evaluate(t, api.LevelBaseline, template{tpl.where, tpl.meta, spec}); !res.Allowed {
			t.Errorf("%s with hostUsers: false: not allowed at baseline: %s", tpl.where, res.ForbiddenDetail())
		}
		res := evaluate(t, api.LevelRestricted, template{tpl.where, tpl.meta, spec})
		if want := []string{"unrestricted capabilities"}; !slices.Equal(res.ForbiddenReasons, want) {
			t.Errorf("%s with hostUsers: false: restricted rejects it for %q, want %q", tpl.where, res.ForbiddenReasons, want)
		}
	}
}

// TestPodSecurityRejectsWhatItShould makes the build pod worse in one way at
// a time and checks that the evaluator rejects each at baseline: the
// evaluation in TestPodSecurity can fail, and these are the settings the
// README tells users not to add.
func TestPodSecurityRejectsWhatItShould(t *testing.T) {
	unconfined := &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeUnconfined}
	worse := map[string]func(*corev1.PodSpec){
		"privileged":         func(s *corev1.PodSpec) { s.Containers[0].SecurityContext.Privileged = new(true) },
		"hostNetwork":        func(s *corev1.PodSpec) { s.HostNetwork = true },
		"hostPID":            func(s *corev1.PodSpec) { s.HostPID = true },
		"seccomp Unconfined": func(s *corev1.PodSpec) { s.SecurityContext.SeccompProfile = unconfined },
		"AppArmor Unconfined": func(s *corev1.PodSpec) {
			s.Containers[0].SecurityContext.AppArmorProfile = &corev1.AppArmorProfile{Type: corev1.AppArmorProfileTypeUnconfined}
		},
		"hostPath": func(s *corev1.PodSpec) {
			s.Volumes = append(s.Volumes, corev1.Volume{Name: "host", VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: "/"}}})
		},
		"SYS_ADMIN": func(s *corev1.PodSpec) { addCap(s, "SYS_ADMIN") },
		"NET_RAW":   func(s *corev1.PodSpec) { addCap(s, "NET_RAW") },
	}
	for _, tpl := range podTemplates(manifests(t)) {
		for name, change := range worse {
			spec := tpl.spec.DeepCopy()
			change(spec)
			res := evaluate(t, api.LevelBaseline, template{tpl.where, tpl.meta, spec})
			if res.Allowed {
				t.Errorf("%s with %s: allowed at baseline", tpl.where, name)
			}
		}
	}
}

// addCap adds a capability to the first container.
func addCap(s *corev1.PodSpec, c corev1.Capability) {
	sc := s.Containers[0].SecurityContext
	if sc.Capabilities == nil {
		sc.Capabilities = &corev1.Capabilities{}
	}
	sc.Capabilities.Add = append(sc.Capabilities.Add, c)
}
