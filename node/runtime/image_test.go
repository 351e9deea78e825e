package runtime_test

import (
	"bytes"
	"context"
	"errors"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"orch.dev/orch/node/runtime"
	"orch.dev/orch/node/runtime/imagebuild"
)

// testBinary is a test program built for this run (see setup).
func testBinary(name string) string { return filepath.Join(env.runDir, "images", "bin", name) }

// runToExit runs image with env in a new container of sb and returns its
// exit code: proof that the image's layers were unpacked and run.
func (e *testEnv) runToExit(sb runtime.Sandbox, name, image string, env ...string) int {
	e.t.Helper()
	ev := e.events()
	id := e.run(sb, runtime.ContainerConfig{Name: name, Image: image, Env: env})
	return e.waitExit(ev, id, 20*time.Second).ExitCode
}

// Images from an OCI layout archive (gzip layers) and from a `docker save`
// archive (plain tar layers) import under their full names, are listed,
// and run; something that is no image archive is refused.
func TestImportArchives(t *testing.T) {
	e := newEnv(t)
	ctx := ctxT(t)
	sb := e.sandbox("import")
	oci := imagebuild.Static("orch.test/oci-crasher:v1", testBinary("crasher"))
	docker := imagebuild.Static("docker-crasher", testBinary("crasher")) // short name: docker.io/library/...:latest
	var ociTar, dockerTar bytes.Buffer
	if err := imagebuild.WriteArchive(&ociTar, oci); err != nil {
		t.Fatal(err)
	}
	if err := imagebuild.WriteDockerArchive(&dockerTar, docker); err != nil {
		t.Fatal(err)
	}
	for i, c := range []struct {
		archive *bytes.Buffer
		name    string
		digest  func() (string, error)
	}{
		{&ociTar, "orch.test/oci-crasher:v1", func() (string, error) { return imagebuild.ManifestDigest(oci) }},
		{&dockerTar, "docker.io/library/docker-crasher:latest", nil},
	} {
		names, err := e.rt.ImportImages(ctx, c.archive)
		if err != nil || len(names) != 1 || names[0] != c.name {
			t.Fatalf("import: %v, %v", names, err)
		}
		info, err := e.rt.EnsureImage(ctx, c.name, runtime.PullNever)
		if err != nil || info.Ref != c.name || !strings.HasPrefix(info.ID, "sha256:") || info.Size == 0 {
			t.Fatalf("EnsureImage %s: %+v, %v", c.name, info, err)
		}
		if c.digest != nil {
			if want, _ := c.digest(); info.Digest != want {
				t.Fatalf("digest %s, want %s", info.Digest, want)
			}
		}
		if code := e.runToExit(sb, "run-"+strconv.Itoa(i), c.name, "EXIT_CODE=6"); code != 6 {
			t.Fatalf("%s exited %d", c.name, code)
		}
	}
	imgs, err := e.rt.ListImages(ctx)
	if err != nil || len(imgs) != 2 {
		t.Fatalf("ListImages: %+v, %v", imgs, err)
	}
	if _, err := e.rt.ImportImages(ctx, strings.NewReader("not a tar stream")); err == nil {
		t.Fatal("imported garbage")
	}
}

// Pulls from a registry (docker-registry on loopback): PullNever never
// pulls, PullIfNotPresent pulls once and then keeps what it has,
// PullAlways picks up a new image under the same tag; a tag the registry
// does not have is ErrImageNotFound, an unreachable registry ErrImagePull.
func TestRegistryPull(t *testing.T) {
	e := newEnv(t)
	ctx := ctxT(t)
	reg := e.startRegistry()
	ref := reg + "/orch/crasher:v1"
	v1 := imagebuild.Static(ref, testBinary("crasher"))
	v2 := v1
	v2.Env = append([]string{"EXIT_CODE=9"}, v1.Env...)
	d1, _ := imagebuild.ManifestDigest(v1)
	d2, _ := imagebuild.ManifestDigest(v2)

	if _, err := e.rt.EnsureImage(ctx, ref, runtime.PullIfNotPresent); !errors.Is(err, runtime.ErrImageNotFound) || errors.Is(err, runtime.ErrImagePull) {
		t.Fatalf("pull before push: %v", err)
	}
	if err := imagebuild.Push(ctx, httpClient, v1); err != nil {
		t.Fatal(err)
	}
	if _, err := e.rt.EnsureImage(ctx, ref, runtime.PullNever); !errors.Is(err, runtime.ErrImageNotFound) {
		t.Fatalf("PullNever pulled: %v", err)
	}
	info, err := e.rt.EnsureImage(ctx, ref, runtime.PullIfNotPresent)
	if err != nil || info.Digest != d1 || info.Ref != ref {
		t.Fatalf("pull: %+v, %v (want digest %s)", info, err, d1)
	}
	sb := e.sandbox("pulled")
	if code := e.runToExit(sb, "v1", ref, "EXIT_CODE=3"); code != 3 {
		t.Fatalf("pulled image exited %d", code)
	}

	// v2 under the same tag.
	if err := imagebuild.Push(ctx, httpClient, v2); err != nil {
		t.Fatal(err)
	}
	for _, p := range []runtime.PullPolicy{runtime.PullIfNotPresent, runtime.PullNever} {
		if info, err := e.rt.EnsureImage(ctx, ref, p); err != nil || info.Digest != d1 {
			t.Fatalf("policy %d with the image present: %+v, %v", p, info, err)
		}
	}
	if info, err := e.rt.EnsureImage(ctx, ref, runtime.PullAlways); err != nil || info.Digest != d2 {
		t.Fatalf("PullAlways: %+v, %v (want digest %s)", info, err, d2)
	}
	if code := e.runToExit(sb, "v2", ref); code != 9 {
		t.Fatalf("v2 exited %d", code)
	}

	if _, err := e.rt.EnsureImage(ctx, reg+"/orch/crasher:nope", runtime.PullIfNotPresent); !errors.Is(err, runtime.ErrImageNotFound) {
		t.Fatalf("missing tag: %v", err)
	}
	down := freeLoopbackAddr(t) + "/orch/crasher:v1" // nothing listens there
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if _, err := e.rt.EnsureImage(cctx, down, runtime.PullIfNotPresent); !errors.Is(err, runtime.ErrImagePull) || errors.Is(err, runtime.ErrImageNotFound) {
		t.Fatalf("unreachable registry: %v", err)
	}
}
