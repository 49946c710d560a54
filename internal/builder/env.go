package builder

import (
	"strings"

	"github.com/moby/buildkit/frontend/dockerfile/shell"
)

// envList is an ordered KEY=VALUE list as in an image config: setting an
// existing key keeps its position.
type envList []string

func (e envList) get(k string) (string, bool) {
	for _, kv := range e {
		if key, v, _ := strings.Cut(kv, "="); key == k {
			return v, true
		}
	}
	return "", false
}

func (e envList) set(k, v string) envList {
	out := make(envList, len(e), len(e)+1)
	copy(out, e)
	for i, kv := range out {
		if key, _, _ := strings.Cut(kv, "="); key == k {
			out[i] = k + "=" + v
			return out
		}
	}
	return append(out, k+"="+v)
}

func (e envList) getter() shell.EnvGetter { return shell.EnvsFromSlice(e) }

// mapGetter adapts a map to shell.EnvGetter.
type mapGetter map[string]string

func (m mapGetter) Get(k string) (string, bool) { v, ok := m[k]; return v, ok }

func (m mapGetter) Keys() []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}
