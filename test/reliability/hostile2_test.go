package reliability

import (
	"testing"
)

// Files named like OCI whiteouts (".wh.NAME", ".wh..wh..opq") would be read as
// deletions by whoever unpacks the layer (".wh.etc" deletes /etc in a fresh
// store): every way to put one in an image is refused with an error naming
// the file, so what is built is what is unpacked.
func TestHostileWhiteoutNames(t *testing.T) {
	t.Parallel()
	g := newHostGuard(t)
	importBusybox(t, g.store)
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
