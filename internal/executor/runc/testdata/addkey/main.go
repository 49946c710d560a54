// Command addkey tries to add a key with add_key(2), the call behind
// `keyctl add user k v @u`, and prints "ok" or the error; the sandbox tests
// run it inside a container (built with CGO_ENABLED=0). It adds to its own
// process keyring, which goes away with it, so a probe that succeeds leaves
// nothing in the host's keyrings.
package main

import (
	"fmt"
	"os"
	"syscall"
	"unsafe"
)

func main() {
	typ, _ := syscall.BytePtrFromString("user")
	desc, _ := syscall.BytePtrFromString("strata-sandbox-probe")
	payload := []byte("v")
	ring := -2 // KEY_SPEC_PROCESS_KEYRING
	_, _, errno := syscall.Syscall6(syscall.SYS_ADD_KEY, uintptr(unsafe.Pointer(typ)), uintptr(unsafe.Pointer(desc)),
		uintptr(unsafe.Pointer(&payload[0])), uintptr(len(payload)), uintptr(ring), 0)
	if errno != 0 {
		fmt.Println("add_key:", errno)
		os.Exit(1)
	}
	fmt.Println("ok")
}
