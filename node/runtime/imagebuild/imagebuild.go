// Package imagebuild packs files, typically one statically linked program,
// into OCI images without a container engine or a registry: an OCI image
// archive that containerd imports (WriteArchive), or an upload to a registry
// over the distribution HTTP API (Push).
//
// It owns image building for tests, `make images` and demos. It must never
// be needed by the worker at run time: workers only import and pull. Images
// are reproducible: the same files give the same digests (fixed timestamps,
// sorted entries), so layers shared between images are stored once.
package imagebuild

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"runtime"
	"sort"
	"strings"
	"time"

	digest "github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// File is one entry of a layer. Exactly one of Data, Source, Link or Dir
// says what it is; parent directories are added automatically.
type File struct {
	Path   string      // absolute path in the image, e.g. /bin/web
	Mode   fs.FileMode // permission bits; 0 means 0755 (files and dirs)
	Data   []byte      // file contents
	Source string      // host file whose contents are copied
	Link   string      // symlink target
	Dir    bool        // a directory
}

// Image describes an image to build.
type Image struct {
	// Name is the reference, e.g. "orch.test/web:v1" or "127.0.0.1:5000/web";
	// it is normalised as Docker does ("web" -> "docker.io/library/web:latest").
	Name       string
	Layers     [][]File
	Entrypoint []string
	Cmd        []string
	Env        []string
	WorkingDir string
	User       string
	// Uncompressed stores layers as plain tar instead of gzip: several
	// times faster to build (tests build images on every run, under the
	// race detector), larger to move.
	Uncompressed bool
}

// epoch is the timestamp of every entry and of the config, for reproducibility.
var epoch = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)

type blob struct {
	desc ocispec.Descriptor
	data []byte
}

// built is an image in registry form: its manifest, config and layer blobs.
type built struct {
	ref      Ref
	manifest blob
	blobs    []blob // config first, then layers
}

func newBlob(mediaType string, data []byte) blob {
	return blob{desc: ocispec.Descriptor{MediaType: mediaType, Digest: digest.FromBytes(data), Size: int64(len(data))}, data: data}
}

// layerCache holds layer blobs by the digest of their uncompressed tar and
// their media type, so a base layer shared by several images is compressed
// once (gzip dominates build time, most of all under the race detector).
type layerCache map[string]blob

func build(img Image, cache layerCache) (*built, error) {
	ref, err := ParseRef(img.Name)
	if err != nil {
		return nil, err
	}
	if cache == nil {
		cache = layerCache{}
	}
	b := &built{ref: ref}
	var diffIDs []digest.Digest
	var layers []blob
	for i, files := range img.Layers {
		raw, err := layerTar(files)
		if err != nil {
			return nil, fmt.Errorf("layer %d: %w", i, err)
		}
		diffID := digest.FromBytes(raw)
		diffIDs = append(diffIDs, diffID)
		key := string(diffID) + " " + fmt.Sprint(img.Uncompressed)
		l, ok := cache[key]
		switch {
		case ok:
		case img.Uncompressed:
			l = newBlob(ocispec.MediaTypeImageLayer, raw)
			cache[key] = l
		default:
			var gz bytes.Buffer
			// BestSpeed: images are built often (every test run) and
			// moved over loopback or a LAN; size matters less.
			zw, _ := gzip.NewWriterLevel(&gz, gzip.BestSpeed)
			zw.Write(raw)
			if err := zw.Close(); err != nil {
				return nil, err
			}
			l = newBlob(ocispec.MediaTypeImageLayerGzip, gz.Bytes())
			cache[key] = l
		}
		layers = append(layers, l)
	}
	created := epoch
	cfg := ocispec.Image{
		Created:  &created,
		Platform: ocispec.Platform{Architecture: runtime.GOARCH, OS: "linux"},
		Config: ocispec.ImageConfig{
			Entrypoint: img.Entrypoint, Cmd: img.Cmd, Env: img.Env,
			WorkingDir: img.WorkingDir, User: img.User,
		},
		RootFS: ocispec.RootFS{Type: "layers", DiffIDs: diffIDs},
	}
	cfgJSON, err := json.Marshal(cfg)
	if err != nil {
		return nil, err
	}
	config := newBlob(ocispec.MediaTypeImageConfig, cfgJSON)
	m := ocispec.Manifest{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: ocispec.MediaTypeImageManifest,
		Config:    config.desc,
	}
	for _, l := range layers {
		m.Layers = append(m.Layers, l.desc)
	}
	mJSON, err := json.Marshal(m)
	if err != nil {
		return nil, err
	}
	b.manifest = newBlob(ocispec.MediaTypeImageManifest, mJSON)
	b.blobs = append([]blob{config}, layers...)
	return b, nil
}

// layerTar returns the uncompressed tar of one layer, entries sorted by path
// and parent directories created first.
func layerTar(files []File) ([]byte, error) {
	entries := map[string]File{}
	for _, f := range files {
		p := path.Clean("/" + f.Path)
		if p == "/" {
			return nil, fmt.Errorf("bad path %q", f.Path)
		}
		f.Path = p
		entries[p] = f
		for d := path.Dir(p); d != "/"; d = path.Dir(d) {
			if _, ok := entries[d]; !ok {
				entries[d] = File{Path: d, Dir: true}
			}
		}
	}
	paths := make([]string, 0, len(entries))
	for p := range entries {
		paths = append(paths, p)
	}
	sort.Strings(paths)

	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, p := range paths {
		f := entries[p]
		mode := int64(f.Mode.Perm())
		if mode == 0 {
			mode = 0o755
		}
		if f.Mode&fs.ModeSticky != 0 {
			mode |= 0o1000
		}
		h := &tar.Header{Name: strings.TrimPrefix(p, "/"), Mode: mode, ModTime: epoch, Format: tar.FormatPAX}
		data := f.Data
		switch {
		case f.Dir:
			h.Typeflag, h.Name = tar.TypeDir, h.Name+"/"
		case f.Link != "":
			h.Typeflag, h.Linkname, h.Mode = tar.TypeSymlink, f.Link, 0o777
		default:
			if f.Source != "" {
				var err error
				if data, err = os.ReadFile(f.Source); err != nil {
					return nil, err
				}
			}
			h.Typeflag, h.Size = tar.TypeReg, int64(len(data))
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, err
		}
		if _, err := tw.Write(data); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// WriteArchive writes an OCI image layout holding imgs as one tar stream.
// Each image carries its full name in the io.containerd.image.name
// annotation (so containerd names it exactly) and its tag in
// org.opencontainers.image.ref.name.
func WriteArchive(w io.Writer, imgs ...Image) error {
	idx := ocispec.Index{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageIndex}
	blobs := map[digest.Digest][]byte{}
	cache := layerCache{}
	for _, img := range imgs {
		b, err := build(img, cache)
		if err != nil {
			return fmt.Errorf("image %q: %w", img.Name, err)
		}
		d := b.manifest.desc
		d.Annotations = map[string]string{
			"io.containerd.image.name": b.ref.String(),
			ocispec.AnnotationRefName:  b.ref.Tag,
		}
		d.Platform = &ocispec.Platform{Architecture: runtime.GOARCH, OS: "linux"}
		idx.Manifests = append(idx.Manifests, d)
		blobs[b.manifest.desc.Digest] = b.manifest.data
		for _, bl := range b.blobs {
			blobs[bl.desc.Digest] = bl.data
		}
	}
	idxJSON, err := json.Marshal(idx)
	if err != nil {
		return err
	}
	tw := tar.NewWriter(w)
	put := func(name string, data []byte) error {
		h := &tar.Header{Name: name, Mode: 0o644, Size: int64(len(data)), ModTime: epoch, Typeflag: tar.TypeReg}
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		_, err := tw.Write(data)
		return err
	}
	if err := put(ocispec.ImageLayoutFile, []byte(`{"imageLayoutVersion":"1.0.0"}`)); err != nil {
		return err
	}
	if err := put(ocispec.ImageIndexFile, idxJSON); err != nil {
		return err
	}
	digests := make([]string, 0, len(blobs))
	for d := range blobs {
		digests = append(digests, string(d))
	}
	sort.Strings(digests)
	for _, d := range digests {
		dg := digest.Digest(d)
		if err := put("blobs/"+dg.Algorithm().String()+"/"+dg.Encoded(), blobs[dg]); err != nil {
			return err
		}
	}
	return tw.Close()
}

// ManifestDigest returns the digest the image's manifest will have.
func ManifestDigest(img Image) (string, error) {
	b, err := build(img, nil)
	if err != nil {
		return "", err
	}
	return string(b.manifest.desc.Digest), nil
}
