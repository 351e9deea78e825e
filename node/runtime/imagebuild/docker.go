package imagebuild

import (
	"archive/tar"
	"encoding/json"
	"fmt"
	"io"
	"sort"
)

// WriteDockerArchive writes imgs as `docker save` does: manifest.json
// naming each image's config and layers, the config as <hex>.json and each
// layer uncompressed as <hex>/layer.tar, and the image's full name in
// RepoTags. Images sharing a layer share its file.
func WriteDockerArchive(w io.Writer, imgs ...Image) error {
	type entry struct {
		Config   string
		RepoTags []string
		Layers   []string
	}
	var manifest []entry
	files := map[string][]byte{}
	cache := layerCache{}
	for _, img := range imgs {
		img.Uncompressed = true // docker save stores plain tars
		b, err := build(img, cache)
		if err != nil {
			return fmt.Errorf("image %q: %w", img.Name, err)
		}
		cfg := b.blobs[0]
		e := entry{Config: cfg.desc.Digest.Encoded() + ".json", RepoTags: []string{b.ref.String()}}
		files[e.Config] = cfg.data
		for _, l := range b.blobs[1:] {
			name := l.desc.Digest.Encoded() + "/layer.tar"
			files[name] = l.data
			e.Layers = append(e.Layers, name)
		}
		manifest = append(manifest, e)
	}
	mJSON, err := json.Marshal(manifest)
	if err != nil {
		return err
	}
	files["manifest.json"] = mJSON
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	tw := tar.NewWriter(w)
	for _, n := range names {
		h := &tar.Header{Name: n, Mode: 0o644, Size: int64(len(files[n])), ModTime: epoch, Typeflag: tar.TypeReg}
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		if _, err := tw.Write(files[n]); err != nil {
			return err
		}
	}
	return tw.Close()
}
