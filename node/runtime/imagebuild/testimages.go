package imagebuild

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
)

// TestImages are orch's test programs, each a main package under
// testdata/images/<name> of the orch module.
var TestImages = []string{"web", "crasher", "slowstart", "sigterm"}

// TestImageRef is the name a test image is imported under. The .test
// domain never resolves, so nothing tries to pull these from elsewhere.
func TestImageRef(name string) string { return "orch.test/" + name + ":v1" }

// BuildTestImages compiles the test programs (static: CGO_ENABLED=0) from
// the module at moduleRoot into dir and describes their images: busybox
// (host path; "" leaves it out) as the base layer, the program on top as
// the entrypoint.
func BuildTestImages(ctx context.Context, moduleRoot, dir, busybox string) ([]Image, error) {
	bin := filepath.Join(dir, "bin")
	if err := os.MkdirAll(bin, 0o755); err != nil {
		return nil, err
	}
	args := []string{"build", "-trimpath", "-ldflags=-s -w", "-o", bin + "/"}
	for _, n := range TestImages {
		args = append(args, "./testdata/images/"+n)
	}
	cmd := exec.CommandContext(ctx, goTool(), args...)
	cmd.Dir = moduleRoot
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("go build test images: %v\n%s", err, out)
	}
	var base [][]File
	if busybox != "" {
		base = append(base, Busybox(busybox))
	}
	var imgs []Image
	for _, n := range TestImages {
		imgs = append(imgs, Static(TestImageRef(n), filepath.Join(bin, n), base...))
	}
	return imgs, nil
}

// goTool finds the go command: on PATH, else in the GOROOT this binary was
// built with (a test run by an IDE or `make` need not have it on PATH).
func goTool() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	return filepath.Join(runtime.GOROOT(), "bin", "go")
}
