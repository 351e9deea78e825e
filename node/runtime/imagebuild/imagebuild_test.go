package imagebuild

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"io"
	"testing"
)

func TestParseRef(t *testing.T) {
	for in, want := range map[string]string{
		"web":                        "docker.io/library/web:latest",
		"web:v1":                     "docker.io/library/web:v1",
		"team/web":                   "docker.io/team/web:latest",
		"orch.test/web:v1":           "orch.test/web:v1",
		"127.0.0.1:5000/team/web:v2": "127.0.0.1:5000/team/web:v2",
		"localhost/web":              "localhost/web:latest",
	} {
		r, err := ParseRef(in)
		if err != nil || r.String() != want {
			t.Errorf("%s: %v %v, want %s", in, r, err, want)
		}
	}
	for _, bad := range []string{"", "Web", "web@sha256:00", "a b"} {
		if _, err := ParseRef(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

var testImg = Image{
	Name:       "orch.test/t:v1",
	Layers:     [][]File{{{Path: "/bin/hello", Data: []byte("#!/bin/sh\necho hi\n")}}, {{Path: "/etc/motd", Data: []byte("hi\n"), Mode: 0o644}}},
	Entrypoint: []string{"/bin/hello"},
}

// untar returns the files of a tar stream.
func untar(t *testing.T, b []byte) map[string][]byte {
	t.Helper()
	files := map[string][]byte{}
	tr := tar.NewReader(bytes.NewReader(b))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return files
		}
		if err != nil {
			t.Fatal(err)
		}
		files[h.Name], _ = io.ReadAll(tr)
	}
}

// Archives are reproducible, and gzip and plain layers describe the same
// image (the same config, so the same image ID).
func TestArchivesReproducible(t *testing.T) {
	var a, b bytes.Buffer
	if err := WriteArchive(&a, testImg); err != nil {
		t.Fatal(err)
	}
	if err := WriteArchive(&b, testImg); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a.Bytes(), b.Bytes()) {
		t.Fatal("two builds differ")
	}
	plain := testImg
	plain.Uncompressed = true
	gz, err := build(testImg, nil)
	if err != nil {
		t.Fatal(err)
	}
	pl, err := build(plain, nil)
	if err != nil {
		t.Fatal(err)
	}
	if gz.blobs[0].desc.Digest != pl.blobs[0].desc.Digest || gz.manifest.desc.Digest == pl.manifest.desc.Digest {
		t.Fatal("compression changed the config or not the manifest")
	}
	if pl.blobs[1].desc.MediaType != "application/vnd.oci.image.layer.v1.tar" || gz.blobs[1].desc.MediaType != "application/vnd.oci.image.layer.v1.tar+gzip" {
		t.Fatalf("media types %s, %s", pl.blobs[1].desc.MediaType, gz.blobs[1].desc.MediaType)
	}
	files := untar(t, a.Bytes())
	var idx struct {
		Manifests []struct {
			Digest      string
			Annotations map[string]string
		}
	}
	if err := json.Unmarshal(files["index.json"], &idx); err != nil {
		t.Fatal(err)
	}
	if len(idx.Manifests) != 1 || idx.Manifests[0].Annotations["io.containerd.image.name"] != "orch.test/t:v1" || idx.Manifests[0].Digest != string(gz.manifest.desc.Digest) {
		t.Fatalf("index %+v", idx)
	}
}

// A docker archive names its config and layers, and every named file is there.
func TestDockerArchive(t *testing.T) {
	var b bytes.Buffer
	second := testImg
	second.Name = "web" // shares both layers
	if err := WriteDockerArchive(&b, testImg, second); err != nil {
		t.Fatal(err)
	}
	files := untar(t, b.Bytes())
	var m []struct {
		Config   string
		RepoTags []string
		Layers   []string
	}
	if err := json.Unmarshal(files["manifest.json"], &m); err != nil {
		t.Fatal(err)
	}
	if len(m) != 2 || m[0].RepoTags[0] != "orch.test/t:v1" || m[1].RepoTags[0] != "docker.io/library/web:latest" || len(m[0].Layers) != 2 {
		t.Fatalf("manifest %+v", m)
	}
	for _, e := range m {
		for _, f := range append([]string{e.Config}, e.Layers...) {
			if _, ok := files[f]; !ok {
				t.Fatalf("%s named but missing", f)
			}
		}
	}
	if len(files) != 4 { // manifest, one config (same content), two layers
		t.Fatalf("%d files: shared layers stored twice?", len(files))
	}
	if layer := untar(t, files[m[0].Layers[0]]); string(layer["bin/hello"]) != "#!/bin/sh\necho hi\n" {
		t.Fatalf("layer %v", layer)
	}
}
