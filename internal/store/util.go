package store

import (
	"syscall"

	"github.com/opencontainers/go-digest"
)

func digestOf(s string) digest.Digest { return digest.Digest(s) }

var unixENOTEMPTY = syscall.ENOTEMPTY
