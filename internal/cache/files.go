package cache

import (
	"encoding/hex"
	"encoding/json"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// tempPrefix begins the name of an index file while it is written; it is
// renamed into place when complete (see Index.write).
const tempPrefix = ".tmp-"

// RecordFiles lists the record files of the index in dir (as given to Open)
// and the temp files a killed writer left beside them, for fsck.
func RecordFiles(dir string) (records, temps []string) {
	root := filepath.Join(dir, "keys")
	filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == root {
			return nil
		}
		switch {
		case strings.HasPrefix(d.Name(), tempPrefix):
			temps = append(temps, p)
		case d.IsDir():
		default:
			records = append(records, p)
		}
		return nil
	})
	return records, temps
}

// ValidRecordPath reports whether p is named as Put names a record: the
// key (64 hex digits) in a folder named by its first two.
func ValidRecordPath(p string) bool {
	name := filepath.Base(p)
	if len(name) != 64 || strings.ToLower(name) != name {
		return false
	}
	if _, err := hex.DecodeString(name); err != nil {
		return false
	}
	return filepath.Base(filepath.Dir(p)) == name[:2]
}

// ReadRecord reads the record file at p. Its error is the read's or the
// decoder's as is: fsck prints it beside the file's name.
func ReadRecord(p string) (*Record, error) {
	b, err := os.ReadFile(p)
	if err != nil {
		return nil, err
	}
	var r Record
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, err
	}
	return &r, nil
}
