package conformance

// Flattening: an image archive (docker save, or an OCI image layout tar) is
// read, its layers are applied in order with OCI whiteout semantics, and the
// result is normalized into a doc: the image config fields that matter plus
// one fileEntry per path. The document schema and its normalization rules are
// those of the team kit's imgdiff (see testdata/README.md), so that the
// expected.json files made from BuildKit's images can be compared directly.

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"runtime"
	"sort"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/klauspost/compress/zstd"
)

// doc is the normalized description of an image (the expected.json schema).
type doc struct {
	Config imageConfig `json:"config"`
	Files  []fileEntry `json:"files"`
}

// imageConfig holds the compared config fields. Absent, null and empty values
// are all normalized to empty (never nil) lists, maps and strings.
type imageConfig struct {
	Env          []string          `json:"Env"`
	Entrypoint   []string          `json:"Entrypoint"`
	Cmd          []string          `json:"Cmd"`
	WorkingDir   string            `json:"WorkingDir"`
	User         string            `json:"User"`
	ExposedPorts []string          `json:"ExposedPorts"` // sorted map keys
	Volumes      []string          `json:"Volumes"`      // sorted map keys
	Labels       map[string]string `json:"Labels"`
	StopSignal   string            `json:"StopSignal"`
	Healthcheck  *healthcheck      `json:"Healthcheck"`
	Shell        []string          `json:"Shell"`
	OnBuild      []string          `json:"OnBuild"`
}

// healthcheck durations are Go duration strings; zero is "0s".
type healthcheck struct {
	Test          []string `json:"Test"`
	Interval      string   `json:"Interval"`
	Timeout       string   `json:"Timeout"`
	StartPeriod   string   `json:"StartPeriod"`
	StartInterval string   `json:"StartInterval"`
	Retries       int      `json:"Retries"`
}

// fileEntry is one path of the flattened filesystem (the root is left out).
type fileEntry struct {
	Path       string `json:"path"`
	Type       string `json:"type"` // file, dir, symlink, char, block, fifo
	Mode       string `json:"mode"` // 4 octal digits with setuid/setgid/sticky
	UID        int    `json:"uid"`
	GID        int    `json:"gid"`
	Size       int64  `json:"size"`
	SHA256     string `json:"sha256,omitempty"`
	Link       string `json:"link,omitempty"`
	NlinkGroup string `json:"nlinkgroup,omitempty"` // smallest path of the hardlink set
}

func emptyIfNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func (c *imageConfig) normalize() {
	for _, p := range []*[]string{&c.Env, &c.Entrypoint, &c.Cmd, &c.ExposedPorts, &c.Volumes, &c.Shell, &c.OnBuild} {
		*p = emptyIfNil(*p)
	}
	if c.Labels == nil {
		c.Labels = map[string]string{}
	}
	if h := c.Healthcheck; h != nil {
		h.Test = emptyIfNil(h.Test)
		for _, d := range []*string{&h.Interval, &h.Timeout, &h.StartPeriod, &h.StartInterval} {
			if *d == "" {
				*d = "0s"
			}
		}
	}
}

// configFromBlob extracts and normalizes the compared fields of an image
// config blob (OCI or Docker: both keep them under "config").
func configFromBlob(blob []byte) (imageConfig, error) {
	var raw struct {
		Config struct {
			Env          []string                   `json:"Env"`
			Entrypoint   []string                   `json:"Entrypoint"`
			Cmd          []string                   `json:"Cmd"`
			WorkingDir   string                     `json:"WorkingDir"`
			User         string                     `json:"User"`
			ExposedPorts map[string]json.RawMessage `json:"ExposedPorts"`
			Volumes      map[string]json.RawMessage `json:"Volumes"`
			Labels       map[string]string          `json:"Labels"`
			StopSignal   string                     `json:"StopSignal"`
			Healthcheck  *struct {
				Test          []string `json:"Test"`
				Interval      int64    `json:"Interval"`
				Timeout       int64    `json:"Timeout"`
				StartPeriod   int64    `json:"StartPeriod"`
				StartInterval int64    `json:"StartInterval"`
				Retries       int      `json:"Retries"`
			} `json:"Healthcheck"`
			Shell   []string `json:"Shell"`
			OnBuild []string `json:"OnBuild"`
		} `json:"config"`
	}
	if err := json.Unmarshal(blob, &raw); err != nil {
		return imageConfig{}, fmt.Errorf("image config: %w", err)
	}
	rc := raw.Config
	sortedKeys := func(m map[string]json.RawMessage) []string {
		ks := []string{}
		for k := range m {
			ks = append(ks, k)
		}
		sort.Strings(ks)
		return ks
	}
	c := imageConfig{
		Env:          rc.Env,
		Entrypoint:   rc.Entrypoint,
		Cmd:          rc.Cmd,
		WorkingDir:   rc.WorkingDir,
		User:         rc.User,
		ExposedPorts: sortedKeys(rc.ExposedPorts),
		Volumes:      sortedKeys(rc.Volumes),
		Labels:       rc.Labels,
		StopSignal:   rc.StopSignal,
		Shell:        rc.Shell,
		OnBuild:      rc.OnBuild,
	}
	if h := rc.Healthcheck; h != nil {
		dur := func(ns int64) string { return time.Duration(ns).String() }
		c.Healthcheck = &healthcheck{
			Test: h.Test, Interval: dur(h.Interval), Timeout: dur(h.Timeout),
			StartPeriod: dur(h.StartPeriod), StartInterval: dur(h.StartInterval), Retries: h.Retries,
		}
	}
	c.normalize()
	return c, nil
}

// --- reading the archive ------------------------------------------------------

// archiveFiles is an image archive read into memory: regular files by cleaned
// name (without a leading slash), and symlinks between them.
type archiveFiles struct {
	data  map[string][]byte
	links map[string]string // name -> target (symlink or hardlink inside the archive)
}

func readArchive(r io.Reader) (*archiveFiles, error) {
	a := &archiveFiles{data: map[string][]byte{}, links: map[string]string{}}
	tr := tar.NewReader(r)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return a, nil
		}
		if err != nil {
			return nil, fmt.Errorf("reading archive: %w", err)
		}
		name := strings.TrimPrefix(path.Clean("/"+hdr.Name), "/")
		switch hdr.Typeflag {
		case tar.TypeReg: // the reader turns TypeRegA into TypeReg
			b, err := io.ReadAll(tr)
			if err != nil {
				return nil, fmt.Errorf("reading archive entry %s: %w", name, err)
			}
			a.data[name] = b
		case tar.TypeSymlink:
			t := hdr.Linkname
			if !path.IsAbs(t) {
				t = path.Join(path.Dir(name), t)
			}
			a.links[name] = strings.TrimPrefix(path.Clean("/"+t), "/")
		case tar.TypeLink:
			a.links[name] = strings.TrimPrefix(path.Clean("/"+hdr.Linkname), "/")
		}
	}
}

func (a *archiveFiles) get(name string) ([]byte, error) {
	name = strings.TrimPrefix(path.Clean("/"+name), "/")
	for hops := 0; hops < 32; hops++ {
		if b, ok := a.data[name]; ok {
			return b, nil
		}
		t, ok := a.links[name]
		if !ok {
			break
		}
		name = t
	}
	return nil, fmt.Errorf("%s: not in the archive", name)
}

func (a *archiveFiles) has(name string) bool {
	_, err := a.get(name)
	return err == nil
}

// archiveImage is the one image an archive holds.
type archiveImage struct {
	config []byte
	layers [][]byte // layer blobs, lowest first, possibly compressed
}

// imageFromArchive finds the single image of a docker save archive
// (manifest.json) or of an OCI image layout (index.json).
func imageFromArchive(a *archiveFiles) (*archiveImage, error) {
	if a.has("manifest.json") {
		b, _ := a.get("manifest.json")
		var entries tarball.Manifest
		if err := json.Unmarshal(b, &entries); err != nil {
			return nil, fmt.Errorf("manifest.json: %w", err)
		}
		if len(entries) != 1 {
			return nil, fmt.Errorf("manifest.json lists %d images, want 1", len(entries))
		}
		img := &archiveImage{}
		var err error
		if img.config, err = a.get(entries[0].Config); err != nil {
			return nil, fmt.Errorf("manifest.json config: %w", err)
		}
		for _, l := range entries[0].Layers {
			lb, err := a.get(l)
			if err != nil {
				return nil, fmt.Errorf("manifest.json layer: %w", err)
			}
			img.layers = append(img.layers, lb)
		}
		return img, nil
	}
	if a.has("index.json") {
		return imageFromOCILayout(a)
	}
	return nil, errors.New("no manifest.json (docker save) or index.json (OCI layout) in the archive")
}

// blob is the blob of digest d in an OCI layout (v1.Hash has checked that
// d is an algorithm and hex digits: no path tricks).
func (a *archiveFiles) blob(d v1.Hash) ([]byte, error) {
	return a.get("blobs/" + d.Algorithm + "/" + d.Hex)
}

func imageFromOCILayout(a *archiveFiles) (*archiveImage, error) {
	var manifests []v1.Descriptor
	var walk func(index []byte, depth int) error
	walk = func(index []byte, depth int) error {
		if depth > 4 {
			return errors.New("image index nested too deep")
		}
		idx, err := v1.ParseIndexManifest(bytes.NewReader(index))
		if err != nil {
			return fmt.Errorf("image index: %w", err)
		}
		for _, d := range idx.Manifests {
			if d.Annotations["vnd.docker.reference.type"] == "attestation-manifest" ||
				(d.Platform != nil && d.Platform.OS == "unknown") {
				continue
			}
			if d.MediaType == types.OCIImageIndex || d.MediaType == types.DockerManifestList {
				b, err := a.blob(d.Digest)
				if err != nil {
					return err
				}
				if err := walk(b, depth+1); err != nil {
					return err
				}
				continue
			}
			manifests = append(manifests, d)
		}
		return nil
	}
	index, _ := a.get("index.json")
	if err := walk(index, 0); err != nil {
		return nil, err
	}
	if len(manifests) > 1 {
		var host []v1.Descriptor
		for _, d := range manifests {
			if d.Platform != nil && d.Platform.OS == "linux" && d.Platform.Architecture == runtime.GOARCH {
				host = append(host, d)
			}
		}
		manifests = host
	}
	if len(manifests) != 1 {
		return nil, fmt.Errorf("index.json: %d image manifests, want 1", len(manifests))
	}
	mb, err := a.blob(manifests[0].Digest)
	if err != nil {
		return nil, err
	}
	m, err := v1.ParseManifest(bytes.NewReader(mb))
	if err != nil {
		return nil, fmt.Errorf("manifest %s: %w", manifests[0].Digest, err)
	}
	img := &archiveImage{}
	if img.config, err = a.blob(m.Config.Digest); err != nil {
		return nil, err
	}
	for _, l := range m.Layers {
		lb, err := a.blob(l.Digest)
		if err != nil {
			return nil, err
		}
		img.layers = append(img.layers, lb)
	}
	return img, nil
}

// decompress recognizes gzip and zstd layers by their magic; anything else is
// taken to be a plain tar.
func decompress(blob []byte) (io.Reader, func(), error) {
	switch {
	case len(blob) >= 2 && blob[0] == 0x1f && blob[1] == 0x8b:
		zr, err := gzip.NewReader(bytes.NewReader(blob))
		if err != nil {
			return nil, nil, err
		}
		return zr, func() { zr.Close() }, nil
	case len(blob) >= 4 && bytes.Equal(blob[:4], []byte{0x28, 0xb5, 0x2f, 0xfd}):
		zr, err := zstd.NewReader(bytes.NewReader(blob))
		if err != nil {
			return nil, nil, err
		}
		return zr, zr.Close, nil
	}
	return bytes.NewReader(blob), func() {}, nil
}

// flattenArchiveFile flattens the image archive at file.
func flattenArchiveFile(file string) (doc, error) {
	f, err := os.Open(file)
	if err != nil {
		return doc{}, err
	}
	defer f.Close()
	return flattenArchive(bufio.NewReaderSize(f, 1<<16))
}

// flattenArchive flattens an image archive (a tar stream, optionally gzipped).
func flattenArchive(r io.Reader) (doc, error) {
	br, ok := r.(*bufio.Reader)
	if !ok {
		br = bufio.NewReader(r)
	}
	if magic, _ := br.Peek(2); len(magic) == 2 && magic[0] == 0x1f && magic[1] == 0x8b {
		zr, err := gzip.NewReader(br)
		if err != nil {
			return doc{}, err
		}
		defer zr.Close()
		r = zr
	} else {
		r = br
	}
	a, err := readArchive(r)
	if err != nil {
		return doc{}, err
	}
	img, err := imageFromArchive(a)
	if err != nil {
		return doc{}, err
	}
	cfg, err := configFromBlob(img.config)
	if err != nil {
		return doc{}, err
	}
	fs := newRootFS()
	for i, blob := range img.layers {
		lr, done, err := decompress(blob)
		if err != nil {
			return doc{}, fmt.Errorf("layer %d: %w", i+1, err)
		}
		err = fs.applyLayer(lr)
		done()
		if err != nil {
			return doc{}, fmt.Errorf("layer %d: %w", i+1, err)
		}
	}
	return doc{Config: cfg, Files: fs.list()}, nil
}

// --- the union filesystem -----------------------------------------------------

// inode is a filesystem object; hardlinked paths share one *inode.
type inode struct {
	kind     string // file, dir, symlink, char, block, fifo
	perm     int64  // permission bits with setuid/setgid/sticky
	uid, gid int
	size     int64
	digest   string
	target   string // symlink target
}

// rootFS is a flattened filesystem: absolute cleaned paths -> inodes. The root
// directory itself is implicit.
type rootFS struct {
	paths map[string]*inode
}

func newRootFS() *rootFS { return &rootFS{paths: map[string]*inode{}} }

// deleteTree removes p (unless it is the root) and everything below it.
func (fs *rootFS) deleteTree(p string) {
	if p != "/" {
		delete(fs.paths, p)
	}
	fs.deleteChildren(p)
}

// deleteChildren removes everything below directory p.
func (fs *rootFS) deleteChildren(p string) {
	prefix := p + "/"
	if p == "/" {
		prefix = "/"
	}
	for q := range fs.paths {
		if strings.HasPrefix(q, prefix) {
			delete(fs.paths, q)
		}
	}
}

// realPath follows the symlinks of every component of the absolute path p,
// never leaving the root ("/.." is "/"); components that do not exist are
// kept as they are.
func (fs *rootFS) realPath(p string) string {
	todo := strings.Split(p, "/")
	cur := "/"
	followed := 0
	for len(todo) > 0 {
		c := todo[0]
		todo = todo[1:]
		if c == "" || c == "." {
			continue
		}
		if c == ".." {
			cur = path.Dir(cur)
			continue
		}
		next := path.Join(cur, c)
		if n := fs.paths[next]; n != nil && n.kind == "symlink" && followed < 255 {
			followed++
			if path.IsAbs(n.target) {
				cur = "/"
			}
			todo = append(strings.Split(n.target, "/"), todo...)
			continue
		}
		cur = next
	}
	return cur
}

// ensureDir makes the (already resolved) directory dir and its missing
// parents, as 0755 root:root directories like runtimes do when unpacking.
func (fs *rootFS) ensureDir(dir string) error {
	if dir == "/" {
		return nil
	}
	if err := fs.ensureDir(path.Dir(dir)); err != nil {
		return err
	}
	n := fs.paths[dir]
	if n == nil {
		fs.paths[dir] = &inode{kind: "dir", perm: 0o755}
		return nil
	}
	if n.kind != "dir" {
		return fmt.Errorf("%s is a %s, not a directory", dir, n.kind)
	}
	return nil
}

type layerEntry struct {
	name     string // cleaned absolute name as written in the layer
	node     *inode // nil for hardlinks
	linkname string // hardlink target
}

// applyLayer applies one uncompressed layer. Whiteouts and opaque markers
// hide what the lower layers hold, wherever they stand in the tar, so they are
// applied first, then the layer's own entries in tar order.
func (fs *rootFS) applyLayer(r io.Reader) error {
	tr := tar.NewReader(r)
	var opaqueDirs, whiteouts []string
	var entries []layerEntry
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
		name := path.Clean("/" + hdr.Name)
		if name == "/" {
			continue
		}
		dir, base := path.Dir(name), path.Base(name)
		if base == ".wh..wh..opq" {
			opaqueDirs = append(opaqueDirs, dir)
			continue
		}
		if hidden, ok := strings.CutPrefix(base, ".wh."); ok {
			whiteouts = append(whiteouts, path.Join(dir, hidden))
			continue
		}
		perm := hdr.Mode & 0o7777
		e := layerEntry{name: name}
		switch hdr.Typeflag {
		case tar.TypeReg, tar.TypeGNUSparse, tar.TypeCont:
			h := sha256.New()
			n, err := io.Copy(h, tr)
			if err != nil {
				return fmt.Errorf("%s: %w", name, err)
			}
			e.node = &inode{kind: "file", perm: perm, size: n, digest: hex.EncodeToString(h.Sum(nil))}
		case tar.TypeDir:
			e.node = &inode{kind: "dir", perm: perm}
		case tar.TypeSymlink:
			e.node = &inode{kind: "symlink", perm: 0o777, target: hdr.Linkname}
		case tar.TypeChar:
			e.node = &inode{kind: "char", perm: perm}
		case tar.TypeBlock:
			e.node = &inode{kind: "block", perm: perm}
		case tar.TypeFifo:
			e.node = &inode{kind: "fifo", perm: perm}
		case tar.TypeLink:
			e.linkname = hdr.Linkname
		case tar.TypeXGlobalHeader:
			continue
		default:
			return fmt.Errorf("%s: unsupported tar entry type %q", name, hdr.Typeflag)
		}
		if e.node != nil {
			e.node.uid, e.node.gid = hdr.Uid, hdr.Gid
		}
		entries = append(entries, e)
	}

	for _, d := range opaqueDirs {
		real := fs.realPath(d)
		if n := fs.paths[real]; real != "/" && (n == nil || n.kind != "dir") {
			continue
		}
		fs.deleteChildren(real)
	}
	for _, w := range whiteouts {
		fs.deleteTree(path.Join(fs.realPath(path.Dir(w)), path.Base(w)))
	}

	for _, e := range entries {
		dir := fs.realPath(path.Dir(e.name))
		if err := fs.ensureDir(dir); err != nil {
			return fmt.Errorf("%s: parent: %w", e.name, err)
		}
		p := path.Join(dir, path.Base(e.name))
		n := e.node
		if n == nil { // hardlink to an earlier path
			t := path.Clean("/" + e.linkname)
			t = path.Join(fs.realPath(path.Dir(t)), path.Base(t))
			n = fs.paths[t]
			switch {
			case n == nil:
				return fmt.Errorf("%s: hardlink target %s not found", e.name, e.linkname)
			case n.kind == "dir":
				return fmt.Errorf("%s: hardlink to directory %s", e.name, e.linkname)
			case t == p:
				continue
			}
		}
		if old := fs.paths[p]; old != nil {
			if old.kind == "dir" && n.kind == "dir" {
				// a directory over a directory: contents stay, metadata changes
				old.perm, old.uid, old.gid = n.perm, n.uid, n.gid
				continue
			}
			fs.deleteTree(p)
		}
		fs.paths[p] = n
	}
	return nil
}

// list returns the filesystem sorted by path, hardlink sets marked by their
// smallest path.
func (fs *rootFS) list() []fileEntry {
	names := make([]string, 0, len(fs.paths))
	for p := range fs.paths {
		names = append(names, p)
	}
	sort.Strings(names)
	firstPath := map[*inode]string{}
	linkCount := map[*inode]int{}
	for _, p := range names {
		n := fs.paths[p]
		if n.kind == "dir" {
			continue
		}
		if _, seen := firstPath[n]; !seen {
			firstPath[n] = p
		}
		linkCount[n]++
	}
	out := make([]fileEntry, 0, len(names))
	for _, p := range names {
		n := fs.paths[p]
		e := fileEntry{Path: p, Type: n.kind, Mode: fmt.Sprintf("%04o", n.perm), UID: n.uid, GID: n.gid}
		switch n.kind {
		case "file":
			e.Size, e.SHA256 = n.size, n.digest
		case "symlink":
			e.Link = n.target
		}
		if linkCount[n] > 1 {
			e.NlinkGroup = firstPath[n]
		}
		out = append(out, e)
	}
	return out
}
