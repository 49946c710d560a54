package inspect

import (
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

func TestSteps(t *testing.T) {
	h := func(by string, empty bool) v1.History { return v1.History{CreatedBy: by, EmptyLayer: empty} }
	cases := []struct {
		name    string
		history []v1.History
		layers  int
		want    []int // Layer of each step
		wantBy  []string
	}{
		{"layers in order, config steps have none", []v1.History{h("import", false), h("ENV A=1", true), h("COPY", false), h("CMD", true), h("RUN", false)}, 3,
			[]int{0, -1, 1, -1, 2}, []string{"import", "ENV A=1", "COPY", "CMD", "RUN"}},
		{"no history: a step per layer", nil, 2, []int{0, 1}, []string{"", ""}},
		{"history shorter than the layers", []v1.History{h("a", false)}, 3, []int{0, 1, 2}, []string{"a", "", ""}},
		{"more layer entries than layers", []v1.History{h("a", false), h("b", false)}, 1, []int{0, -1}, []string{"a", "b"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			steps := Steps(&v1.ConfigFile{History: c.history}, c.layers)
			if len(steps) != len(c.want) {
				t.Fatalf("%d steps, want %d: %+v", len(steps), len(c.want), steps)
			}
			for i, s := range steps {
				if s.Layer != c.want[i] || s.CreatedBy != c.wantBy[i] {
					t.Errorf("step %d: layer %d %q, want %d %q", i, s.Layer, s.CreatedBy, c.want[i], c.wantBy[i])
				}
			}
			ls := LayerSteps(steps, c.layers)
			for i, s := range ls {
				if s.Layer != i {
					t.Errorf("LayerSteps[%d].Layer = %d", i, s.Layer)
				}
			}
		})
	}
	ls := LayerSteps(Steps(&v1.ConfigFile{History: cases[0].history}, 3), 3)
	if ls[1].CreatedBy != "COPY" || ls[2].CreatedBy != "RUN" {
		t.Errorf("LayerSteps: %+v", ls)
	}
}
