package user

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"
)

const passwd = `root:x:0:0:root:/root:/bin/sh
# a comment
daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin

app:x:1000:1000:App:/home/app:/bin/sh
broken:x:notanumber:1:::
nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin
`

const group = `root:x:0:root
bin:x:1:root,daemon
wheel:x:10:root, app
app:x:1000:
docker:x:999:app
nogroup:x:65534:
`

func rootfsWith(t *testing.T, files map[string]string) string {
	t.Helper()
	root := t.TempDir()
	for name, content := range files {
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

func TestLookupUser(t *testing.T) {
	full := rootfsWith(t, map[string]string{"etc/passwd": passwd, "etc/group": group})
	empty := t.TempDir()
	// Lines moby/sys/user alone would read as uid 0 (comment, NIS, bad or
	// missing ids) come before root; none of them may be matched for "0".
	oddFirst := rootfsWith(t, map[string]string{
		"etc/passwd": "# users\n+::::::\nneg:x:-1:-1::/:\nhuge:x:4294967296:0::/:\nshort:x\nroot:x:0:0:root:/root:/bin/sh\n",
		"etc/group":  "# groups\n+:::neg,short\nwheel:x:10:,root,\nbad:x:x:root\n",
	})

	tests := []struct {
		name    string
		rootfs  string
		user    string
		uid     uint32
		gid     uint32
		add     []uint32
		wantErr string
	}{
		{name: "default is root with its groups", rootfs: full, user: "", uid: 0, gid: 0, add: []uint32{0, 1, 10}},
		{name: "default without files", rootfs: empty, user: "", uid: 0, gid: 0, add: []uint32{0}},
		{name: "name", rootfs: full, user: "app", uid: 1000, gid: 1000, add: []uint32{1000, 10, 999}},
		{name: "uid with entry", rootfs: full, user: "1000", uid: 1000, gid: 1000, add: []uint32{1000, 10, 999}},
		{name: "uid without entry", rootfs: full, user: "4242", uid: 4242, gid: 0, add: []uint32{0}},
		{name: "uid without files", rootfs: empty, user: "1234", uid: 1234, gid: 0, add: []uint32{0}},
		{name: "numeric pair", rootfs: empty, user: "1234:5", uid: 1234, gid: 5, add: []uint32{5}},
		{name: "numeric pair skips groups", rootfs: full, user: "1000:1000", uid: 1000, gid: 1000, add: []uint32{1000}},
		{name: "root:root", rootfs: empty, user: "root:root", uid: 0, gid: 0, add: []uint32{0}},
		{name: "name:group", rootfs: full, user: "nobody:app", uid: 65534, gid: 1000, add: []uint32{1000}},
		{name: "name:gid", rootfs: full, user: "app:5", uid: 1000, gid: 5, add: []uint32{5}},
		{name: "uid:group", rootfs: full, user: "1000:docker", uid: 1000, gid: 999, add: []uint32{999}},
		{name: "root by name", rootfs: full, user: "root", uid: 0, gid: 0, add: []uint32{0, 1, 10}},
		{name: "unknown name", rootfs: full, user: "ghost", wantErr: "unable to find user ghost: no matching entries in passwd file"},
		{name: "name without passwd", rootfs: empty, user: "app", wantErr: "unable to find user app: no matching entries in passwd file"},
		{name: "unknown group", rootfs: full, user: "app:ghosts", wantErr: "unable to find group ghosts: no matching entries in group file"},
		{name: "malformed uid line ignored", rootfs: full, user: "broken", wantErr: "unable to find user broken"},
		{name: "no user part is root", rootfs: full, user: ":docker", uid: 0, gid: 999, add: []uint32{999}},
		{name: "malformed lines before root", rootfs: oddFirst, user: "0", uid: 0, gid: 0, add: []uint32{0, 10}},
		{name: "wrapping uid line ignored", rootfs: oddFirst, user: "huge", wantErr: "unable to find user huge"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			uid, gid, add, err := LookupUser(tt.rootfs, tt.user)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if uid != tt.uid || gid != tt.gid || !reflect.DeepEqual(add, tt.add) {
				t.Fatalf("got %d:%d %v, want %d:%d %v", uid, gid, add, tt.uid, tt.gid, tt.add)
			}
		})
	}
}

func TestLookupUserErrorsWrap(t *testing.T) {
	_, _, _, err := LookupUser(t.TempDir(), "app")
	if !errors.Is(err, ErrNoPasswdEntries) {
		t.Fatalf("err = %v, want ErrNoPasswdEntries", err)
	}
}

func TestLookupUserSymlinkStaysInRootfs(t *testing.T) {
	// /etc/passwd -> /../../../etc/passwd must resolve inside the rootfs, not to
	// the host's file.
	outside := rootfsWith(t, map[string]string{"passwd": "evil:x:0:0::/:/bin/sh\n"})
	root := rootfsWith(t, map[string]string{"real/passwd": "evil:x:777:777::/:/bin/sh\n"})
	if err := os.MkdirAll(filepath.Join(root, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	rel, _ := filepath.Rel(filepath.Join(root, "etc"), filepath.Join(outside, "passwd"))
	if err := os.Symlink(rel, filepath.Join(root, "etc/passwd")); err != nil {
		t.Fatal(err)
	}
	if _, _, _, err := LookupUser(root, "evil"); err == nil {
		t.Fatal("relative symlink escaped the rootfs")
	}
	if err := os.Remove(filepath.Join(root, "etc/passwd")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/real/passwd", filepath.Join(root, "etc/passwd")); err != nil {
		t.Fatal(err)
	}
	uid, _, _, err := LookupUser(root, "evil")
	if err != nil || uid != 777 {
		t.Fatalf("absolute symlink inside rootfs: uid %d err %v", uid, err)
	}
}

func TestLookupUserRejectsFIFO(t *testing.T) {
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(filepath.Join(root, "etc/passwd"), 0o644); err != nil {
		t.Skipf("mkfifo: %v", err)
	}
	if _, _, _, err := LookupUser(root, "app"); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Fatalf("err = %v", err)
	}
}

// TestFileOwner pins BuildKit's rules for --chown and WORKDIR's owner
// (llb.WithUser + the solver's readUser), where unknown names do not fail.
func TestFileOwner(t *testing.T) {
	full := rootfsWith(t, map[string]string{"etc/passwd": passwd, "etc/group": group})
	empty := t.TempDir()
	tests := []struct {
		rootfs, spec string
		uid, gid     uint32
	}{
		{full, "app", 1000, 1000},
		{full, "daemon", 1, 1},
		{full, "1000", 1000, 1000},
		{full, "4242", 4242, 4242},
		{full, "root", 0, 0},
		{full, "app:docker", 1000, 999},
		{full, "app:7", 1000, 7},
		{full, ":999", 0, 999},
		{full, ":docker", 0, 999},
		{full, "1000:", 1000, 1000},
		{full, "app:", 1000, 1000},
		{full, "ghost", 0, 0},
		{full, "broken", 0, 0}, // a line with a bad uid is skipped, not read as 0:1
		{full, "ghost:docker", 0, 999},
		{full, "app:ghostgroup", 1000, 1000},
		{full, "5:ghostgroup", 5, 5},
		{empty, "app", 0, 0},
		{empty, "app:docker", 0, 0},
		{empty, ":12", 0, 12},
	}
	for _, tt := range tests {
		uid, gid, err := FileOwner(tt.rootfs, tt.spec)
		if err != nil {
			t.Errorf("FileOwner(%q): %v", tt.spec, err)
			continue
		}
		if uid != tt.uid || gid != tt.gid {
			t.Errorf("FileOwner(%q) = %d:%d, want %d:%d", tt.spec, uid, gid, tt.uid, tt.gid)
		}
	}
	dir := rootfsWith(t, map[string]string{"etc/passwd/x": ""})
	if _, _, err := FileOwner(dir, "app"); err == nil {
		t.Error("FileOwner with /etc/passwd a directory: want an error")
	}
}

// Ids are parsed by one function: a number outside 0…MaxID is an error
// everywhere (never wrapped around, never taken as a name that falls back to
// root), while names stay names.
func TestIDRange(t *testing.T) {
	full := rootfsWith(t, map[string]string{"etc/passwd": passwd, "etc/group": group})
	for _, spec := range []string{"4294967296", "4294967296:4294967296", "4294967297:1", "-5", "1:-5", "4294967295", "0:4294967295", "99999999999999999999999"} {
		if u, g, err := FileOwner(full, spec); !errors.Is(err, ErrIDRange) {
			t.Errorf("FileOwner(%q) = %d:%d, %v; want ErrIDRange", spec, u, g, err)
		}
		if u, g, _, err := LookupUser(full, spec); !errors.Is(err, ErrIDRange) {
			t.Errorf("LookupUser(%q) = %d:%d, %v; want ErrIDRange", spec, u, g, err)
		}
	}
	if u, g, err := FileOwner(full, "4294967294:3000000000"); err != nil || u != MaxID || g != 3000000000 {
		t.Errorf("FileOwner(MaxID:3000000000) = %d:%d, %v", u, g, err)
	}
	for s, want := range map[string]bool{"root": true, "0": true, "+7": true, "app": false, "": false, "1a": false, "--5": false, "-": false} {
		if _, numeric, err := ParseID(s); numeric != want || err != nil {
			t.Errorf("ParseID(%q): numeric %v, err %v; want numeric %v", s, numeric, err, want)
		}
	}
}

func TestHome(t *testing.T) {
	full := rootfsWith(t, map[string]string{"etc/passwd": passwd + "second:x:1000:1000::/other:/bin/sh\nnohome:x:7:7::::\n"})
	empty := t.TempDir()
	for _, tc := range []struct {
		rootfs string
		uid    uint32
		want   string
	}{
		{full, 0, "/root"},
		{full, 1000, "/home/app"}, // the first entry for the uid
		{full, 1, "/usr/sbin"},
		{full, 4242, "/"},
		{full, 7, "/"},
		{empty, 0, "/"},
	} {
		if got := Home(tc.rootfs, tc.uid); got != tc.want {
			t.Errorf("Home(%d) = %q, want %q", tc.uid, got, tc.want)
		}
	}
}
