package worker

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"orch.dev/orch/node/runtime"
	"orch.dev/orch/node/runtime/fake"
	"orch.dev/orch/node/runtime/imagebuild"
)

func archive(t *testing.T, docker bool, names ...string) []byte {
	t.Helper()
	var imgs []imagebuild.Image
	for _, n := range names {
		imgs = append(imgs, imagebuild.Image{Name: n, Layers: [][]imagebuild.File{{{Path: "/hello", Data: []byte(n)}}}, Uncompressed: true})
	}
	var buf bytes.Buffer
	write := imagebuild.WriteArchive
	if docker {
		write = imagebuild.WriteDockerArchive
	}
	if err := write(&buf, imgs...); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// imports returns how many imports the runtime was asked for since the
// last call.
func imports(rt *fake.Runtime) int {
	n := len(rt.Calls(fake.OpImportImages))
	rt.ResetCalls()
	return n
}

func hasImage(t *testing.T, rt runtime.Runtime, ref string) bool {
	imgs, err := rt.ListImages(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return slices.ContainsFunc(imgs, func(i runtime.ImageInfo) bool { return i.Ref == ref })
}

// The images directory imports new and changed archives (OCI and docker)
// once each, remembers them across restarts by name, size and mtime,
// imports again the files whose images have gone, and retries a file that
// failed only once it changes or after a while.
func TestImagesDirImportsEachFileOnce(t *testing.T) {
	ctx := context.Background()
	rt := fake.New(fake.Options{})
	base := t.TempDir()
	dir, record := filepath.Join(base, "images"), filepath.Join(base, "images.json")
	now := time.Now()
	open := func() *imagesDir {
		t.Helper()
		d := newImagesDir(dir, record, rt, slog.New(slog.DiscardHandler))
		d.now = func() time.Time { return now }
		if err := d.open(ctx); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { d.notify.Close() })
		return d
	}
	d := open()
	if st, err := os.Stat(dir); err != nil || !st.IsDir() {
		t.Fatalf("the images directory was not created: %v", err)
	}
	write := func(name string, b []byte) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("web.tar", archive(t, false, "orch.test/web:v1"))
	write("app.tar", archive(t, true, "orch.test/app:v1"))
	write("notes.txt", []byte("not an archive"))
	write(".partial.tar", []byte("being copied"))
	d.scan(ctx)
	if n := imports(rt); n != 2 || !hasImage(t, rt, "orch.test/web:v1") || !hasImage(t, rt, "orch.test/app:v1") {
		t.Fatalf("first scan: %d imports", n)
	}
	d.scan(ctx)
	if n := imports(rt); n != 0 {
		t.Fatalf("a scan with nothing new imported %d times", n)
	}
	var rec map[string]importedFile
	if b, err := os.ReadFile(record); err != nil || json.Unmarshal(b, &rec) != nil || len(rec) != 2 || rec["web.tar"].Images[0] != "orch.test/web:v1" {
		t.Fatalf("record %v: %s", err, b)
	}

	// A restart imports nothing; one whose images have gone imports
	// those again.
	open().scan(ctx)
	if n := imports(rt); n != 0 {
		t.Fatalf("a restart imported %d times", n)
	}
	rt.RemoveImage("orch.test/app:v1")
	open().scan(ctx)
	if n := imports(rt); n != 1 || !hasImage(t, rt, "orch.test/app:v1") {
		t.Fatalf("a restart without app:v1: %d imports", n)
	}

	// A changed file is imported again; a removed one is forgotten.
	d = open()
	mtime := now.Add(time.Minute)
	os.Chtimes(filepath.Join(dir, "web.tar"), mtime, mtime)
	os.Remove(filepath.Join(dir, "app.tar"))
	d.scan(ctx)
	if n := imports(rt); n != 1 {
		t.Fatalf("after a change: %d imports", n)
	}
	if b, _ := os.ReadFile(record); strings.Contains(string(b), "app.tar") {
		t.Fatalf("a removed file is still recorded: %s", b)
	}

	// A failing file is not retried until it changes or time passes.
	write("bad.tar", []byte("truncated"))
	d.scan(ctx)
	d.scan(ctx)
	if n := imports(rt); n != 1 {
		t.Fatalf("a failing file was tried %d times in two scans", n)
	}
	now = now.Add(imagesRetryInterval)
	d.scan(ctx)
	if n := imports(rt); n != 1 {
		t.Fatalf("a failing file was tried %d times after the retry interval", n)
	}
	write("bad.tar", archive(t, false, "orch.test/fixed:v1"))
	d.scan(ctx)
	if n := imports(rt); n != 1 || !hasImage(t, rt, "orch.test/fixed:v1") {
		t.Fatalf("the repaired file: %d imports", n)
	}
}

// A file written into the directory while the worker runs is imported
// without waiting for a periodic scan.
func TestImagesDirWatches(t *testing.T) {
	rt := fake.New(fake.Options{})
	base := t.TempDir()
	d := newImagesDir(filepath.Join(base, "images"), filepath.Join(base, "images.json"), rt, slog.New(slog.DiscardHandler))
	ctx, cancel := context.WithCancel(context.Background())
	if err := d.open(ctx); err != nil {
		t.Fatal(err)
	}
	if d.notify == nil {
		t.Skip("no inotify here")
	}
	done := make(chan struct{})
	go func() { d.run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	// Written under another name and moved in, as a careful copy does.
	tmp := filepath.Join(base, "web.tmp")
	if err := os.WriteFile(tmp, archive(t, false, "orch.test/web:v1"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(d.dir, "web.tar")); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(imagesRetryInterval / 3) // well before a periodic scan
	for !hasImage(t, rt, "orch.test/web:v1") {
		if time.Now().After(deadline) {
			t.Fatal("the new file was not imported")
		}
		time.Sleep(10 * time.Millisecond) // polling with a deadline
	}
}

// POST /images/import stores the archive's images and names them; a bad
// archive is a 400 Status with the reason.
func TestWorkerAPIImportsImages(t *testing.T) {
	srv, rt, _ := newAPI(t, "s3cret")
	post := func(body []byte) (int, string) {
		req, _ := http.NewRequest(http.MethodPost, srv.URL+"/images/import", bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer s3cret")
		return get(t, req)
	}
	if code, body := post(archive(t, true, "orch.test/app:v1", "orch.test/app:v2")); code != 200 ||
		body != `{"images":["orch.test/app:v1","orch.test/app:v2"]}`+"\n" {
		t.Fatalf("import: %d %s", code, body)
	}
	if !hasImage(t, rt, "orch.test/app:v2") {
		t.Fatal("the image is not in the runtime")
	}
	if code, body := post([]byte("garbage")); code != 400 || !strings.Contains(body, `"kind":"Status"`) || !strings.Contains(body, "import") {
		t.Fatalf("a bad archive: %d %s", code, body)
	}
	rt.FailNext(fake.OpImportImages, errors.New("containerd is gone"))
	if code, body := post(archive(t, false, "orch.test/web:v1")); code != 400 || !strings.Contains(body, "containerd is gone") {
		t.Fatalf("a runtime failure: %d %s", code, body)
	}
	req, _ := http.NewRequest(http.MethodPost, srv.URL+"/images/import", bytes.NewReader(nil))
	if code, _ := get(t, req); code != http.StatusUnauthorized {
		t.Fatalf("without the token: %d", code)
	}
}
