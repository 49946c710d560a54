package rootless

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/strata-build/strata/test/internal/testenv"
)

// tunScript runs its arguments as the user ($1 uid, $2 gid) in a mount
// namespace of its own, where /dev/net/tun is a node of its own that every
// user may open (mode 0666, as most distributions have it; some have
// 0600, and then only root may): the host's node is not touched.
const tunScript = `uid=$1 gid=$2; shift 2
mount -t tmpfs -o mode=0755 strata-test-tun /dev/net &&
mknod -m 0666 /dev/net/tun c 10 200 &&
exec setpriv --reuid "$uid" --regid "$gid" --clear-groups -- "$@"`

// TestPrivateNetwork: where the user may open /dev/net/tun, a rootless
// RUN gets the private network (slirp4netns in the RUN's own network
// namespace: tap0, 10.0.2.100, the DNS forwarder at 10.0.2.3), not the
// host's, and strata does not warn.
func TestPrivateNetwork(t *testing.T) {
	requireUser(t)
	for _, tool := range []string{"slirp4netns", "unshare", "setpriv"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("no %s", tool)
		}
	}
	if _, err := os.Stat("/dev/net/tun"); err != nil {
		t.Skipf("no /dev/net/tun: %v", err)
	}
	store := suite.NewStore(t)
	suite.ImportBusybox(t, store)
	ctx := suite.WriteFiles(t, map[string]string{"Dockerfile": "FROM busybox\n" +
		"RUN ip -o -4 addr show >/net.txt && cat /etc/resolv.conf >>/net.txt\n"})
	dest := filepath.Join(suite.TempDir(t), "out")
	cctx, cancel := context.WithTimeout(context.Background(), suite.Timeout)
	defer cancel()
	cmd := suite.Command(cctx, store, testenv.RunOpts{}, "build", "--progress", "plain", "--output", "type=local,dest="+dest, ctx)
	// The same command (the user's environment), started as root in the
	// mount namespace, which drops to the user.
	cmd.SysProcAttr = nil
	u := suite.User
	cmd.Args = append([]string{"unshare", "--mount", "--propagation", "private", "sh", "-c", tunScript, "sh",
		strconv.Itoa(u.UID), strconv.Itoa(u.GID)}, cmd.Args...)
	if cmd.Path, cmd.Err = exec.LookPath("unshare"); cmd.Err != nil {
		t.Fatal(cmd.Err)
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("rootless build with /dev/net/tun open to the user: %v\n%s", err, out)
	}
	if strings.Contains(string(out), "RUN uses the host's network") {
		t.Errorf("strata warns of the host's network although the user may open /dev/net/tun:\n%s", out)
	}
	b, err := os.ReadFile(filepath.Join(dest, "net.txt"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"tap0", "inet 10.0.2.100/24", "nameserver 10.0.2.3"} {
		if !strings.Contains(string(b), want) {
			t.Errorf("the RUN's network does not have %q (not the private network):\n%s", want, b)
		}
	}
}
