package fake

import (
	"archive/tar"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path"
	"sort"

	"orch.dev/orch/node/runtime"
)

func mustNormalize(ref string) string {
	n, err := runtime.NormalizeImageRef(ref)
	if err != nil {
		panic("fake runtime: " + err.Error())
	}
	return n
}

func imageInfo(name string, version int) runtime.ImageInfo {
	return runtime.ImageInfo{Ref: name, Digest: digest("manifest", name, version), ID: digest("config", name, version), Size: 1 << 20}
}

// AddImage makes images present, as an import does.
func (f *Runtime) AddImage(refs ...string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, r := range refs {
		n := mustNormalize(r)
		f.images[n] = imageInfo(n, -1)
	}
}

// RemoveImage makes an image absent.
func (f *Runtime) RemoveImage(ref string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.images, mustNormalize(ref))
}

// AddRegistryImage puts images in the registry, where EnsureImage pulls
// them from. Adding one again is a push of new content under the same
// name: a new digest, which PullAlways picks up and PullIfNotPresent does
// not.
func (f *Runtime) AddRegistryImage(refs ...string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, r := range refs {
		n := mustNormalize(r)
		f.versions[n]++
		f.registry[n] = imageInfo(n, f.versions[n])
	}
}

// SetPullError makes pulls of ref fail with err (wrapped in ErrImagePull),
// as an unreachable registry or a denied pull does; nil clears it.
func (f *Runtime) SetPullError(ref string, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err == nil {
		delete(f.pullErrs, mustNormalize(ref))
	} else {
		f.pullErrs[mustNormalize(ref)] = err
	}
}

// Pulls returns how many times ref was pulled from the registry.
func (f *Runtime) Pulls(ref string) int {
	name := mustNormalize(ref)
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, c := range f.calls {
		if c.Op == OpEnsureImage && c.Name == name && c.ID == "pulled" {
			n++
		}
	}
	return n
}

// EnsureImage implements runtime.Runtime.
func (f *Runtime) EnsureImage(ctx context.Context, ref string, policy runtime.PullPolicy) (runtime.ImageInfo, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	call := Call{Op: OpEnsureImage, Name: ref}
	info, pulled, err := f.ensureImage(ref, policy)
	if pulled {
		call.ID = "pulled"
	}
	if info.Ref != "" {
		call.Name = info.Ref
	}
	call.Err = err
	f.record(call)
	return info, err
}

func (f *Runtime) ensureImage(ref string, policy runtime.PullPolicy) (_ runtime.ImageInfo, pulled bool, _ error) {
	name, err := runtime.NormalizeImageRef(ref)
	if err != nil {
		return runtime.ImageInfo{}, false, fmt.Errorf("%w: %v", runtime.ErrImagePull, err)
	}
	if err := f.failure(OpEnsureImage); err != nil {
		return runtime.ImageInfo{Ref: name}, false, err
	}
	if policy != runtime.PullAlways {
		if info, ok := f.images[name]; ok {
			return info, false, nil
		}
		if policy == runtime.PullNever {
			return runtime.ImageInfo{Ref: name}, false, fmt.Errorf("image %s is not present and pull policy is Never: %w", name, runtime.ErrImageNotFound)
		}
	}
	if err := f.pullErrs[name]; err != nil {
		return runtime.ImageInfo{Ref: name}, false, fmt.Errorf("pull %s: %w: %v", name, runtime.ErrImagePull, err)
	}
	info, ok := f.registry[name]
	if !ok {
		return runtime.ImageInfo{Ref: name}, false, fmt.Errorf("pull %s: %w: %s: not found", name, runtime.ErrImageNotFound, name)
	}
	f.images[name] = info
	return info, true, nil
}

// ListImages implements runtime.Runtime. Images are sorted by name.
func (f *Runtime) ListImages(ctx context.Context) ([]runtime.ImageInfo, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.failure(OpListImages); err != nil {
		return nil, err
	}
	out := make([]runtime.ImageInfo, 0, len(f.images))
	for _, i := range f.images {
		out = append(out, i)
	}
	sort.Slice(out, func(a, b int) bool { return out[a].Ref < out[b].Ref })
	return out, nil
}

// ImportImages implements runtime.Runtime: it reads the image names of an
// OCI layout archive (io.containerd.image.name annotations, as
// imagebuild.WriteArchive writes them) or a docker-save archive (RepoTags)
// and makes those images present. Layers are not looked at.
func (f *Runtime) ImportImages(ctx context.Context, r io.Reader) ([]string, error) {
	names, err := archiveNames(r)
	f.mu.Lock()
	defer f.mu.Unlock()
	if ferr := f.failure(OpImportImages); ferr != nil {
		err = ferr
	}
	if err == nil {
		for _, n := range names {
			f.images[n] = imageInfo(n, -1)
		}
	}
	f.record(Call{Op: OpImportImages, Err: err})
	if err != nil {
		return nil, err
	}
	return names, nil
}

func archiveNames(r io.Reader) ([]string, error) {
	var names []string
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("import: %w", err)
		}
		switch path.Clean(h.Name) {
		case "index.json":
			var idx struct {
				Manifests []struct{ Annotations map[string]string }
			}
			if err := json.NewDecoder(tr).Decode(&idx); err != nil {
				return nil, fmt.Errorf("import: index.json: %w", err)
			}
			for _, m := range idx.Manifests {
				if n := m.Annotations["io.containerd.image.name"]; n != "" {
					names = append(names, n)
				}
			}
		case "manifest.json":
			var ms []struct{ RepoTags []string }
			if err := json.NewDecoder(tr).Decode(&ms); err != nil {
				return nil, fmt.Errorf("import: manifest.json: %w", err)
			}
			for _, m := range ms {
				for _, t := range m.RepoTags {
					n, err := runtime.NormalizeImageRef(t)
					if err != nil {
						return nil, fmt.Errorf("import: %w", err)
					}
					names = append(names, n)
				}
			}
		}
	}
	if len(names) == 0 {
		return nil, errors.New("import: the archive holds no named image")
	}
	return names, nil
}
