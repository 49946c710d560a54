// Package kubernetes tests the Kubernetes and CI examples: every manifest
// decodes strictly into the typed object its apiVersion and kind name, every
// pod template passes the Pod Security level the README claims (checked with
// the Pod Security admission library itself), and the CI files have the
// shape their systems expect. It is a module of its own so that the
// Kubernetes libraries stay out of strata's go.mod.
package kubernetes

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	kjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"
)

// kinds are the objects the examples may hold; any other kind is an error.
var kinds = map[schema.GroupVersionKind]func() any{
	{Version: "v1", Kind: "Namespace"}:               func() any { return &corev1.Namespace{} },
	{Version: "v1", Kind: "ConfigMap"}:               func() any { return &corev1.ConfigMap{} },
	{Version: "v1", Kind: "Secret"}:                  func() any { return &corev1.Secret{} },
	{Version: "v1", Kind: "Pod"}:                     func() any { return &corev1.Pod{} },
	{Group: "batch", Version: "v1", Kind: "Job"}:     func() any { return &batchv1.Job{} },
	{Group: "batch", Version: "v1", Kind: "CronJob"}: func() any { return &batchv1.CronJob{} },
}

// object is one decoded document of a manifest file.
type object struct {
	where string // file.yaml#N (N counts the non-empty documents from 1)
	gvk   schema.GroupVersionKind
	obj   any // *corev1.Namespace, *batchv1.Job, ...
}

// decodeStream splits a multi-document YAML stream and decodes each
// non-empty document strictly: duplicate keys, fields the type does not
// have (also by case: "Image" is not "image"), values of the wrong type and
// unknown kinds are all errors, as the API server's strict field validation
// makes them.
func decodeStream(name string, r io.Reader) ([]object, error) {
	yr := utilyaml.NewYAMLReader(bufio.NewReader(r))
	var objs []object
	for {
		doc, err := yr.Read()
		if errors.Is(err, io.EOF) {
			return objs, nil
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		js, err := yaml.YAMLToJSONStrict(doc)
		if err != nil {
			return nil, fmt.Errorf("%s#%d: %w", name, len(objs)+1, err)
		}
		if t := bytes.TrimSpace(js); len(t) == 0 || string(t) == "null" {
			continue // only comments
		}
		o, err := decodeDocument(js)
		if err != nil {
			return nil, fmt.Errorf("%s#%d: %w", name, len(objs)+1, err)
		}
		o.where = fmt.Sprintf("%s#%d", name, len(objs)+1)
		objs = append(objs, o)
	}
}

// decodeDocument decodes one JSON document into the type of its kind.
func decodeDocument(js []byte) (object, error) {
	var tm metav1.TypeMeta
	if err := json.Unmarshal(js, &tm); err != nil {
		return object{}, err
	}
	if tm.APIVersion == "" || tm.Kind == "" {
		return object{}, fmt.Errorf("apiVersion and kind must be set (got %q, %q)", tm.APIVersion, tm.Kind)
	}
	gvk := schema.FromAPIVersionAndKind(tm.APIVersion, tm.Kind)
	newObj, ok := kinds[gvk]
	if !ok {
		return object{}, fmt.Errorf("unknown kind %s %s", tm.APIVersion, tm.Kind)
	}
	obj := newObj()
	strict, err := kjson.UnmarshalStrict(js, obj)
	if err != nil {
		return object{}, fmt.Errorf("%s: %w", tm.Kind, err)
	}
	if len(strict) > 0 {
		return object{}, fmt.Errorf("%s: %w", tm.Kind, errors.Join(strict...))
	}
	return object{gvk: gvk, obj: obj}, nil
}

// manifests decodes every *.yaml file in this folder, sorted by name.
func manifests(t *testing.T) []object {
	t.Helper()
	files, err := filepath.Glob("*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(files)
	if len(files) == 0 {
		t.Fatal("no manifests (*.yaml) here")
	}
	var all []object
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		objs, err := decodeStream(f, bytes.NewReader(b))
		if err != nil {
			t.Fatalf("decode: %v", err)
		}
		all = append(all, objs...)
	}
	return all
}

// find returns the one object of type T named name; it fails the test when
// there is none or more than one.
func find[T interface{ GetName() string }](t *testing.T, objs []object, name string) T {
	t.Helper()
	var found []T
	for _, o := range objs {
		if v, ok := o.obj.(T); ok && v.GetName() == name {
			found = append(found, v)
		}
	}
	if len(found) != 1 {
		var zero T
		t.Fatalf("want one %T named %q, found %d", zero, name, len(found))
	}
	return found[0]
}

// template is a pod template found in a manifest, with where it was found.
type template struct {
	where string
	meta  *metav1.ObjectMeta
	spec  *corev1.PodSpec
}

// podTemplates returns the pod (template) of every workload object.
func podTemplates(objs []object) []template {
	var ts []template
	for _, o := range objs {
		switch v := o.obj.(type) {
		case *corev1.Pod:
			ts = append(ts, template{o.where + " Pod/" + v.Name, &v.ObjectMeta, &v.Spec})
		case *batchv1.Job:
			ts = append(ts, template{o.where + " Job/" + v.Name, &v.Spec.Template.ObjectMeta, &v.Spec.Template.Spec})
		case *batchv1.CronJob:
			tpl := &v.Spec.JobTemplate.Spec.Template
			ts = append(ts, template{o.where + " CronJob/" + v.Name, &tpl.ObjectMeta, &tpl.Spec})
		}
	}
	return ts
}

func TestManifestsDecodeStrictly(t *testing.T) {
	objs := manifests(t)
	counts := map[string]int{}
	for _, o := range objs {
		counts[o.gvk.Kind]++
		t.Logf("%s: %s", o.where, o.gvk)
	}
	// What the README promises is here.
	for kind, n := range map[string]int{"Namespace": 1, "Secret": 1, "ConfigMap": 1, "Job": 3} {
		if counts[kind] != n {
			t.Errorf("%d %s objects, want %d", counts[kind], kind, n)
		}
	}
	if len(podTemplates(objs)) == 0 {
		t.Fatal("no pod templates")
	}
}

// TestDecoderIsStrict shows that the decoder above rejects what it must, so
// that TestManifestsDecodeStrictly can fail.
func TestDecoderIsStrict(t *testing.T) {
	const job = "apiVersion: batch/v1\nkind: Job\nmetadata:\n  name: x\nspec:\n  template:\n    spec:\n      containers:\n      - name: c\n        image: busybox\n"
	if _, err := decodeStream("good", strings.NewReader("# a comment only\n---\n"+job)); err != nil {
		t.Fatalf("a valid Job: %v", err)
	}
	bad := map[string]string{
		"unknown field":   strings.Replace(job, "image: busybox", "image: busybox\n        imagePullPolisy: Always", 1),
		"field case":      strings.Replace(job, "image: busybox", "Image: busybox", 1),
		"duplicate key":   strings.Replace(job, "image: busybox", "image: busybox\n        image: alpine", 1),
		"wrong type":      strings.Replace(job, "name: c", "name: [c]", 1),
		"bad quantity":    strings.Replace(job, "image: busybox", "image: busybox\n        resources: {limits: {memory: lots}}", 1),
		"unknown kind":    strings.Replace(job, "kind: Job", "kind: Jobb", 1),
		"unknown version": strings.Replace(job, "batch/v1", "batch/v2", 1),
		"no kind":         strings.Replace(job, "kind: Job\n", "", 1),
	}
	for name, doc := range bad {
		if _, err := decodeStream(name, strings.NewReader(job+"---\n"+doc)); err == nil {
			t.Errorf("%s: decoded without an error", name)
		} else {
			t.Logf("%s: %v", name, err)
		}
	}
}
