package api

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	sigsjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"
)

// MaxObjectBytes bounds the encoded size of one stored object. Larger
// objects are refused before they reach the log (etcd's default request
// limit is 1.5 MiB; Kubernetes caps ConfigMaps and Secrets at 1 MiB).
const MaxObjectBytes = 1 << 20

// MaxRequestBytes bounds an HTTP request body or a manifest document.
const MaxRequestBytes = 3 << 20

// DecodeJSON strictly decodes the JSON body of an object of kind k: unknown
// and duplicate fields are errors naming the field path, so a typo is never
// silently ignored. TypeMeta, when present, must match k.
func DecodeJSON(k *Kind, data []byte) (Object, error) {
	obj := k.newObj()
	strictErrs, err := sigsjson.UnmarshalStrict(data, obj, sigsjson.DisallowDuplicateFields, sigsjson.DisallowUnknownFields)
	if err != nil {
		return nil, fmt.Errorf("invalid %s: %w", k.Kind, err)
	}
	// Decoding fills apiVersion and kind too: check them against k. The
	// raw fields, because GroupVersionKind() turns a malformed apiVersion
	// ("apps/v1/x") into an empty one.
	tm := reflect.ValueOf(obj).Elem().FieldByName("TypeMeta").Interface().(metav1.TypeMeta)
	if tm.Kind != "" && tm.Kind != k.Kind {
		return nil, fmt.Errorf("kind: expected %q, got %q", k.Kind, tm.Kind)
	}
	if tm.APIVersion != "" && tm.APIVersion != k.APIVersion() {
		return nil, fmt.Errorf("apiVersion: expected %q for kind %s, got %q", k.APIVersion(), k.Kind, tm.APIVersion)
	}
	if len(strictErrs) > 0 {
		msgs := make([]string, len(strictErrs))
		for i, e := range strictErrs {
			msgs[i] = e.Error()
		}
		return nil, fmt.Errorf("invalid %s: %s", k.Kind, strings.Join(msgs, "; "))
	}
	k.SetTypeMeta(obj)
	return obj, nil
}

// DecodeAny decodes one JSON object whose kind is named by its own
// apiVersion and kind fields.
func DecodeAny(data []byte) (Object, error) {
	var tm metav1.TypeMeta
	if err := sigsjson.UnmarshalCaseSensitivePreserveInts(data, &tm); err != nil {
		return nil, fmt.Errorf("invalid JSON: %w", err)
	}
	if tm.Kind == "" {
		return nil, errors.New("kind: required field is missing")
	}
	if tm.APIVersion == "" {
		return nil, errors.New("apiVersion: required field is missing")
	}
	k, err := KindFor(tm.APIVersion, tm.Kind)
	if err != nil {
		return nil, err
	}
	return DecodeJSON(k, data)
}

// DecodeManifests reads a stream of YAML documents (separated by "---") or
// JSON objects, expanding "kind: List". Errors name the document (1-based)
// and, where one exists, the field path.
func DecodeManifests(r io.Reader) ([]Object, error) {
	reader := utilyaml.NewYAMLReader(bufio.NewReaderSize(r, 64<<10))
	var out []Object
	for doc := 1; ; doc++ {
		raw, err := reader.Read()
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("document %d: %w", doc, err)
		}
		if len(raw) > MaxRequestBytes {
			return nil, fmt.Errorf("document %d: %d bytes exceeds the %d byte limit", doc, len(raw), MaxRequestBytes)
		}
		if isBlank(raw) {
			continue
		}
		objs, err := decodeDocument(raw)
		if err != nil {
			return nil, fmt.Errorf("document %d: %w", doc, err)
		}
		out = append(out, objs...)
	}
}

func decodeDocument(raw []byte) ([]Object, error) {
	js, err := yaml.YAMLToJSONStrict(raw)
	if err != nil {
		return nil, err
	}
	if !bytes.HasPrefix(bytes.TrimSpace(js), []byte("{")) {
		return nil, errors.New("expected an object with apiVersion and kind")
	}
	var list struct {
		metav1.TypeMeta
		Items []rawJSON `json:"items"`
	}
	if err := sigsjson.UnmarshalCaseSensitivePreserveInts(js, &list); err != nil {
		return nil, err
	}
	if list.Kind != "List" && !strings.HasSuffix(list.Kind, "List") {
		obj, err := DecodeAny(js)
		if err != nil {
			return nil, withObjectName(js, err)
		}
		return []Object{obj}, nil
	}
	var out []Object
	for i, item := range list.Items {
		obj, err := DecodeAny(item)
		if err != nil {
			return nil, fmt.Errorf("items[%d]: %w", i, withObjectName(item, err))
		}
		out = append(out, obj)
	}
	return out, nil
}

// withObjectName prefixes err with "Kind/name" when the document has them,
// so a user can find the broken object in a long file.
func withObjectName(js []byte, err error) error {
	var head struct {
		Kind     string `json:"kind"`
		Metadata struct {
			Name string `json:"name"`
		} `json:"metadata"`
	}
	if json := sigsjson.UnmarshalCaseSensitivePreserveInts(js, &head); json != nil || head.Kind == "" || head.Metadata.Name == "" {
		return err
	}
	return fmt.Errorf("%s/%s: %w", head.Kind, head.Metadata.Name, err)
}

type rawJSON []byte

func (r *rawJSON) UnmarshalJSON(b []byte) error {
	*r = append((*r)[:0], b...)
	return nil
}

func isBlank(doc []byte) bool {
	for _, line := range bytes.Split(doc, []byte("\n")) {
		t := bytes.TrimSpace(line)
		// The YAML reader keeps the "---" that follows an empty document
		// at the start of the next one; "..." ends a document.
		if rest, ok := bytes.CutPrefix(t, []byte("---")); ok && (len(rest) == 0 || rest[0] == ' ' || rest[0] == '\t') {
			t = bytes.TrimSpace(rest)
		} else if string(t) == "..." {
			continue
		}
		if len(t) > 0 && t[0] != '#' {
			return false
		}
	}
	return true
}
