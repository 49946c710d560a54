package layer

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/opencontainers/go-digest"
)

// genTree writes files files totalling about size bytes of compressible,
// pseudo-random text under dir (fixed seed: same tree every time).
func genTree(t testing.TB, dir string, files int, size int64) int64 {
	t.Helper()
	rng := rand.New(rand.NewPCG(1, 2))
	words := strings.Fields("alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi omicron pi rho sigma tau upsilon phi chi psi omega 0 1 2 3 4 5 6 7 8 9")
	per := size / int64(files)
	var total int64
	var buf bytes.Buffer
	for i := range files {
		buf.Reset()
		for int64(buf.Len()) < per {
			buf.WriteString(words[rng.IntN(len(words))])
			if rng.IntN(8) == 0 {
				fmt.Fprintf(&buf, "%x", rng.Uint64())
			}
			buf.WriteByte(' ')
		}
		p := filepath.Join(dir, fmt.Sprintf("d%02d", i%50), fmt.Sprintf("sub%d", i%7), fmt.Sprintf("f%05d.txt", i))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, buf.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
		total += int64(buf.Len())
	}
	return total
}

func TestCommitDeterministic(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	genTree(t, dir, 200, 4<<20) // > pgzip block size, several zstd blocks
	var tarBuf bytes.Buffer
	must(t, WriteDiff(ctx, dir, &tarBuf, DiffOptions{}))
	tarDigest := digest.FromBytes(tarBuf.Bytes())

	for _, c := range []Compression{Gzip, Zstd, Uncompressed} {
		t.Run(string(c), func(t *testing.T) {
			var b1, b2 bytes.Buffer
			blob1, _, err := Commit(ctx, dir, &b1, c, DiffOptions{})
			must(t, err)
			blob2, _, err := Commit(ctx, dir, &b2, c, DiffOptions{})
			must(t, err)
			if blob1 != blob2 || !bytes.Equal(b1.Bytes(), b2.Bytes()) {
				t.Errorf("two commits differ: %+v vs %+v", blob1, blob2)
			}
			if blob1.DiffID != tarDigest {
				t.Errorf("DiffID %s, want sha256 of WriteDiff %s", blob1.DiffID, tarDigest)
			}
			if blob1.Digest != digest.FromBytes(b1.Bytes()) || blob1.Size != int64(b1.Len()) {
				t.Errorf("Digest/Size %s/%d do not describe the written bytes (%s/%d)", blob1.Digest, blob1.Size, digest.FromBytes(b1.Bytes()), b1.Len())
			}
			if blob1.MediaType != c.MediaType() {
				t.Errorf("MediaType %q", blob1.MediaType)
			}
			if c == Uncompressed && (blob1.Digest != blob1.DiffID || !bytes.Equal(b1.Bytes(), tarBuf.Bytes())) {
				t.Error("uncompressed blob is not the tar")
			}
			if c != Uncompressed && b1.Len() >= tarBuf.Len()/2 {
				t.Errorf("%s: %d bytes from %d: not compressed", c, b1.Len(), tarBuf.Len())
			}

			rc, err := Decompress(bytes.NewReader(b1.Bytes()))
			must(t, err)
			back, err := io.ReadAll(rc)
			must(t, err)
			must(t, rc.Close())
			if !bytes.Equal(back, tarBuf.Bytes()) {
				t.Error("Decompress(Commit) is not the WriteDiff tar")
			}

			// Compress cuts a stream into members without knowing its
			// entries, so its bytes differ from Commit's; its content not.
			var b3 bytes.Buffer
			blob3, err := Compress(ctx, bytes.NewReader(tarBuf.Bytes()), &b3, c)
			must(t, err)
			if blob3.DiffID != blob1.DiffID || blob3.Digest != digest.FromBytes(b3.Bytes()) {
				t.Errorf("Compress(tar) = %+v, Commit = %+v", blob3, blob1)
			}
			rc3, err := Decompress(bytes.NewReader(b3.Bytes()))
			must(t, err)
			back3, err := io.ReadAll(rc3)
			must(t, err)
			if !bytes.Equal(back3, tarBuf.Bytes()) {
				t.Error("Decompress(Compress(tar)) is not the tar")
			}

			// The compressed bytes must not depend on the machine's CPU count.
			prev := runtime.GOMAXPROCS(1)
			var b4 bytes.Buffer
			blob4, _, err := Commit(ctx, dir, &b4, c, DiffOptions{})
			runtime.GOMAXPROCS(prev)
			must(t, err)
			if blob4 != blob1 {
				t.Errorf("GOMAXPROCS=1 gives %s, GOMAXPROCS=%d gives %s", blob4.Digest, prev, blob1.Digest)
			}
		})
	}
	if _, _, err := Commit(ctx, dir, io.Discard, "lz4", DiffOptions{}); err == nil {
		t.Error("unknown compression accepted")
	}
}

func TestMediaType(t *testing.T) {
	for c, want := range map[Compression]string{
		Gzip:         "application/vnd.oci.image.layer.v1.tar+gzip",
		Zstd:         "application/vnd.oci.image.layer.v1.tar+zstd",
		Uncompressed: "application/vnd.oci.image.layer.v1.tar",
		"lz4":        "",
	} {
		if got := c.MediaType(); got != want {
			t.Errorf("%s.MediaType() = %q, want %q", c, got, want)
		}
	}
}

func zstdBytes(b []byte) []byte {
	e, _ := zstd.NewWriter(nil)
	defer e.Close()
	return e.EncodeAll(b, nil)
}

func TestDecompressFormats(t *testing.T) {
	plain := newTB().file("a", "hello", 0o644).bytes()
	for name, in := range map[string][]byte{
		"plain": plain,
		"gzip":  gz(plain),
		"zstd":  zstdBytes(plain),
		"empty": nil,
		"tiny":  []byte("x"),
	} {
		rc, err := Decompress(bytes.NewReader(in))
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		out, err := io.ReadAll(rc)
		rc.Close()
		want := plain
		if name == "empty" || name == "tiny" {
			want = in
		}
		if err != nil || !bytes.Equal(out, want) {
			t.Errorf("%s: got %d bytes, %v", name, len(out), err)
		}
	}
	if _, err := Decompress(bytes.NewReader([]byte{0xfd, '7', 'z', 'X', 'Z', 0, 1, 2})); err == nil || !strings.Contains(err.Error(), "xz") {
		t.Errorf("xz: err = %v", err)
	}
	if bz, ok := runTool(t, plain, "bzip2", "-c"); ok {
		rc, err := Decompress(bytes.NewReader(bz))
		must(t, err)
		out, err := io.ReadAll(rc)
		if err != nil || !bytes.Equal(out, plain) {
			t.Errorf("bzip2: %d bytes, %v", len(out), err)
		}
	}
}

// runTool pipes in through an external compressor (skipping that part of a
// test when the tool is missing).
func runTool(t *testing.T, in []byte, name string, args ...string) ([]byte, bool) {
	t.Helper()
	if _, err := exec.LookPath(name); err != nil {
		t.Logf("%s not installed: skipping its cases", name)
		return nil, false
	}
	cmd := exec.Command(name, args...)
	cmd.Stdin = bytes.NewReader(in)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return out, true
}

func TestIsArchive(t *testing.T) {
	plain := newTB().dir("etc/", 0o755).file("etc/motd", "hello", 0o644).bytes()
	text := []byte(strings.Repeat("just some text, not a tar archive\n", 100))
	dir := t.TempDir()
	genTree(t, dir, 20, 2<<20)
	var bigTar bytes.Buffer
	must(t, WriteDiff(context.Background(), dir, &bigTar, DiffOptions{}))

	head := func(b []byte) []byte { return b[:min(len(b), ArchiveHeadSize)] }
	var zbig bytes.Buffer
	_, err := Compress(context.Background(), bytes.NewReader(bigTar.Bytes()), &zbig, Zstd)
	must(t, err)
	var gbig bytes.Buffer
	_, err = Compress(context.Background(), bytes.NewReader(bigTar.Bytes()), &gbig, Gzip)
	must(t, err)
	notTarWithUstar := make([]byte, 1024)
	copy(notTarWithUstar[257:], "ustar")

	cases := map[string]struct {
		head []byte
		want bool
	}{
		"plain tar":                 {plain, true},
		"tar.gz":                    {gz(plain), true},
		"tar.zst":                   {zstdBytes(plain), true},
		"big tar.gz head":           {head(gbig.Bytes()), true},
		"big tar.zst head":          {head(zbig.Bytes()), true},
		"big tar.gz 600-byte head":  {gbig.Bytes()[:600], true},
		"text":                      {text, false},
		"gzip text":                 {gz(text), false},
		"zstd text":                 {zstdBytes(text), false},
		"xz magic":                  {[]byte{0xfd, '7', 'z', 'X', 'Z', 0, 0, 4, 0xe6, 0xd6, 0xb4, 0x46}, false},
		"empty":                     {nil, false},
		"short plain":               {plain[:300], false},
		"ustar magic, bad checksum": {notTarWithUstar, false},
		"gzip magic only":           {[]byte{0x1f, 0x8b}, false},
		"zstd magic only":           {[]byte{0x28, 0xb5, 0x2f, 0xfd}, false},
		"bzip2 magic only":          {[]byte("BZh9"), false},
	}
	if bz, ok := runTool(t, plain, "bzip2", "-c"); ok {
		cases["tar.bz2"] = struct {
			head []byte
			want bool
		}{bz, true}
		bzText, _ := runTool(t, text, "bzip2", "-c")
		cases["bzip2 text"] = struct {
			head []byte
			want bool
		}{bzText, false}
		bzBig, _ := runTool(t, bigTar.Bytes(), "bzip2", "-c")
		cases["big tar.bz2 head (block cut)"] = struct {
			head []byte
			want bool
		}{bzBig[:4096], true}
	}
	if xzTar, ok := runTool(t, plain, "xz", "-c"); ok {
		cases["tar.xz (not supported: copied as a file)"] = struct {
			head []byte
			want bool
		}{xzTar, false}
	}
	for name, tc := range cases {
		if got := IsArchive(tc.head); got != tc.want {
			t.Errorf("%s: IsArchive = %v, want %v", name, got, tc.want)
		}
	}
	// gzip.NewReader must not hang or panic on garbage after the magic.
	_ = IsArchive(append([]byte{0x1f, 0x8b}, text...))
}

// A layer recorded by DiffID alone is compressed later from the same
// directory: Commit must then give the recorded diffID, also after what a
// build does to a committed layer meanwhile (its files linked from other
// layers, which changes their ctime and link count).
func TestDiffIDThenCommit(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	genTree(t, dir, 40, 1<<20)
	must(t, os.Link(filepath.Join(dir, "d01", "sub1", "f00001.txt"), filepath.Join(dir, "d01", "pair")))
	epoch := time.Unix(1000, 0)
	for _, opts := range []DiffOptions{{}, {Epoch: &epoch}} {
		id, err := DiffID(ctx, dir, opts)
		must(t, err)
		var tarBuf bytes.Buffer
		must(t, WriteDiff(ctx, dir, &tarBuf, opts))
		if id != digest.FromBytes(tarBuf.Bytes()) {
			t.Fatalf("DiffID %s is not the digest of WriteDiff's tar", id)
		}
		other := t.TempDir()
		must(t, os.Link(filepath.Join(dir, "d02", "sub2", "f00002.txt"), filepath.Join(other, "x")))
		must(t, os.Link(filepath.Join(dir, "d01", "pair"), filepath.Join(other, "y")))
		time.Sleep(10 * time.Millisecond)
		blob, _, err := Commit(ctx, dir, io.Discard, Gzip, opts)
		must(t, err)
		if blob.DiffID != id {
			t.Errorf("epoch %v: Commit later gives diffID %s, DiffID gave %s", opts.Epoch, blob.DiffID, id)
		}
	}
	withEpoch, err := DiffID(ctx, dir, DiffOptions{Epoch: &epoch})
	must(t, err)
	without, err := DiffID(ctx, dir, DiffOptions{})
	must(t, err)
	if withEpoch == without {
		t.Error("the epoch does not change the diffID of files newer than it")
	}
}
