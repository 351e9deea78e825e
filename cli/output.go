package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"

	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/yaml"

	"orch.dev/orch/api"
)

// Output formats of -o.
const (
	outTable = ""
	outWide  = "wide"
	outJSON  = "json"
	outYAML  = "yaml"
	outName  = "name"
)

func checkOutput(o string, allowed ...string) error {
	var names []string
	for _, a := range allowed {
		if o == a {
			return nil
		}
		if a != outTable {
			names = append(names, a)
		}
	}
	return fmt.Errorf("-o %q: unsupported output format (use %s)", o, strings.Join(names, ", "))
}

// toMap converts an object as kubectl does before printing it (through
// runtime.DefaultUnstructuredConverter), with apiVersion and kind set.
func toMap(obj api.Object) (map[string]any, error) {
	k, err := kindOf(obj)
	if err != nil {
		return nil, err
	}
	u, err := runtime.DefaultUnstructuredConverter.ToUnstructured(obj)
	if err != nil {
		return nil, err
	}
	u["apiVersion"], u["kind"] = k.APIVersion(), k.Kind
	return u, nil
}

// listMap is the List kubectl prints for several objects.
func listMap(objs []api.Object) (map[string]any, error) {
	items := make([]any, 0, len(objs))
	for _, o := range objs {
		m, err := toMap(o)
		if err != nil {
			return nil, err
		}
		items = append(items, m)
	}
	return map[string]any{
		"apiVersion": "v1",
		"kind":       "List",
		"items":      items,
		"metadata":   map[string]any{"resourceVersion": ""},
	}, nil
}

// printStructured prints objs as JSON or YAML: the object itself when one
// named object was asked for, else a List (kubectl's rule).
func printStructured(w io.Writer, format string, objs []api.Object, single bool) error {
	var v any
	var err error
	if single && len(objs) == 1 {
		v, err = toMap(objs[0])
	} else {
		v, err = listMap(objs)
	}
	if err != nil {
		return err
	}
	return writeValue(w, format, v)
}

// writeValue writes JSON indented by four spaces with sorted keys, or YAML,
// exactly as kubectl's printers do.
func writeValue(w io.Writer, format string, v any) error {
	var b []byte
	var err error
	if format == outYAML {
		b, err = yaml.Marshal(v)
	} else {
		b, err = json.MarshalIndent(v, "", "    ")
		b = append(b, '\n')
	}
	if err != nil {
		return err
	}
	_, err = w.Write(b)
	return err
}

// printNames prints kind/name lines (-o name).
func printNames(w io.Writer, objs []api.Object) error {
	for _, o := range objs {
		k, err := kindOf(o)
		if err != nil {
			return err
		}
		fmt.Fprintln(w, objectRef(k, o.GetName()))
	}
	return nil
}
