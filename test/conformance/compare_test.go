package conformance

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"sort"
	"strings"
)

// loadDoc reads an expected.json. Unknown fields are an error, so that a
// schema change in the kit is noticed instead of silently ignored.
func loadDoc(file string) (doc, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return doc{}, err
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var d doc
	if err := dec.Decode(&d); err != nil {
		return doc{}, fmt.Errorf("%s: %w", file, err)
	}
	d.Config.normalize()
	return d, nil
}

func asJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprintf("<%v>", err)
	}
	return string(b)
}

// diffDocs lists how got differs from want: config fields first, then files
// in path order, in the kit's wording.
func diffDocs(want, got doc) []string {
	want.Config.normalize()
	got.Config.normalize()
	var diffs []string

	w, g := want.Config, got.Config
	for _, f := range []struct {
		name      string
		want, got any
	}{
		{"Env", w.Env, g.Env},
		{"Entrypoint", w.Entrypoint, g.Entrypoint},
		{"Cmd", w.Cmd, g.Cmd},
		{"WorkingDir", w.WorkingDir, g.WorkingDir},
		{"User", w.User, g.User},
		{"ExposedPorts", w.ExposedPorts, g.ExposedPorts},
		{"Volumes", w.Volumes, g.Volumes},
		{"Labels", w.Labels, g.Labels},
		{"StopSignal", w.StopSignal, g.StopSignal},
		{"Healthcheck", w.Healthcheck, g.Healthcheck},
		{"Shell", w.Shell, g.Shell},
		{"OnBuild", w.OnBuild, g.OnBuild},
	} {
		if ws, gs := asJSON(f.want), asJSON(f.got); ws != gs {
			diffs = append(diffs, fmt.Sprintf("config %s differs: want %s, got %s", f.name, ws, gs))
		}
	}

	byPath := func(files []fileEntry) map[string]fileEntry {
		m := make(map[string]fileEntry, len(files))
		for _, f := range files {
			m[f.Path] = f
		}
		return m
	}
	wantFiles, gotFiles := byPath(want.Files), byPath(got.Files)
	var all []string
	for p := range wantFiles {
		all = append(all, p)
	}
	for p := range gotFiles {
		if _, ok := wantFiles[p]; !ok {
			all = append(all, p)
		}
	}
	sort.Strings(all)
	for _, p := range all {
		wf, inWant := wantFiles[p]
		gf, inGot := gotFiles[p]
		if !inGot {
			diffs = append(diffs, fmt.Sprintf("missing %s (%s)", p, summary(wf)))
			continue
		}
		if !inWant {
			diffs = append(diffs, fmt.Sprintf("extra %s (%s)", p, summary(gf)))
			continue
		}
		for _, f := range []struct {
			name      string
			want, got any
		}{
			{"type", wf.Type, gf.Type},
			{"mode", wf.Mode, gf.Mode},
			{"uid", wf.UID, gf.UID},
			{"gid", wf.GID, gf.GID},
			{"size", wf.Size, gf.Size},
			{"sha256", wf.SHA256, gf.SHA256},
			{"link", wf.Link, gf.Link},
			{"nlinkgroup", wf.NlinkGroup, gf.NlinkGroup},
		} {
			if ws, gs := fmt.Sprint(f.want), fmt.Sprint(f.got); ws != gs {
				diffs = append(diffs, fmt.Sprintf("%s: %s differs: want %s, got %s", p, f.name, shortValue(ws), shortValue(gs)))
			}
		}
	}
	return diffs
}

// shortValue shows "" for an empty value and abbreviates sha256 sums.
func shortValue(s string) string {
	if s == "" {
		return `""`
	}
	if len(s) == 64 && strings.Trim(s, "0123456789abcdef") == "" {
		return s[:12] + "…"
	}
	return s
}

func summary(f fileEntry) string {
	s := fmt.Sprintf("%s %s %d:%d", f.Type, f.Mode, f.UID, f.GID)
	switch f.Type {
	case "file":
		s += fmt.Sprintf(" %d bytes", f.Size)
	case "symlink":
		s += " -> " + f.Link
	}
	return s
}

// marshalDoc writes a document like the kit's expected.json files: the config
// indented, one file per line (used for got.json when a case fails).
func marshalDoc(d doc) []byte {
	var b bytes.Buffer
	cfg, _ := json.MarshalIndent(d.Config, "  ", "  ")
	b.WriteString("{\n  \"config\": ")
	b.Write(cfg)
	b.WriteString(",\n  \"files\": [")
	for i, f := range d.Files {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString("\n    ")
		line, _ := json.Marshal(f)
		b.Write(line)
	}
	if len(d.Files) > 0 {
		b.WriteString("\n  ")
	}
	b.WriteString("]\n}\n")
	return b.Bytes()
}
