package reliability

import (
	"strings"
	"testing"
	"time"
)

// Files named like OCI whiteouts (".wh.NAME", ".wh..wh..opq") would be read as
// deletions by whoever unpacks the layer (".wh.etc" deletes /etc in a fresh
// store): every way to put one in an image is refused with an error naming
// the file, so what is built is what is unpacked.
func TestHostileWhiteoutNames(t *testing.T) {
	t.Parallel()
	g := newHostGuard(t)
	suite.ImportBusybox(t, g.store)
	evilTar := func(ents ...tent) string { return string(tarBytes(t, ents)) }
	cases := []struct {
		name, dockerfile string
		files            map[string]string
		words            string
	}{
		{name: "add-tar", dockerfile: "FROM busybox\nADD wh.tar /\n",
			files: map[string]string{"wh.tar": evilTar(tfile(".wh.etc", "x"))}, words: ".wh.etc"},
		{name: "add-tar-opaque", dockerfile: "FROM busybox\nADD wh.tar /\n",
			files: map[string]string{"wh.tar": evilTar(tdir("d/"), tfile("d/.wh..wh..opq", "x"))}, words: ".wh..wh..opq"},
		{name: "copy-context", dockerfile: "FROM busybox\nCOPY . /\n",
			files: map[string]string{"bin/.wh.sh": "x"}, words: ".wh.sh"},
		{name: "copy-file", dockerfile: "FROM busybox\nCOPY x /.wh.bin\n",
			files: map[string]string{"x": "x"}, words: ".wh.bin"},
		{name: "run", dockerfile: "FROM busybox\nRUN touch /.wh.bin\n", words: ".wh.bin"},
		{name: "run-dir", dockerfile: "FROM busybox\nRUN mkdir -p /.wh.etc/x\n", words: ".wh.etc"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			files := map[string]string{"Dockerfile": c.dockerfile}
			for k, v := range c.files {
				files[k] = v
			}
			r := strataRun(t, g.store, runOpts{}, "build", "-t", "out-wh-"+c.name, g.ctxDir(t, files))
			g.judge(t, r, mustFail, c.words)
		})
	}
}

// Ids outside 0…2^32-2 are refused wherever a Dockerfile gives one, instead
// of wrapping around (4294967296 was 0, -5 was 4294967291) or falling back to
// root as an unknown name.
func TestHostileIDs(t *testing.T) {
	t.Parallel()
	g := newHostGuard(t)
	suite.ImportBusybox(t, g.store)
	cases := map[string]string{
		"chown-wrap":      "COPY --chown=4294967296:4294967296 x /x\n",
		"chown-wrap-1":    "COPY --chown=4294967297:4294967297 x /x\n",
		"chown-negative":  "COPY --chown=-5 x /x\n",
		"chown-minus-one": "ADD --chown=1:4294967295 x /x\n",
		"user":            "USER 4294967296\nRUN true\n",
		"user-group":      "USER 1:-1\nRUN true\n",
		"workdir":         "USER -5\nWORKDIR /w\n",
		"mount-uid":       "RUN --mount=type=cache,target=/c,uid=4294967295 true\n",
	}
	for name, steps := range cases {
		t.Run(name, func(t *testing.T) {
			ctx := g.ctxDir(t, map[string]string{"Dockerfile": "FROM busybox\n" + steps, "x": "x"})
			r := strataRun(t, g.store, runOpts{}, "build", "-t", "out-id-"+name, ctx)
			g.judge(t, r, mustFail, "range 0-4294967294")
		})
	}
}

// File names and history text from an image never reach the terminal raw:
// layers, history and the build's progress print control characters as
// escapes (no ESC]52 clipboard write, no ESC[2J screen clear).
func TestHostileTerminalText(t *testing.T) {
	t.Parallel()
	g := newHostGuard(t)
	suite.ImportBusybox(t, g.store)
	osc, clear := "\x1b]52;c;cHduZWQ=\x07", "\x1b[2J"
	df := "FROM busybox\n" +
		"RUN touch \"/f" + osc + "\" \"/g" + clear + "\" && ln -s \"" + clear + "\" /l\n" +
		"LABEL x=\"" + clear + "\"\n"
	ctx := g.ctxDir(t, map[string]string{"Dockerfile": df})
	r := strata(t, g.store, "build", "--progress", "plain", "-t", "esc:1", ctx)
	outputs := []result{r,
		strata(t, g.store, "layers", "esc:1"),
		strata(t, g.store, "layers", "--all", "esc:1"),
		strata(t, g.store, "history", "esc:1"),
		strata(t, g.store, "history", "--no-trunc", "esc:1"),
	}
	for _, r := range outputs {
		if out := r.Stdout + r.Stderr; strings.ContainsAny(out, "\x1b\x07") {
			t.Errorf("raw control characters in the output of:\n%q", out)
		}
	}
	if !strings.Contains(outputs[2].Stdout, `/f\x1b]52;c;cHduZWQ=\x07`) || !strings.Contains(outputs[4].Stdout, `\x1b[2J`) {
		t.Errorf("names not shown escaped:\n%s\n%s", outputs[2], outputs[4])
	}
}

// Variables that expand each other grow exponentially (8 bytes, then 8 KiB,
// 8 MiB, 8 GiB...): the build stops at the first word over 1 MiB with an
// error naming the Dockerfile line, instead of exhausting memory.
func TestHostileExpansion(t *testing.T) {
	t.Parallel()
	g := newHostGuard(t)
	suite.ImportBusybox(t, g.store)
	refs := func(v string) string { return strings.Repeat("$"+v, 1024) }
	cases := map[string]struct{ dockerfile, words string }{
		"arg":        {"FROM busybox\nARG a=xxxxxxxx\nARG b=" + refs("a") + "\nARG c=" + refs("b") + "\nARG d=" + refs("c") + "\nRUN true\n", "dockerfile:4"},
		"global-arg": {"ARG a=xxxxxxxx\nARG b=" + refs("a") + "\nARG c=" + refs("b") + "\nARG d=" + refs("c") + "\nFROM busybox\n", "dockerfile:3"},
		"env":        {"FROM busybox\nENV a=xxxxxxxx\nENV b=" + refs("a") + "\nENV c=" + refs("b") + "\nENV d=" + refs("c") + "\n", "dockerfile:4"},
		"label":      {"FROM busybox\nARG a=xxxxxxxx\nARG b=" + refs("a") + "\nLABEL c=" + refs("b") + refs("b") + "\n", "dockerfile:4"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			ctx := g.ctxDir(t, map[string]string{"Dockerfile": c.dockerfile})
			r := strataRun(t, g.store, runOpts{Timeout: time.Minute}, "build", "-t", "out-exp-"+name, ctx)
			g.judge(t, r, mustFail, c.words)
			if !strings.Contains(r.Stderr, "variable expansion") {
				t.Errorf("the error does not say why:\n%s", r)
			}
		})
	}
}
