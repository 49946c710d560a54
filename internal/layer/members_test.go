package layer

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding"
	"encoding/hex"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
)

// countingBlob is a ReuseBlob over an in-memory blob that counts the
// member bytes read from it.
func countingBlob(blob []byte, m Members, read *atomic.Int64) ReuseBlob {
	return ReuseBlob{Members: m, Open: func() (io.ReaderAt, error) {
		return readerAtFunc(func(p []byte, off int64) (int, error) {
			read.Add(int64(len(p)))
			return bytes.NewReader(blob).ReadAt(p, off)
		}), nil
	}}
}

type readerAtFunc func(p []byte, off int64) (int, error)

func (f readerAtFunc) ReadAt(p []byte, off int64) (int, error) { return f(p, off) }

// sumsOf returns a DiffOptions.Known for the files of dir: their real
// checksums, as a copy that wrote them knows them.
func sumsOf(t *testing.T, dir string) func(string) (string, bool) {
	t.Helper()
	m := map[string]string{}
	must(t, filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil || !fi.Mode().IsRegular() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		s := sha256.Sum256(b)
		m[filepath.ToSlash(rel)] = hex.EncodeToString(s[:])
		return nil
	}))
	return func(name string) (string, bool) { s, ok := m[name]; return s, ok }
}

// TestCommitMembers: a layer is several members, each a whole gzip member
// or zstd frame, that every reader reads as one stream; the index adds up
// to the blob.
func TestCommitMembers(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	genTree(t, dir, 400, 12<<20)
	var tarBuf bytes.Buffer
	must(t, WriteDiff(ctx, dir, &tarBuf, DiffOptions{}))
	for _, c := range []Compression{Gzip, Zstd} {
		t.Run(string(c), func(t *testing.T) {
			var b bytes.Buffer
			blob, m, err := Commit(ctx, dir, &b, c, DiffOptions{})
			must(t, err)
			if m.Format != MemberFormat(c, 0) {
				t.Errorf("format %q", m.Format)
			}
			if len(m.List) < 3 {
				t.Fatalf("%d members for a %d byte tar", len(m.List), tarBuf.Len())
			}
			var size, csize int64
			for i, mem := range m.List {
				if mem.Size < minMember && i < len(m.List)-1 || mem.Size > maxMember {
					t.Errorf("member %d holds %d bytes", i, mem.Size)
				}
				size += mem.Size
				csize += mem.CSize
			}
			// the members, then their index up to the blob's end
			ix, err := ReadIndex(bytes.NewReader(b.Bytes()), blob.Size)
			if err != nil {
				t.Errorf("a layer of %d members has no index: %v", len(m.List), err)
			} else if len(ix.Members) != len(m.List) {
				t.Errorf("the index lists %d members, the commit %d", len(ix.Members), len(m.List))
			}
			if size != int64(tarBuf.Len()) || csize >= blob.Size {
				t.Errorf("members add up to %d/%d, want %d and less than the blob's %d", size, csize, tarBuf.Len(), blob.Size)
			}
			// the hash state after each member is the state after its
			// bytes: after the last, the whole tar's (the diffID)
			var at int64
			for i, mem := range m.List {
				at += mem.Size
				h := sha256.New()
				h.Write(tarBuf.Bytes()[:at])
				want, _ := h.(encoding.BinaryMarshaler).MarshalBinary()
				if !bytes.Equal(mem.DiffState, want) {
					t.Fatalf("member %d: hash state %x, want %x", i, mem.DiffState, want)
				}
			}
			last := sha256.New()
			must(t, last.(encoding.BinaryUnmarshaler).UnmarshalBinary(m.List[len(m.List)-1].DiffState))
			if d := digest.NewDigestFromBytes(digest.SHA256, last.Sum(nil)); d != blob.DiffID {
				t.Errorf("the last hash state gives %s, the diffID is %s", d, blob.DiffID)
			}
			if c == Gzip {
				// the standard library reads concatenated members as one stream
				zr, err := gzip.NewReader(bytes.NewReader(b.Bytes()))
				must(t, err)
				back, err := io.ReadAll(zr)
				must(t, err)
				if !bytes.Equal(back, tarBuf.Bytes()) {
					t.Error("compress/gzip does not read the layer back")
				}
			}
			// and so do the command line tools, where installed
			tool := map[Compression]string{Gzip: "gzip", Zstd: "zstd"}[c]
			if _, err := exec.LookPath(tool); err == nil {
				cmd := exec.Command(tool, "-dc")
				cmd.Stdin = bytes.NewReader(b.Bytes())
				out, err := cmd.Output()
				if err != nil || !bytes.Equal(out, tarBuf.Bytes()) {
					t.Errorf("%s -dc: %v (%d bytes, want %d)", tool, err, len(out), tarBuf.Len())
				}
			}
		})
	}
}

// TestCommitReuse: a commit of a tree where one file changed takes the
// other members from the earlier blob instead of compressing them again,
// and writes exactly the bytes a commit without reuse writes: with the
// change in the first members (the rest is reused from the earlier blob,
// hashed again) or in the last (the members before it are the earlier
// blob's first members, whose hash state is taken up).
func TestCommitReuse(t *testing.T) {
	ctx := context.Background()
	for _, c := range []Compression{Gzip, Zstd} {
		for _, tc := range []struct {
			name   string
			known  bool
			victim string
		}{
			{"first", false, "d00/sub4/f00200.txt"},
			{"first/known", true, "d00/sub4/f00200.txt"},
			{"last", false, "d49/sub3/f00199.txt"},
			{"last/known", true, "d49/sub3/f00199.txt"},
		} {
			known := tc.known
			t.Run(string(c)+"/"+tc.name, func(t *testing.T) {
				dir := t.TempDir()
				genTree(t, dir, 400, 12<<20)
				opts := func() DiffOptions {
					if known {
						return DiffOptions{Known: sumsOf(t, dir)}
					}
					return DiffOptions{}
				}
				var old bytes.Buffer
				_, oldM, err := Commit(ctx, dir, &old, c, opts())
				must(t, err)

				victim := filepath.Join(dir, filepath.FromSlash(tc.victim))
				f, err := os.OpenFile(victim, os.O_APPEND|os.O_WRONLY, 0)
				must(t, err)
				_, err = f.WriteString("one more line\n")
				must(t, err)
				must(t, f.Close())

				var fresh, reused bytes.Buffer
				freshBlob, freshM, err := Commit(ctx, dir, &fresh, c, opts())
				must(t, err)
				var read atomic.Int64
				reusedBlob, reusedM, err := Commit(ctx, dir, &reused, c, opts(), countingBlob(old.Bytes(), oldM, &read))
				must(t, err)
				if reusedBlob != freshBlob || !bytes.Equal(fresh.Bytes(), reused.Bytes()) {
					t.Fatalf("reuse changed the blob: %s, without reuse %s", reusedBlob.Digest, freshBlob.Digest)
				}
				if len(reusedM.List) != len(freshM.List) {
					t.Errorf("member index differs with reuse")
				}
				same := 0
				for i := range oldM.List {
					if i < len(freshM.List) && oldM.List[i].Sum == freshM.List[i].Sum {
						same++
					}
				}
				if same < len(oldM.List)-3 {
					t.Errorf("one changed file changed %d of %d members", len(oldM.List)-same, len(oldM.List))
				}
				if read.Load() < int64(old.Len())*3/4 {
					t.Errorf("read %d of the earlier blob's %d bytes: members not reused", read.Load(), old.Len())
				}
			})
		}
	}
}

// TestCommitReuseChecked: a member whose identity matches but whose bytes
// in the earlier blob do not hold the data (a damaged blob, or a wrong
// known checksum) is compressed again, never copied, once the commit has
// its bytes: past the first member that changed (see
// TestCommitChainTrustsKnown for the members before it).
func TestCommitReuseChecked(t *testing.T) {
	ctx := context.Background()
	for _, c := range []Compression{Gzip, Zstd} {
		t.Run(string(c)+"/damaged", func(t *testing.T) {
			dir := t.TempDir()
			genTree(t, dir, 200, 6<<20)
			var old bytes.Buffer
			_, oldM, err := Commit(ctx, dir, &old, c, DiffOptions{})
			must(t, err)
			damaged := bytes.Clone(old.Bytes())
			// the trailer of the first member: its size (gzip) or checksum (zstd)
			damaged[oldM.List[0].CSize-2] ^= 0xff
			var fresh, got bytes.Buffer
			want, _, err := Commit(ctx, dir, &fresh, c, DiffOptions{})
			must(t, err)
			var read atomic.Int64
			blob, _, err := Commit(ctx, dir, &got, c, DiffOptions{}, countingBlob(damaged, oldM, &read))
			must(t, err)
			if blob != want || !bytes.Equal(got.Bytes(), fresh.Bytes()) {
				t.Fatal("a damaged member was copied")
			}
			if read.Load() == 0 {
				t.Fatal("the earlier blob was not read at all")
			}
		})
		// With Known, a member of the chain is copied without its bytes:
		// only what it says of itself is checked (the format; gzip's
		// size). A damaged one is read and compressed again, and the
		// chain's hash state still holds.
		t.Run(string(c)+"/damaged-known", func(t *testing.T) {
			dir := t.TempDir()
			genTree(t, dir, 200, 6<<20)
			opts := DiffOptions{Known: sumsOf(t, dir)}
			var old bytes.Buffer
			want, oldM, err := Commit(ctx, dir, &old, c, opts)
			must(t, err)
			damaged := bytes.Clone(old.Bytes())
			if c == Gzip {
				damaged[oldM.List[0].CSize-2] ^= 0xff // the size in its trailer
			} else {
				damaged[0] ^= 0xff // the frame's magic
			}
			var got bytes.Buffer
			blob, _, err := Commit(ctx, dir, &got, c, opts, countingBlob(damaged, oldM, new(atomic.Int64)))
			must(t, err)
			if blob != want || !bytes.Equal(got.Bytes(), old.Bytes()) {
				t.Fatal("a damaged member was copied")
			}
		})
		t.Run(string(c)+"/wrong-known", func(t *testing.T) {
			dir := t.TempDir()
			genTree(t, dir, 200, 6<<20)
			var old bytes.Buffer
			_, oldM, err := Commit(ctx, dir, &old, c, DiffOptions{Known: sumsOf(t, dir)})
			must(t, err)
			// a real change in the first file, with its new checksum
			first := filepath.Join(dir, "d00", "sub0", "f00000.txt")
			must(t, os.WriteFile(first, []byte("changed\n"), 0o644))
			known := sumsOf(t, dir)
			// then change a file's content but keep its size and claim the
			// old checksum, as a stale record of it would
			victim := filepath.Join(dir, "d10", "sub3", "f00010.txt")
			b, err := os.ReadFile(victim)
			must(t, err)
			b[len(b)/2] ^= 0x20
			rewriteKeepTime(t, victim, b)
			var got bytes.Buffer
			blob, _, err := Commit(ctx, dir, &got, c, DiffOptions{Known: known}, countingBlob(old.Bytes(), oldM, new(atomic.Int64)))
			must(t, err)
			rc, err := Decompress(bytes.NewReader(got.Bytes()))
			must(t, err)
			back, err := io.ReadAll(rc)
			must(t, err)
			if digest.FromBytes(back) != blob.DiffID {
				t.Fatal("the blob does not hold the tar its diffID names")
			}
			if !bytes.Contains(back, b[len(b)/2-40:len(b)/2+40]) {
				t.Fatal("the blob lost the changed content")
			}
		})
	}
}

// TestCommitChainTrustsKnown: while the members of a commit are the first
// members of the earlier blob, their files are not read: a checksum the
// commit is given is trusted, so a file changed behind a stale checksum
// there leaves the layer as it was. This is the trust the reuse of a COPY
// layer's members rests on (DiffOptions.Known); without Known, every byte
// is hashed and the change is found.
func TestCommitChainTrustsKnown(t *testing.T) {
	ctx := context.Background()
	for _, c := range []Compression{Gzip, Zstd} {
		t.Run(string(c), func(t *testing.T) {
			dir, known, old, oldBlob, oldM := staleCommit(t, c)
			var got bytes.Buffer
			var read atomic.Int64
			blob, m, err := Commit(ctx, dir, &got, c, DiffOptions{Known: known}, countingBlob(old.Bytes(), oldM, &read))
			must(t, err)
			if blob != oldBlob || !bytes.Equal(got.Bytes(), old.Bytes()) || len(m.List) != len(oldM.List) {
				t.Fatalf("the chain read a file it trusts: %s, earlier %s", blob.Digest, oldBlob.Digest)
			}
			if read.Load() != sumCSize(oldM) {
				t.Errorf("copied %d bytes of the earlier blob's %d bytes of members", read.Load(), sumCSize(oldM))
			}

			got.Reset()
			blob, _, err = Commit(ctx, dir, &got, c, DiffOptions{}, countingBlob(old.Bytes(), oldM, new(atomic.Int64)))
			must(t, err)
			if blob.DiffID == oldBlob.DiffID {
				t.Fatal("without Known, the change was not found")
			}
		})
	}
}

// TestCommitChainDamagedAndStale: a member of the chain that cannot be
// copied is read; when its bytes then are not the earlier member's
// although its checksums say so, the members after it (copied on the
// strength of the earlier hash states) cannot be trusted: the commit
// fails instead of writing a blob its diffID does not name.
func TestCommitChainDamagedAndStale(t *testing.T) {
	ctx := context.Background()
	dir, known, old, _, oldM := staleCommit(t, Gzip)
	damaged := bytes.Clone(old.Bytes())
	var end int64
	for _, m := range oldM.List { // every member's size trailer
		end += m.CSize
		damaged[end-2] ^= 0xff
	}
	_, _, err := Commit(ctx, dir, io.Discard, Gzip, DiffOptions{Known: known}, countingBlob(damaged, oldM, new(atomic.Int64)))
	if err == nil || !strings.Contains(err.Error(), "--no-cache") {
		t.Fatalf("a stale checksum behind a damaged blob: %v", err)
	}
}

// TestCommitHoleShrank: a known file that shrinks between the walk and the
// read of its bytes fails the commit.
func TestCommitHoleShrank(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	genTree(t, dir, 50, 2<<20)
	sums := sumsOf(t, dir)
	victim := filepath.Join(dir, "d10", "sub3", "f00010.txt")
	known := func(name string) (string, bool) {
		if name == "d10/sub3/f00010.txt" {
			// asked for after the walk took the file's size
			must(t, os.Truncate(victim, 10))
		}
		return sums(name)
	}
	_, _, err := Commit(ctx, dir, io.Discard, Gzip, DiffOptions{Known: known})
	if err == nil || !strings.Contains(err.Error(), "shrank") {
		t.Fatalf("a file that shrank: %v", err)
	}
}

// slowWriter is a blob file that takes its time with each write.
type slowWriter struct{ bytes.Buffer }

func (w *slowWriter) Write(p []byte) (int, error) {
	time.Sleep(2 * time.Millisecond)
	return w.Buffer.Write(p)
}

// TestCommitSlowWriter: the blob's digest is the digest of the bytes the
// writer got, also when it is slower than the compression (a member's
// buffer is used again only once it is written and hashed).
func TestCommitSlowWriter(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	genTree(t, dir, 200, 12<<20)
	for _, c := range []Compression{Gzip, Zstd} {
		var old bytes.Buffer
		_, oldM, err := Commit(ctx, dir, &old, c, DiffOptions{})
		must(t, err)
		// members read from the earlier blob are of the sizes whose
		// buffers come back
		var w slowWriter
		blob, _, err := Commit(ctx, dir, &w, c, DiffOptions{}, countingBlob(old.Bytes(), oldM, new(atomic.Int64)))
		must(t, err)
		if d := digest.FromBytes(w.Bytes()); d != blob.Digest || int64(w.Len()) != blob.Size {
			t.Errorf("%s: wrote %d bytes hashing to %s, the commit says %s (%d bytes)", c, w.Len(), d, blob.Digest, blob.Size)
		}
	}
}

// staleCommit commits a tree with the checksums of its files known, then
// changes a file near its start behind its checksum, now stale: the
// content only, size and modification time kept.
func staleCommit(t *testing.T, c Compression) (dir string, known func(string) (string, bool), old *bytes.Buffer, oldBlob Blob, oldM Members) {
	t.Helper()
	dir = t.TempDir()
	genTree(t, dir, 200, 6<<20)
	known = sumsOf(t, dir)
	old = new(bytes.Buffer)
	oldBlob, oldM, err := Commit(context.Background(), dir, old, c, DiffOptions{Known: known})
	must(t, err)
	victim := filepath.Join(dir, "d01", "sub1", "f00001.txt")
	b, err := os.ReadFile(victim)
	must(t, err)
	b[len(b)/2] ^= 0x20
	rewriteKeepTime(t, victim, b)
	return dir, known, old, oldBlob, oldM
}

// rewriteKeepTime writes b to the file p and gives it back its
// modification time: a change of content only, as a stale checksum hides.
func rewriteKeepTime(t *testing.T, p string, b []byte) {
	t.Helper()
	fi, err := os.Stat(p)
	must(t, err)
	must(t, os.WriteFile(p, b, 0o644))
	must(t, os.Chtimes(p, fi.ModTime(), fi.ModTime()))
}

func sumCSize(m Members) (n int64) {
	for _, mem := range m.List {
		n += mem.CSize
	}
	return n
}

// TestCommitReuseOtherFormat: members of a blob made at another level are
// never taken.
func TestCommitReuseOtherFormat(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	genTree(t, dir, 100, 3<<20)
	var old bytes.Buffer
	_, oldM, err := Commit(ctx, dir, &old, Gzip, DiffOptions{Level: 1})
	must(t, err)
	var read atomic.Int64
	_, m, err := Commit(ctx, dir, io.Discard, Gzip, DiffOptions{Level: 6}, countingBlob(old.Bytes(), oldM, &read))
	must(t, err)
	if read.Load() != 0 || !strings.Contains(m.Format, "/6/") {
		t.Errorf("read %d bytes of a level 1 blob for a level 6 commit (format %q)", read.Load(), m.Format)
	}
}

func TestCommitEmpty(t *testing.T) {
	for _, c := range []Compression{Gzip, Zstd} {
		var b bytes.Buffer
		blob, err := Compress(context.Background(), bytes.NewReader(nil), &b, c)
		must(t, err)
		rc, err := Decompress(bytes.NewReader(b.Bytes()))
		must(t, err)
		back, err := io.ReadAll(rc)
		must(t, err)
		if len(back) != 0 || blob.DiffID != digest.FromBytes(nil) {
			t.Errorf("%s: an empty stream gives %d bytes, diffID %s", c, len(back), blob.DiffID)
		}
	}
}
