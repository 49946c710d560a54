package conformance

// Self-check of the feature cases' subset comparison (expect.json) on a
// hand-made archive, so that a comparer bug cannot make feature cases pass.
// It needs neither root nor strata.

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestFeatureExpectSelfCheck(t *testing.T) {
	config := `{"config":{"Env":["PATH=/bin","A=1"],"User":"app","WorkingDir":"/w","Labels":{"k":"v"}},` +
		`"history":[{"created_by":"RUN echo history-only-value"}]}`
	archive := dockerArchive(t, config,
		[]tarEntry{dir("etc/", 0o755), file("etc/x", "hello\n", 0o644), file("etc/gone", "bye\n", 0o600)},
		[]tarEntry{whiteout("etc/.wh.gone"), file("etc/y", "layer-only-value\n", 0o640), symlink("lnk", "etc/x"),
			{name: "etc/owned", typ: '0', mode: 0o600, uid: 1000, gid: 1001, body: "o\n"}},
	)
	out := filepath.Join(t.TempDir(), "image.tar")
	if err := os.WriteFile(out, archive, 0o644); err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		name   string
		expect string
		want   []string // substrings of the problems, in order; none when it must pass
	}{
		{"all-good", `{
			"config": {"User": "app", "Env": ["PATH=/bin", "A=1"], "Labels": {"k": "v"}},
			"files": [
				{"path": "/etc/x", "type": "file", "mode": "0644", "uid": 0, "gid": 0, "size": 6, "content": "hello\n", "mtime": "1970-01-01T00:00:00Z"},
				{"path": "/etc/owned", "uid": 1000, "gid": 1001, "mode": "0600"},
				{"path": "/lnk", "type": "symlink", "link": "etc/x"},
				{"path": "/etc", "type": "dir", "mode": "0755"}
			],
			"absent": ["/etc/gone", "/nowhere"],
			"grep_absent": ["not-anywhere-at-all"]}`, nil},
		{"config-field", `{"config": {"User": "root"}}`, []string{`config User differs: want "root", got "app"`}},
		{"config-unset-field-not-compared", `{"config": {"WorkingDir": "/w"}}`, nil},
		{"content", `{"files": [{"path": "/etc/x", "content": "hullo\n"}]}`, []string{`/etc/x: content differs: want "hullo\n", got "hello\n"`}},
		{"mode-uid-gid", `{"files": [{"path": "/etc/owned", "mode": "0644", "uid": 0, "gid": 1001}]}`,
			[]string{"/etc/owned: mode differs", "/etc/owned: uid differs"}},
		{"type-link", `{"files": [{"path": "/lnk", "type": "file", "link": "x"}]}`,
			[]string{"/lnk: type differs: want file, got symlink", "/lnk: link differs"}},
		{"missing", `{"files": [{"path": "/etc/gone"}]}`, []string{"missing /etc/gone"}},
		{"absent", `{"absent": ["/etc/y"]}`, []string{"/etc/y should not exist"}},
		{"mtime", `{"files": [{"path": "/etc/x", "mtime": "2015-10-21T07:28:00Z"}]}`, []string{"/etc/x: mtime differs"}},
		{"grep-layer", `{"grep_absent": ["layer-only-value"]}`, []string{`"layer-only-value" must not appear in the image`}},
		{"grep-layer-names-it", `{"grep_absent": ["layer-only-value"]}`, []string{"layer 2"}},
		{"grep-history", `{"grep_absent": ["history-only-value"]}`, []string{"image config (with history)"}},
		{"grep-whiteout-content", `{"grep_absent": ["bye"]}`, []string{"layer 1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			exp, raw, err := parseFeatureExpect(tc.name, []byte(tc.expect))
			if err != nil {
				t.Fatal(err)
			}
			f := &featureRun{t: t, name: tc.name, dir: t.TempDir()}
			f.compareImage(exp, raw, out)
			if len(f.problems) != len(tc.want) {
				t.Fatalf("got %d problems, want %d:\n  %s", len(f.problems), len(tc.want), strings.Join(f.problems, "\n  "))
			}
			for i, w := range tc.want {
				if !strings.Contains(f.problems[i], w) {
					t.Errorf("problem %d = %q, want it to contain %q", i, f.problems[i], w)
				}
			}
		})
	}

	if _, _, err := parseFeatureExpect("unknown-field", []byte(`{"files": [{"path": "/x", "contents": "typo"}]}`)); err == nil {
		t.Error("an unknown field in expect.json is accepted; it must be an error")
	}
}

func TestFeatureWarningsSelfCheck(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "expected-warnings"),
		[]byte("# comment\nStageNameCasing:2 should be lowercase\nUndefinedVar:5\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, output string
		want         []string
	}{
		{"exact", "WARNING: StageNameCasing - Dockerfile:2 - Stage name 'Builder' should be lowercase\n" +
			"WARNING: UndefinedVar - /ctx/Dockerfile:5 - Usage of undefined variable '$X'\n", nil},
		{"missing-and-extra", "WARNING: StageNameCasing - Dockerfile:3 - Stage name 'Builder' should be lowercase\n" +
			"WARNING: UndefinedVar - Dockerfile:5 - Usage of undefined variable '$X'\n",
			[]string{"missing warning StageNameCasing at Dockerfile:2", "unexpected warning StageNameCasing:3"}},
		{"message", "WARNING: StageNameCasing - Dockerfile:2 - something else\nWARNING: UndefinedVar - Dockerfile:5 - x\n",
			[]string{"should be lowercase"}},
		{"none", "all fine\n", []string{"missing warning StageNameCasing", "missing warning UndefinedVar", "no WARNING lines"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := &featureRun{t: t, src: dir}
			f.checkWarnings([]byte(tc.output))
			if len(f.problems) != len(tc.want) {
				t.Fatalf("got %d problems, want %d:\n  %s", len(f.problems), len(tc.want), strings.Join(f.problems, "\n  "))
			}
			for i, w := range tc.want {
				if !strings.Contains(f.problems[i], w) {
					t.Errorf("problem %d = %q, want it to contain %q", i, f.problems[i], w)
				}
			}
		})
	}
}

func TestContextFromStdin(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want bool
	}{
		{[]string{"-f", "-"}, false},
		{[]string{"--file", "-", "--secret", "id=x"}, false},
		{[]string{"-"}, true},
		{[]string{"--build-arg", "A=1", "-"}, true},
		{nil, false},
	} {
		if got := contextFromStdin(tc.args); got != tc.want {
			t.Errorf("contextFromStdin(%q) = %v, want %v", tc.args, got, tc.want)
		}
	}
}
