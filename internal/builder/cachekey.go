package builder

import (
	"context"
	"strings"

	"github.com/strata-build/strata/internal/cache"
)

// copyInputs are the cache key inputs of a COPY/ADD: the instruction's
// options and, per source item, what it reads (source.Item.Key: an image's
// digest, else the checksum of the files the copy reads; stages are hashed
// like the context, so an unchanged output of a rebuilt stage still hits).
func (sb *stageBuilder) copyInputs(ctx context.Context, from string, items []copyItem, req copyRequest) ([]cache.Input, error) {
	in := req.optionInputs()
	if from != "" {
		in = append(in, cache.Input{Name: "from", Value: from})
	}
	for _, it := range items {
		name := "source " + strings.TrimPrefix(it.Rel, "/")
		if it.Keep != "" {
			name += " as " + it.Keep
		}
		v, err := it.Key(ctx, req.o.exclude)
		if err != nil {
			return nil, err
		}
		if it.noUnpack && it.Source.Key() == "" {
			v += " (no unpack)"
		}
		in = append(in, cache.Input{Name: name, Value: v})
	}
	return in, nil
}
