// Command build compiles orch's test programs (testdata/images/*) as static
// binaries and packs each into an OCI image archive, out/<name>.tar, that
// `orchctl image import` and containerd import as orch.test/<name>:v1.
// Busybox (Debian's busybox-static) is the base layer when present, so exec
// probes and `orchctl exec ... -- cat /etc/hostname` work.
//
//	go run ./testdata/images/build [-out testdata/images/out] [-busybox /bin/busybox]
//
// Run it from the module root (make images does).
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"orch.dev/orch/node/runtime/imagebuild"
)

func main() {
	out := flag.String("out", "testdata/images/out", "directory for the archives")
	busybox := flag.String("busybox", "/bin/busybox", "static busybox for the base layer (empty: none)")
	flag.Parse()
	if err := run(*out, *busybox); err != nil {
		fmt.Fprintln(os.Stderr, "build:", err)
		os.Exit(1)
	}
}

func run(out, busybox string) error {
	if _, err := os.Stat(busybox); busybox != "" && err != nil {
		fmt.Fprintf(os.Stderr, "build: no busybox at %s, images get no shell\n", busybox)
		busybox = ""
	}
	work, err := os.MkdirTemp("", "orch-images-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	imgs, err := imagebuild.BuildTestImages(context.Background(), ".", work, busybox)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return err
	}
	for i, img := range imgs {
		path := filepath.Join(out, imagebuild.TestImages[i]+".tar")
		f, err := os.Create(path)
		if err != nil {
			return err
		}
		err = imagebuild.WriteArchive(f, img)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		fmt.Printf("%s\t%s\n", path, img.Name)
	}
	return nil
}
