package layer

import (
	"bytes"
	stdgzip "compress/gzip"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"runtime"
	"testing"
	"time"
)

// member returns data as one gzip member with a plain header at level
// (0: stored blocks, which carry data as it is).
func member(t *testing.T, data []byte, level int, name string) []byte {
	t.Helper()
	var b bytes.Buffer
	zw, err := stdgzip.NewWriterLevel(&b, level)
	must(t, err)
	zw.Name = name
	zw.Write(data)
	must(t, zw.Close())
	return b.Bytes()
}

func text(n int, seed uint64) []byte {
	rng := rand.New(rand.NewPCG(seed, 1))
	var b bytes.Buffer
	for b.Len() < n {
		fmt.Fprintf(&b, "line %d %x\n", b.Len(), rng.Uint32()%4096)
	}
	return b.Bytes()[:n]
}

// stdRead is what the standard library's sequential reader gives.
func stdRead(stream []byte) ([]byte, error) {
	zr, err := stdgzip.NewReader(bytes.NewReader(stream))
	if err != nil {
		return nil, err
	}
	return io.ReadAll(zr)
}

// TestGunzipMembers: the parallel reader gives what the sequential one
// gives, for streams it can split and for every kind it must leave to the
// sequential reader (a guess inside a member, a header with a name, one
// member too long to guess, damage, truncation, trailing bytes).
func TestGunzipMembers(t *testing.T) {
	var many, want, withDecoy []byte
	// a stored member whose bytes contain a plain member header
	decoy := append(append(text(5000, 99), memberHeader...), text(5000, 98)...)
	for i := range 12 {
		d := text(300<<10+i*1000, uint64(i))
		m := member(t, d, 6, "")
		many = append(many, m...)
		want = append(want, d...)
		withDecoy = append(withDecoy, m...)
		if i == 5 {
			withDecoy = append(withDecoy, member(t, decoy, 0, "")...)
		}
	}
	if !bytes.Contains(withDecoy[len(many)/2:], memberHeader[:8]) {
		t.Fatal("no decoy header in the stream")
	}
	named := append(append([]byte{}, many...), member(t, text(1000, 7), 6, "a.txt")...)
	big := member(t, text(20<<20, 5), 1, "")
	damaged := bytes.Clone(many)
	damaged[len(damaged)/2] ^= 0x55
	for name, stream := range map[string][]byte{
		"members":   many,
		"decoy":     withDecoy,
		"named":     named,
		"big":       big,
		"damaged":   damaged,
		"truncated": many[:len(many)-5],
		"trailing":  append(append([]byte{}, many...), 0, 0, 0, 0),
		"empty":     member(t, nil, 6, ""),
		"header":    memberHeader[:], // a header and nothing else (found by FuzzApply)
		"header+1":  append(append([]byte{}, memberHeader...), 0),
	} {
		t.Run(name, func(t *testing.T) {
			wantOut, wantErr := stdRead(stream)
			rc, err := Decompress(bytes.NewReader(stream))
			must(t, err)
			got, err := io.ReadAll(rc)
			rc.Close()
			if (err != nil) != (wantErr != nil) {
				t.Fatalf("error %v, the sequential reader's %v", err, wantErr)
			}
			if wantErr == nil && !bytes.Equal(got, wantOut) {
				t.Fatalf("%d bytes differ from the sequential reader's %d", len(got), len(wantOut))
			}
		})
	}
	if got, err := stdRead(many); err != nil || !bytes.Equal(got, want) {
		t.Fatal("the test's stream is not what it should be")
	}
}

// TestGunzipMembersClose: a reader closed before the end leaves no
// goroutine behind.
func TestGunzipMembersClose(t *testing.T) {
	var many []byte
	for i := range 40 {
		many = append(many, member(t, text(500<<10, uint64(i)), 6, "")...)
	}
	before := runtime.NumGoroutine()
	for range 5 {
		rc, err := Decompress(bytes.NewReader(many))
		must(t, err)
		buf := make([]byte, 1<<20)
		if _, err := io.ReadFull(rc, buf); err != nil {
			t.Fatal(err)
		}
		rc.Close()
	}
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > before {
		t.Errorf("%d goroutines after closing, %d before", n, before)
	}
}

// TestCommitPlainHeaders: every member of a committed gzip layer starts
// with the plain header gunzipMembers looks for, so strata's layers are
// inflated in parallel.
func TestCommitPlainHeaders(t *testing.T) {
	dir := t.TempDir()
	genTree(t, dir, 100, 6<<20)
	var b bytes.Buffer
	_, m, err := Commit(context.Background(), dir, &b, Gzip, DiffOptions{})
	must(t, err)
	off := int64(0)
	for i, mem := range m.List {
		if !bytes.HasPrefix(b.Bytes()[off:], memberHeader) {
			t.Fatalf("member %d starts % x", i, b.Bytes()[off:off+10])
		}
		off += mem.CSize
	}
}
