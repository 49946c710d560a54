package main

import (
	"os"
	"time"
)

// pageProbeBytes is what pageWriteCost writes.
const pageProbeBytes = 64 << 20

// pageWriteCost writes pageProbeBytes to a new file in dir through the page
// cache (no sync), removes it, and returns the time it took in milliseconds
// per 100 MB. On this benchmark's virtual machines that cost is not
// constant: a page the kernel hands out that the host has taken back costs
// a fault on the host when first written, and writing 100 MB then takes
// ten to forty times as long as into pages the host still backs. Every
// builder writes hundreds of MB in the large phases, so a phase run in such
// a period is slower for reasons outside the builder: the report shows the
// cost measured right after each phase, beside the times.
func pageWriteCost(dir string) (float64, error) {
	f, err := os.CreateTemp(dir, "page-probe-")
	if err != nil {
		return 0, err
	}
	defer os.Remove(f.Name())
	defer f.Close()
	buf := make([]byte, 1<<20)
	for i := range buf {
		buf[i] = byte(i)
	}
	start := time.Now()
	for n := 0; n < pageProbeBytes; n += len(buf) {
		if _, err := f.Write(buf); err != nil {
			return 0, err
		}
	}
	return time.Since(start).Seconds() * 1000 * 100e6 / pageProbeBytes, nil
}
