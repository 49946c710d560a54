package e2e

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/strata-build/strata/test/internal/testenv"
)

// TestRunMounts builds RUN steps with every kind of --mount and a heredoc
// script (bound at /dev/pipes), and checks what each RUN saw and that its
// layer holds only the file the command wrote: nothing of a mount, its
// mount point, or what it hid. With STRATA_TEST_IN_CONTAINER=1 this runs
// in chroot isolation, where the mounts are emulated without mount(2).
func TestRunMounts(t *testing.T) {
	t.Parallel()
	store := suite.NewBusyboxStore(t)
	dir := suite.TempDir(t)
	sock := filepath.Join(dir, "agent.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	secret := filepath.Join(dir, "tok")
	if err := os.WriteFile(secret, []byte("s3cr3t-value"), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx := testenv.WriteFiles(t, filepath.Join(dir, "ctx"), map[string]string{"in.txt": "from context\n", "Dockerfile": `FROM busybox AS tools
RUN mkdir -p /tools && printf '#!/bin/sh\necho tool ran\n' > /tools/t.sh && chmod 755 /tools/t.sh

FROM busybox
RUN mkdir -p /var/cache/app /tmp && echo image > /var/cache/app/image-file
RUN --mount=type=bind,target=/ctx cat /ctx/in.txt > /obs-bind; echo x 2>/dev/null > /ctx/in.txt; true
RUN --mount=type=bind,from=tools,source=/tools,target=/t /t/t.sh > /obs-stage
RUN --mount=type=bind,target=/ctx,rw echo w > /ctx/written && ls /ctx > /obs-rw
RUN --mount=type=cache,target=/var/cache/app echo one > /var/cache/app/c && ls -A /var/cache/app > /obs-cache1
RUN --mount=type=cache,target=/var/cache/app cat /var/cache/app/c > /obs-cache2
RUN --mount=type=cache,target=/c2,sharing=locked,uid=1000,mode=0700 stat -c '%u %a' /c2 > /obs-owned
RUN --mount=type=tmpfs,target=/tmp echo t > /tmp/t && ls -A /tmp > /obs-tmpfs
RUN --mount=type=secret,id=tok wc -c < /run/secrets/tok > /obs-secret
RUN --mount=type=ssh test -S "$SSH_AUTH_SOCK" && echo socket > /obs-ssh
RUN <<EOF
#!/bin/sh
echo heredoc > /obs-heredoc
EOF
`})
	out := filepath.Join(dir, "img.tar")
	args := []string{"build", "--secret", "id=tok,src=" + secret, "--ssh", "default=" + sock}
	strata(t, store, append(args, "-o", "type=oci,dest="+out, ctx)...)
	img := testenv.ReadOCIArchive(t, out)
	// The RUN layers after the base and the image's own /var/cache/app.
	wantLayers := []string{"obs-bind", "obs-stage", "obs-rw", "obs-cache1", "obs-cache2", "obs-owned",
		"obs-tmpfs", "obs-secret", "obs-ssh", "obs-heredoc"}
	layers := img.Layers[len(img.Layers)-len(wantLayers):]
	for i, want := range wantLayers {
		if got := strings.Join(entryNames(layers[i]), " "); got != want {
			t.Errorf("layer of the RUN that writes /%s holds %q", want, got)
		}
	}

	files := filepath.Join(dir, "files")
	strata(t, store, append(args, "-o", files, ctx)...)
	for name, want := range map[string]string{
		"obs-bind":                 "from context\n",
		"obs-stage":                "tool ran\n",
		"obs-rw":                   "Dockerfile\nin.txt\nwritten\n",
		"obs-cache1":               "c\n",
		"obs-cache2":               "one\n",
		"obs-owned":                "1000 700\n",
		"obs-tmpfs":                "t\n",
		"obs-secret":               "12\n",
		"obs-ssh":                  "socket\n",
		"obs-heredoc":              "heredoc\n",
		"var/cache/app/image-file": "image\n",
		"in.txt":                   "",
	} {
		b, err := os.ReadFile(filepath.Join(files, name))
		switch {
		case want == "" && err == nil:
			t.Errorf("/%s is in the image", name)
		case want != "" && (err != nil || string(b) != want):
			t.Errorf("/%s = %q (%v), want %q", name, b, err, want)
		}
	}
	for _, gone := range []string{"ctx", "t", "c2", "run", "var/cache/app/c", "dev/pipes"} {
		if _, err := os.Lstat(filepath.Join(files, gone)); err == nil {
			t.Errorf("/%s is in the image", gone)
		}
	}
	if b, err := os.ReadFile(filepath.Join(ctx, "in.txt")); err != nil || string(b) != "from context\n" {
		t.Errorf("the context's in.txt holds %q (%v)", b, err)
	}
	if _, err := os.Stat(filepath.Join(ctx, "written")); err == nil {
		t.Error("a write into a bind with rw reached the context")
	}
}
