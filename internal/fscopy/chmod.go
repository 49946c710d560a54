package fscopy

import (
	"errors"
	"fmt"
	"os"
	"strconv"

	mode "github.com/tonistiigi/dchapes-mode"
)

// Chmod is a --chmod value: octal (replaces the permission bits) or
// symbolic like chmod(1) (u+x, a=rX, ...; applied to each file's own mode).
type Chmod struct {
	octal *os.FileMode
	sym   *mode.Set
}

// Apply returns the mode a file of mode m gets (m itself for a nil Chmod).
func (c *Chmod) Apply(m os.FileMode) os.FileMode {
	if c == nil {
		return m
	}
	if c.octal != nil {
		return m&os.ModeType | *c.octal
	}
	return m&os.ModeType | c.sym.Apply(m)&(os.ModePerm|os.ModeSetuid|os.ModeSetgid|os.ModeSticky)
}

// ParseChmod parses a --chmod value: octal up to 07777, or symbolic as
// chmod(1) takes it; "" gives nil (modes kept).
func ParseChmod(s string) (*Chmod, error) {
	if s == "" {
		return nil, nil
	}
	v, err := strconv.ParseUint(s, 8, 32)
	if err != nil {
		var ne *strconv.NumError
		set, serr := mode.Parse(s)
		if serr != nil {
			if errors.As(serr, &ne) || isDigits(s) {
				return nil, fmt.Errorf("invalid chmod parameter: '%s'. it should be octal string and between 0 and 07777", s)
			}
			return nil, fmt.Errorf("invalid chmod parameter %q: %w", s, serr)
		}
		return &Chmod{sym: &set}, nil
	}
	if v > 0o7777 {
		return nil, fmt.Errorf("invalid chmod parameter: '%s'. it should be octal string and between 0 and 07777", s)
	}
	m := os.FileMode(v & 0o777)
	if v&0o4000 != 0 {
		m |= os.ModeSetuid
	}
	if v&0o2000 != 0 {
		m |= os.ModeSetgid
	}
	if v&0o1000 != 0 {
		m |= os.ModeSticky
	}
	return &Chmod{octal: &m}, nil
}

func isDigits(s string) bool {
	for _, r := range s {
		if r < '0' || r > '9' {
			return false
		}
	}
	return s != ""
}
