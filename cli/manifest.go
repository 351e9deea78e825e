package cli

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	sigsjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"

	"orch.dev/orch/api"
)

// manifest is one object read from -f input.
type manifest struct {
	source string // file name, or "STDIN"
	kind   *api.Kind
	obj    api.Object // strictly decoded
	raw    []byte     // the object's JSON as the user wrote it (for apply's patch)
}

// readManifests reads every -f argument (files, directories, "-" for
// stdin) and decodes all of it before anything is sent, so malformed input
// in any document changes nothing.
func readManifests(e *env, paths []string, recursive bool) ([]manifest, error) {
	if len(paths) == 0 {
		return nil, errors.New("-f/--filename is required (a file, a directory, or - for stdin)")
	}
	var out []manifest
	for _, p := range paths {
		files, err := expandPath(p, recursive)
		if err != nil {
			return nil, err
		}
		for _, f := range files {
			data, source, err := readSource(e, f)
			if err != nil {
				return nil, err
			}
			ms, err := decodeSource(source, data)
			if err != nil {
				return nil, err
			}
			out = append(out, ms...)
		}
	}
	if len(out) == 0 {
		return nil, errors.New("no objects passed (the files given contain no manifests)")
	}
	return out, nil
}

var manifestExts = map[string]bool{".yaml": true, ".yml": true, ".json": true}

// expandPath turns a -f argument into files: a directory yields its
// *.yaml, *.yml and *.json files in name order (and its subdirectories'
// with -R).
func expandPath(p string, recursive bool) ([]string, error) {
	if p == "-" {
		return []string{p}, nil
	}
	if strings.HasPrefix(p, "http://") || strings.HasPrefix(p, "https://") {
		return nil, fmt.Errorf("-f %s: reading manifests from URLs is not supported; download the file first", p)
	}
	st, err := os.Stat(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("the path %q does not exist", p)
	}
	if err != nil {
		return nil, err
	}
	if !st.IsDir() {
		return []string{p}, nil
	}
	var files []string
	err = filepath.WalkDir(p, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if path != p && !recursive {
				return filepath.SkipDir
			}
			return nil
		}
		if manifestExts[strings.ToLower(filepath.Ext(path))] {
			files = append(files, path)
		}
		return nil
	})
	sort.Strings(files)
	return files, err
}

func readSource(e *env, path string) ([]byte, string, error) {
	if path == "-" {
		data, err := io.ReadAll(io.LimitReader(e.stdin, 64<<20))
		return data, "STDIN", err
	}
	data, err := os.ReadFile(path)
	return data, path, err
}

// decodeSource decodes one file strictly (api.DecodeManifests) and pairs
// every object with its JSON as written.
func decodeSource(source string, data []byte) ([]manifest, error) {
	objs, err := api.DecodeManifests(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", source, err)
	}
	raws, err := rawObjects(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", source, err)
	}
	if len(raws) != len(objs) {
		return nil, fmt.Errorf("%s: found %d objects but decoded %d (please report this)", source, len(raws), len(objs))
	}
	out := make([]manifest, len(objs))
	for i, obj := range objs {
		k, err := kindOf(obj)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", source, err)
		}
		out[i] = manifest{source: source, kind: k, obj: obj, raw: raws[i]}
	}
	return out, nil
}

// rawObjects splits a manifest stream exactly as api.DecodeManifests does
// (YAML documents or JSON objects, Lists expanded), returning each
// object's JSON unchanged by typed decoding: apply must diff what the user
// wrote, not the defaults a typed round trip adds.
func rawObjects(data []byte) ([][]byte, error) {
	reader := utilyaml.NewYAMLReader(bufio.NewReaderSize(bytes.NewReader(data), 64<<10))
	var out [][]byte
	for doc := 1; ; doc++ {
		raw, err := reader.Read()
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("document %d: %w", doc, err)
		}
		js, err := yaml.YAMLToJSON(raw)
		if err != nil {
			return nil, fmt.Errorf("document %d: %w", doc, err)
		}
		js = bytes.TrimSpace(js)
		if !bytes.HasPrefix(js, []byte("{")) {
			continue // blank or comment-only document
		}
		var head struct {
			Kind  string            `json:"kind"`
			Items []json.RawMessage `json:"items"`
		}
		if err := sigsjson.UnmarshalCaseSensitivePreserveInts(js, &head); err != nil {
			return nil, fmt.Errorf("document %d: %w", doc, err)
		}
		if head.Kind == "List" || strings.HasSuffix(head.Kind, "List") {
			for _, item := range head.Items {
				out = append(out, []byte(item))
			}
			continue
		}
		out = append(out, js)
	}
}
