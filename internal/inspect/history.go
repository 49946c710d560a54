package inspect

import (
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// Step is one entry of an image's history and the layer it made.
type Step struct {
	Created    time.Time
	CreatedBy  string
	Comment    string
	Author     string
	EmptyLayer bool
	// Layer is the index (manifest order, 0 = the bottom layer) of the layer
	// this step made, or -1 for a step that changed only the config.
	Layer int
}

// Steps maps the history of cfg onto the image's nlayers layers, oldest step
// first. As the image spec says, the entries without empty_layer are the
// layers, in order. A layer no entry describes (a history shorter than the
// layers, or none at all) gets a step of its own with an empty CreatedBy; an
// entry beyond the last layer gets Layer -1.
func Steps(cfg *v1.ConfigFile, nlayers int) []Step {
	var out []Step
	next := 0
	for _, h := range cfg.History {
		s := Step{Created: h.Created.Time, CreatedBy: h.CreatedBy, Comment: h.Comment, Author: h.Author, EmptyLayer: h.EmptyLayer, Layer: -1}
		if !h.EmptyLayer && next < nlayers {
			s.Layer = next
			next++
		}
		out = append(out, s)
	}
	for ; next < nlayers; next++ {
		out = append(out, Step{Layer: next})
	}
	return out
}

// LayerSteps returns, for each layer, the step that made it.
func LayerSteps(steps []Step, nlayers int) []Step {
	out := make([]Step, nlayers)
	for i := range out {
		out[i].Layer = i
	}
	for _, s := range steps {
		if s.Layer >= 0 && s.Layer < nlayers {
			out[s.Layer] = s
		}
	}
	return out
}
