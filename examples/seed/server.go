// Command server is strata's seed example: a small HTTP server built in a
// golang stage and shipped alone on scratch.
//
//	server          serve HTTP on $ADDR (default :8080)
//	server version  print the version and exit
package main

import (
	"fmt"
	"log"
	"net/http"
	"os"
	"runtime"
)

const version = "1.0.0"

func main() {
	if len(os.Args) > 1 && os.Args[1] == "version" {
		fmt.Printf("server %s (%s, %s/%s)\n", version, runtime.Version(), runtime.GOOS, runtime.GOARCH)
		return
	}
	addr := os.Getenv("ADDR")
	if addr == "" {
		addr = ":8080"
	}
	http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello from the seed server %s\n", version)
	})
	log.Printf("listening on %s", addr)
	log.Fatal(http.ListenAndServe(addr, nil))
}
