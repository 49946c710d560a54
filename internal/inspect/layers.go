package inspect

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"path"
	"sort"
	"strings"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/strata-build/strata/internal/image"
	"github.com/strata-build/strata/internal/layer"
	"github.com/strata-build/strata/internal/store"
)

// OCI whiteout names.
const (
	whiteoutPrefix = ".wh."
	whiteoutOpaque = ".wh..wh..opq"
)

// Entry is one entry of a layer tar.
type Entry struct {
	Path string // absolute and clean: "/etc/passwd"
	Type string // file, dir, symlink, hardlink, char, block, fifo
	Size int64  // content bytes: a regular file's size, a symlink's target length
	Link string // symlink target, or the absolute path a hardlink points at
}

func (e Entry) isDir() bool { return e.Type == "dir" }

// ReadEntries lists the entries of the (possibly compressed) layer tar r,
// without keeping file contents.
func ReadEntries(ctx context.Context, r io.Reader) ([]Entry, error) {
	dr, err := layer.Decompress(r)
	if err != nil {
		return nil, err
	}
	defer dr.Close()
	tr := tar.NewReader(dr)
	var out []Entry
	for {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("read layer tar: %w", err)
		}
		p := cleanPath(hdr.Name)
		if p == "/" {
			continue
		}
		e := Entry{Path: p}
		switch hdr.Typeflag {
		case tar.TypeReg, tar.TypeGNUSparse: // the reader turns TypeRegA into TypeReg
			e.Type, e.Size = "file", hdr.Size
		case tar.TypeDir:
			e.Type = "dir"
		case tar.TypeSymlink:
			e.Type, e.Link, e.Size = "symlink", hdr.Linkname, int64(len(hdr.Linkname))
		case tar.TypeLink:
			e.Type, e.Link = "hardlink", cleanPath(hdr.Linkname)
		case tar.TypeChar:
			e.Type = "char"
		case tar.TypeBlock:
			e.Type = "block"
		case tar.TypeFifo:
			e.Type = "fifo"
		default:
			continue // PAX/GNU metadata records are consumed by Next
		}
		out = append(out, e)
	}
}

func cleanPath(name string) string { return path.Clean("/" + name) }

// Kind says what a layer does to a path.
type Kind string

// The kinds of Change.
const (
	Added    Kind = "A" // the path did not exist in the layers below
	Modified Kind = "M" // the path existed below and this layer replaces it
	Deleted  Kind = "D" // a whiteout (or an opaque directory) hides the path below
)

// Change is one path a layer adds, modifies or deletes.
type Change struct {
	Kind Kind   `json:"kind"`
	Path string `json:"path"` // absolute; directories end in "/"
	Type string `json:"type,omitempty"`
	// Size is, for A and M, the entry's content size (regular files, symlink
	// targets); for D, the bytes of the lower layers it hides.
	Size int64 `json:"size"`
	// LowerSize is, for M, the size of what the entry replaces.
	LowerSize int64  `json:"lowerSize,omitempty"`
	Link      string `json:"link,omitempty"`
	// Opaque marks a directory whose lower contents are hidden (".wh..wh..opq")
	// while the directory itself stays.
	Opaque bool `json:"opaque,omitempty"`
	// Hides lists the lower paths a D hides, biggest first (a limit may
	// shorten it: HiddenPaths is how many there are).
	Hides       []Hidden `json:"hides,omitempty"`
	HiddenPaths int      `json:"hiddenPaths,omitempty"`
}

// Hidden is a path of a lower layer that a deletion hides.
type Hidden struct {
	Path string `json:"path"`
	Size int64  `json:"size"`
}

// LayerChanges is what one layer of an image does to the filesystem.
type LayerChanges struct {
	Index     int       `json:"index"` // manifest order: 0 is the bottom layer
	Digest    string    `json:"digest"`
	DiffID    string    `json:"diffID"`
	MediaType string    `json:"mediaType"`
	Size      int64     `json:"size"`        // the compressed blob
	Content   int64     `json:"contentSize"` // bytes of the files it adds or changes
	CreatedBy string    `json:"createdBy"`
	Created   time.Time `json:"created,omitzero"`
	Comment   string    `json:"comment,omitempty"`
	Added     int       `json:"added"`
	Modified  int       `json:"modified"`
	Deleted   int       `json:"deleted"`
	// HiddenBytes is what the layer makes invisible in the layers below
	// (files it deletes or replaces) but which the image still carries.
	HiddenBytes int64    `json:"hiddenBytes"`
	Changes     []Change `json:"changes"`
	// Omitted counts the changes left out of Changes by a limit.
	Omitted int `json:"omitted,omitempty"`
}

// node is a path of the filesystem the layers below make.
type node struct {
	size int64
	typ  string
}

// Tree is the filesystem of the layers applied so far, for Diff.
type Tree struct {
	nodes map[string]node
}

// NewTree returns an empty filesystem.
func NewTree() *Tree { return &Tree{nodes: map[string]node{}} }

// subtree lists the paths at and below p (p itself when self).
func (t *Tree) subtree(p string, self bool) []string {
	var out []string
	if n, ok := t.nodes[p]; ok {
		if self {
			out = append(out, p)
		}
		if n.typ != "dir" {
			return out
		}
	}
	prefix := p + "/"
	if p == "/" {
		prefix = "/"
	}
	for k := range t.nodes {
		if strings.HasPrefix(k, prefix) {
			out = append(out, k)
		}
	}
	return out
}

func (t *Tree) hidden(paths []string, keep map[string]Entry) ([]Hidden, int64) {
	var out []Hidden
	var total int64
	for _, p := range paths {
		if _, ok := keep[p]; ok {
			continue // replaced in this layer: an M, not a deletion
		}
		n := t.nodes[p]
		name := p
		if n.typ == "dir" {
			name += "/"
		}
		out = append(out, Hidden{Path: name, Size: n.size})
		total += n.size
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Size != out[j].Size {
			return out[i].Size > out[j].Size
		}
		return out[i].Path < out[j].Path
	})
	return out, total
}

// Diff works out what the layer with these entries does to the filesystem t,
// then applies it to t. The changes are sorted biggest first. Directories
// that existed below and come again (their metadata, or as parents of new
// files) are not reported.
func (t *Tree) Diff(entries []Entry) (changes []Change, content, hiddenBytes int64) {
	d := classify(entries)
	changes, hiddenBytes = t.deletions(&d)
	adds, addContent, addHidden := t.additions(&d)
	changes = append(changes, adds...)
	content, hiddenBytes = addContent, hiddenBytes+addHidden
	for _, p := range d.remove {
		delete(t.nodes, p)
	}
	for _, p := range d.order {
		e := d.adds[p]
		t.nodes[p] = node{size: e.Size, typ: e.Type}
	}
	SortChanges(changes)
	return changes, content, hiddenBytes
}

// layerEntries are a layer's entries sorted by what they do, and the paths
// of t the layer removes (filled by deletions and additions).
type layerEntries struct {
	adds               map[string]Entry
	order              []string // of adds, as the layer lists them
	whiteouts, opaques []string
	remove             []string
}

func classify(entries []Entry) layerEntries {
	d := layerEntries{adds: map[string]Entry{}}
	for _, e := range entries {
		dir, base := path.Split(e.Path)
		dir = path.Clean(dir)
		switch {
		case base == whiteoutOpaque:
			d.opaques = append(d.opaques, dir)
		case strings.HasPrefix(base, whiteoutPrefix):
			d.whiteouts = append(d.whiteouts, path.Join(dir, base[len(whiteoutPrefix):]))
		default:
			if _, dup := d.adds[e.Path]; !dup {
				d.order = append(d.order, e.Path)
			}
			d.adds[e.Path] = e
		}
	}
	return d
}

// deletions are the changes of the layer's whiteouts and opaque dirs.
func (t *Tree) deletions(d *layerEntries) (changes []Change, hiddenBytes int64) {
	for _, p := range d.whiteouts {
		if e, ok := d.adds[p]; ok {
			// deleted and made again: the new entry is an M; a directory made
			// again hides what was below it, as an opaque one does
			if n, ok := t.nodes[p]; ok && n.typ == "dir" && e.isDir() {
				d.opaques = append(d.opaques, p)
			}
			continue
		}
		c := Change{Kind: Deleted, Path: p}
		if n, ok := t.nodes[p]; ok {
			c.Type = n.typ
			c.Size = n.size
			d.remove = append(d.remove, p)
			if n.typ == "dir" {
				sub := t.subtree(p, false)
				c.Path += "/"
				c.Hides, c.Size = t.hidden(sub, d.adds)
				c.HiddenPaths = len(c.Hides)
				d.remove = append(d.remove, sub...)
			}
		}
		changes = append(changes, c)
		hiddenBytes += c.Size
	}
	for _, dir := range d.opaques {
		sub := t.subtree(dir, false)
		hides, total := t.hidden(sub, d.adds)
		p := dir + "/"
		if dir == "/" {
			p = "/"
		}
		changes = append(changes, Change{Kind: Deleted, Path: p, Type: "dir", Size: total, Opaque: true, Hides: hides, HiddenPaths: len(hides)})
		hiddenBytes += total
		d.remove = append(d.remove, sub...)
	}
	return changes, hiddenBytes
}

// additions are the changes of the layer's added and modified entries.
func (t *Tree) additions(d *layerEntries) (changes []Change, content, hiddenBytes int64) {
	for _, p := range d.order {
		e := d.adds[p]
		lower, existed := t.nodes[p]
		if existed && lower.typ == "dir" && e.isDir() {
			continue
		}
		c := Change{Kind: Added, Path: p, Type: e.Type, Size: e.Size, Link: e.Link}
		if e.isDir() {
			c.Path += "/"
		}
		if existed {
			c.Kind = Modified
			if lower.typ == "dir" {
				// a file replacing a directory hides everything below it
				sub := t.subtree(p, false)
				_, c.LowerSize = t.hidden(sub, d.adds)
				d.remove = append(d.remove, sub...)
			} else {
				c.LowerSize = lower.size
			}
			hiddenBytes += c.LowerSize
		}
		content += e.Size
		changes = append(changes, c)
	}
	return changes, content, hiddenBytes
}

// SortChanges orders changes biggest first, then by path.
func SortChanges(c []Change) {
	sort.SliceStable(c, func(i, j int) bool {
		if c[i].Size != c[j].Size {
			return c[i].Size > c[j].Size
		}
		return c[i].Path < c[j].Path
	})
}

// parallel bounds how many layers are read at once.
const parallel = 4

// Layers reads every layer blob of img from the store and works out what
// each does to the filesystem of the layers below. The result is in manifest
// order (bottom layer first).
func Layers(ctx context.Context, s *store.Store, img *image.Image) ([]LayerChanges, error) {
	entries := make([][]Entry, len(img.Layers))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(parallel)
	for i, l := range img.Layers {
		g.Go(func() error {
			f, err := s.OpenBlob(l.Digest)
			if err != nil {
				return fmt.Errorf("layer %d (%s): %w", i+1, l.Digest, err)
			}
			defer f.Close()
			es, err := ReadEntries(gctx, f)
			if err != nil {
				return fmt.Errorf("layer %d (%s): %w", i+1, l.Digest, err)
			}
			entries[i] = es
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	steps := LayerSteps(Steps(&img.Config, len(img.Layers)), len(img.Layers))
	tree := NewTree()
	out := make([]LayerChanges, len(img.Layers))
	for i, l := range img.Layers {
		changes, content, hidden := tree.Diff(entries[i])
		lc := LayerChanges{
			Index: i, Digest: l.Digest.String(), DiffID: l.DiffID.String(), MediaType: l.MediaType, Size: l.Size,
			Content: content, CreatedBy: steps[i].CreatedBy, Created: steps[i].Created, Comment: steps[i].Comment,
			HiddenBytes: hidden, Changes: changes,
		}
		if lc.Changes == nil {
			lc.Changes = []Change{}
		}
		for _, c := range changes {
			switch c.Kind {
			case Added:
				lc.Added++
			case Modified:
				lc.Modified++
			case Deleted:
				lc.Deleted++
			}
		}
		out[i] = lc
	}
	return out, nil
}
