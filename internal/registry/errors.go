package registry

import (
	"errors"
	"net/http"
	"strings"

	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
)

// describe says a registry's error answer for people. go-containerregistry
// prints the request and every diagnostic with its detail formatted by %v,
// which for Docker's distribution registry is a Go map ("GET
// http://host/v2/app/manifests/1: MANIFEST_UNKNOWN: manifest unknown;
// map[Tag:1]"); describe keeps the HTTP status and the messages ("not
// found: manifest unknown"). Other errors are returned as they are.
func describe(err error) error {
	var te *transport.Error
	if err == nil || !errors.As(err, &te) || len(te.Errors) == 0 {
		return err
	}
	return &responseError{err: err, te: te}
}

// responseError is a registry's error answer (see describe).
type responseError struct {
	err error // the error as returned, wrapping te
	te  *transport.Error
}

func (e *responseError) Error() string {
	status := strings.ToLower(http.StatusText(e.te.StatusCode))
	parts := []string{}
	if status != "" {
		parts = append(parts, status)
	}
	for _, d := range e.te.Errors {
		msg := strings.TrimSpace(d.Message)
		if msg == "" {
			msg = strings.ToLower(strings.ReplaceAll(string(d.Code), "_", " "))
		}
		if !strings.EqualFold(msg, status) {
			parts = append(parts, msg)
		}
	}
	s := strings.Join(parts, ": ")
	// Keep what wraps the transport error (context added around it).
	if full, inner := e.err.Error(), e.te.Error(); strings.HasSuffix(full, inner) {
		s = strings.TrimSuffix(full, inner) + s
	}
	return s
}

func (e *responseError) Unwrap() error { return e.err }
