package layer

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/bzip2"
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/klauspost/pgzip"
	"github.com/opencontainers/go-digest"
	"github.com/strata-build/strata/internal/ctxio"
)

// Compression names a layer compression.
type Compression string

// Supported layer compressions.
const (
	Gzip         Compression = "gzip"
	Zstd         Compression = "zstd"
	Uncompressed Compression = "uncompressed"
)

// OCI layer media types.
const (
	mediaTypeTar     = "application/vnd.oci.image.layer.v1.tar"
	mediaTypeTarGzip = "application/vnd.oci.image.layer.v1.tar+gzip"
	mediaTypeTarZstd = "application/vnd.oci.image.layer.v1.tar+zstd"
)

// MediaType returns the OCI media type for a layer with compression c
// (application/vnd.oci.image.layer.v1.tar+gzip, ...+zstd, ...tar).
// It returns "" for an unknown compression.
func (c Compression) MediaType() string {
	switch c {
	case Gzip:
		return mediaTypeTarGzip
	case Zstd:
		return mediaTypeTarZstd
	case Uncompressed:
		return mediaTypeTar
	}
	return ""
}

// Blob describes a layer blob: what Commit writes, what an image lists
// (image.Layer) and what a cache record keeps (cache.Layer). It is strata's
// one layer descriptor; the JSON names are those of the cache records.
type Blob struct {
	Digest    digest.Digest `json:"digest"` // of the compressed bytes; "" for a layer kept only unpacked
	DiffID    digest.Digest `json:"diffID"` // of the uncompressed tar
	Size      int64         `json:"size"`   // compressed size
	MediaType string        `json:"mediaType"`
}

// Commit streams the tar from WriteDiff(dir) through compression c into w,
// computing both digests on the way, without buffering the whole layer in
// memory and without temp files, and returns the blob's members (see
// Members). Members of reuse whose bytes the layer holds are copied from
// those blobs instead of compressed again. The output is deterministic: the
// same directory gives the same bytes, with or without reuse.
func Commit(ctx context.Context, dir string, w io.Writer, c Compression, opts DiffOptions, reuse ...ReuseBlob) (Blob, Members, error) {
	b, m, err := compressFrom(w, c, opts.Level, reuse, func(tw io.Writer) error {
		return WriteDiff(ctx, dir, tw, opts)
	})
	if err != nil {
		return Blob{}, Members{}, fmt.Errorf("commit layer %s: %w", dir, err)
	}
	return b, m, nil
}

// DiffID returns the diffID of the layer Commit would write for dir (the
// digest of WriteDiff's tar) without writing or compressing anything. A
// layer recorded by its diffID alone can be committed later: Commit of the
// same, unchanged directory with the same opts.Epoch gives that diffID.
func DiffID(ctx context.Context, dir string, opts DiffOptions) (digest.Digest, error) {
	h := digest.SHA256.Digester()
	if err := WriteDiff(ctx, dir, h.Hash(), opts); err != nil {
		return "", err
	}
	return h.Digest(), nil
}

// Compress is like Commit for an existing uncompressed tar stream r (used by
// `strata import` and `strata load`): its bytes are kept as they are, and
// the blob is cut at its entries and gets an index as a committed layer
// does (see copyTar). The stream is not validated as a tar: one that does
// not read as a tar is compressed all the same, without an index.
func Compress(ctx context.Context, r io.Reader, w io.Writer, c Compression) (Blob, error) {
	b, _, err := compressFrom(w, c, 0, nil, func(tw io.Writer) error {
		r := ctxio.Reader(ctx, r)
		if ew, ok := tw.(entryWriter); ok {
			return copyTar(r, ew)
		}
		_, err := io.Copy(tw, r)
		return err
	})
	if err != nil {
		return Blob{}, fmt.Errorf("compress layer: %w", err)
	}
	return b, nil
}

// entryWriter is a writer of a tar stream that wants to know where its
// entries start (Boundary, before an entry's header), what is known of a
// file's content (Content, between its header and its content: true when
// it reads the content from path itself, see memberWriter.Content) and
// where the last entry ends (End, before the end-of-archive blocks).
type entryWriter interface {
	io.Writer
	Boundary(hdr *tar.Header)
	Content(size int64, sum, path string) bool
	End()
}

// compressFrom runs produce with a writer whose bytes are hashed (DiffID),
// compressed with c, hashed again (Digest), counted and written to w.
func compressFrom(w io.Writer, c Compression, level int, reuse []ReuseBlob, produce func(io.Writer) error) (Blob, Members, error) {
	if c == Uncompressed {
		blobDigester := digest.SHA256.Digester()
		cw := &countWriter{w: io.MultiWriter(w, blobDigester.Hash())}
		if err := produce(cw); err != nil {
			return Blob{}, Members{}, err
		}
		d := blobDigester.Digest()
		return Blob{Digest: d, DiffID: d, Size: cw.n, MediaType: c.MediaType()}, Members{}, nil
	}
	cw := &countWriter{w: w}
	mw, err := newMemberWriter(cw, c, level, reuse)
	if err != nil {
		return Blob{}, Members{}, err
	}
	if err := produce(mw); err != nil {
		_ = mw.Close() // release the workers; the output is garbage anyway
		return Blob{}, Members{}, err
	}
	if err := mw.Close(); err != nil {
		return Blob{}, Members{}, fmt.Errorf("finish %s stream: %w", c, err)
	}
	diffID, blob := mw.Digests()
	return Blob{Digest: blob, DiffID: diffID, Size: cw.n, MediaType: c.MediaType()}, mw.Members(), nil
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// format is a stream format detected from magic bytes.
type format int

const (
	formatPlain format = iota
	formatGzip
	formatZstd
	formatBzip2
	formatXz
)

var (
	magicGzip  = []byte{0x1f, 0x8b}
	magicZstd  = []byte{0x28, 0xb5, 0x2f, 0xfd}
	magicBzip2 = []byte("BZh")
	magicXz    = []byte{0xfd, '7', 'z', 'X', 'Z', 0x00}
)

// maxMagic is the number of head bytes detect needs.
const maxMagic = 6

func detect(head []byte) format {
	switch {
	case bytes.HasPrefix(head, magicGzip):
		return formatGzip
	case bytes.HasPrefix(head, magicZstd):
		return formatZstd
	case bytes.HasPrefix(head, magicBzip2) && len(head) > 3 && head[3] >= '1' && head[3] <= '9':
		return formatBzip2
	case bytes.HasPrefix(head, magicXz):
		return formatXz
	}
	return formatPlain
}

// Decompress returns the uncompressed stream of r, detecting gzip, zstd, bzip2
// or plain tar by magic bytes. xz is recognised and rejected (not in the
// standard library). Closing the result releases the decompressor; it does not
// close r.
func Decompress(r io.Reader) (io.ReadCloser, error) {
	br := bufio.NewReaderSize(r, 64<<10)
	head, err := br.Peek(max(maxMagic, gzipHeaderLen))
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("read stream header: %w", err)
	}
	switch detect(head) {
	case formatGzip:
		if bytes.HasPrefix(head, memberHeader) {
			// perhaps many members: inflated in parallel (inflate.go)
			return gunzipMembers(br), nil
		}
		// pgzip decompresses ahead in its own goroutine, so inflating
		// overlaps with writing the files (about a third of an unpack).
		zr, err := pgzip.NewReaderN(br, 1<<20, 4)
		if err != nil {
			return nil, fmt.Errorf("open gzip stream: %w", err)
		}
		return zr, nil
	case formatZstd:
		zr, err := zstd.NewReader(br)
		if err != nil {
			return nil, fmt.Errorf("open zstd stream: %w", err)
		}
		return zstdReadCloser{zr}, nil
	case formatBzip2:
		return io.NopCloser(bzip2.NewReader(br)), nil
	case formatXz:
		return nil, errors.New("xz compressed streams are not supported")
	}
	return io.NopCloser(br), nil
}

type zstdReadCloser struct{ *zstd.Decoder }

func (z zstdReadCloser) Close() error {
	z.Decoder.Close()
	return nil
}

// ArchiveHeadSize is how many leading bytes of a file IsArchive needs to decide
// reliably for every format it accepts (a whole zstd block plus the frame
// header fits). Pass min(file size, ArchiveHeadSize) bytes.
const ArchiveHeadSize = 256 << 10

// IsArchive reports whether head, the first bytes of a file, looks like a tar
// archive: plain (the "ustar" magic at offset 257 and a valid header
// checksum), or gzip, zstd or bzip2 compressed with such a header inside.
// xz is reported as not an archive (no decompressor in the standard library),
// so ADD copies .tar.xz files as they are. A bzip2 head too short to decode
// its first block is judged by its magic alone.
func IsArchive(head []byte) bool {
	var (
		zr  io.Reader
		err error
	)
	switch detect(head) {
	case formatPlain:
		return isTarHeader(head)
	case formatXz:
		return false
	case formatGzip:
		zr, err = gzip.NewReader(bytes.NewReader(head))
		if err != nil {
			return false
		}
	case formatZstd:
		d, err := zstd.NewReader(bytes.NewReader(head), zstd.WithDecoderConcurrency(1))
		if err != nil {
			return false
		}
		defer d.Close()
		zr = d
	case formatBzip2:
		zr = bzip2.NewReader(bytes.NewReader(head))
	}
	buf := make([]byte, tarBlockSize)
	_, err = io.ReadFull(zr, buf)
	if err != nil {
		// A bzip2 block is up to 900 kB: a head cut inside the first block
		// cannot be decoded, so trust the signature (block magic after "BZhN").
		if detect(head) == formatBzip2 && !errors.Is(err, io.EOF) &&
			len(head) >= 10 && bytes.Equal(head[4:10], []byte{0x31, 0x41, 0x59, 0x26, 0x53, 0x59}) {
			return true
		}
		return false
	}
	return isTarHeader(buf)
}

// tarBlockSize is the tar format's block: headers and padded contents
// are whole blocks.
const tarBlockSize = 512

// isTarHeader reports whether b starts with a POSIX or GNU tar header: the
// "ustar" magic at offset 257 and a matching header checksum.
func isTarHeader(b []byte) bool {
	if len(b) < tarBlockSize || !bytes.Equal(b[257:262], []byte("ustar")) {
		return false
	}
	field := bytes.TrimRight(bytes.TrimLeft(b[148:156], " \x00"), " \x00")
	want, err := strconv.ParseInt(string(field), 8, 64)
	if err != nil {
		return false
	}
	var unsigned, signed int64
	for i, c := range b[:tarBlockSize] {
		if i >= 148 && i < 156 {
			c = ' '
		}
		unsigned += int64(c)
		signed += int64(int8(c))
	}
	return want == unsigned || want == signed
}
