package archive

import (
	"archive/tar"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"strings"
)

// tarIndex finds the regular files of a tar archive file by name without
// reading or copying their content: one pass over the headers (tar.Reader
// seeks over the data of an *os.File) records where each file's bytes are.
type tarIndex struct {
	f     *os.File
	files map[string]section
	links map[string]string // symlink name → target, both as clean member names
}

type section struct{ off, size int64 }

// indexTar indexes the tar archive f. Names are cleaned ("./index.json" is
// "index.json"); a later member of the same name replaces an earlier one, as
// when the archive is extracted.
func indexTar(f *os.File) (*tarIndex, error) {
	ti := &tarIndex{f: f, files: map[string]section{}, links: map[string]string{}}
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return ti, nil
		}
		if err != nil {
			return nil, fmt.Errorf("read tar: %w", err)
		}
		name := memberName(h.Name)
		delete(ti.files, name)
		delete(ti.links, name)
		switch h.Typeflag {
		case tar.TypeReg:
			for k := range h.PAXRecords {
				if strings.HasPrefix(k, "GNU.sparse.") {
					return nil, fmt.Errorf("read tar: %s is a sparse file, which is not supported", h.Name)
				}
			}
			// tar.Reader reads headers in whole blocks and no further, so
			// the file's position is where this member's data starts.
			off, err := f.Seek(0, io.SeekCurrent)
			if err != nil {
				return nil, fmt.Errorf("read tar: %w", err)
			}
			ti.files[name] = section{off: off, size: h.Size}
		case tar.TypeSymlink:
			target := h.Linkname
			if !path.IsAbs(target) {
				target = path.Join(path.Dir(name), target)
			}
			ti.links[name] = memberName(target)
		case tar.TypeLink:
			if s, ok := ti.files[memberName(h.Linkname)]; ok {
				ti.files[name] = s
			}
		}
	}
}

// memberName cleans a member name or link target to a relative path with
// no "." or ".." in it.
func memberName(n string) string {
	return strings.TrimPrefix(path.Clean("/"+n), "/")
}

// lookup finds the regular file name, following symbolic links inside the
// archive.
func (ti *tarIndex) lookup(name string) (section, bool) {
	name = memberName(name)
	for range 16 {
		if s, ok := ti.files[name]; ok {
			return s, true
		}
		target, ok := ti.links[name]
		if !ok {
			return section{}, false
		}
		name = target
	}
	return section{}, false
}

// has reports whether the archive holds the regular file name.
func (ti *tarIndex) has(name string) bool {
	_, ok := ti.lookup(name)
	return ok
}

// open returns a reader of the file s.
func (ti *tarIndex) open(s section) *io.SectionReader {
	return io.NewSectionReader(ti.f, s.off, s.size)
}

// readFile reads the file name, one of the archive's manifests, indexes
// and configs, into memory: it must be no bigger than maxJSON.
func (ti *tarIndex) readFile(name string) ([]byte, error) {
	s, err := ti.small(name)
	if err != nil {
		return nil, err
	}
	b, err := io.ReadAll(ti.open(s))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return b, nil
}

// readJSON decodes the file name (oci-layout, index.json, manifest.json),
// which must be no bigger than maxJSON.
func (ti *tarIndex) readJSON(name string, v any) error {
	s, err := ti.small(name)
	if err != nil {
		return err
	}
	if err := json.NewDecoder(ti.open(s)).Decode(v); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	return nil
}

// small finds the file name, which must be no bigger than maxJSON.
func (ti *tarIndex) small(name string) (section, error) {
	s, ok := ti.lookup(name)
	if !ok {
		return section{}, fmt.Errorf("%s is not in the archive", name)
	}
	if s.size > maxJSON {
		return section{}, fmt.Errorf("%s: %d bytes is too big (strata reads manifests and configs of up to %d)", name, s.size, maxJSON)
	}
	return s, nil
}
