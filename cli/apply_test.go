package cli

import (
	"encoding/json"
	"strings"
	"testing"

	"orch.dev/orch/api"
)

// live simulates what the server stores for a manifest applied with
// modified: the manifest plus server fields and defaults.
func live(t *testing.T, modified string, extra func(m map[string]any)) []byte {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(modified), &m); err != nil {
		t.Fatal(err)
	}
	md := m["metadata"].(map[string]any)
	md["uid"], md["resourceVersion"], md["creationTimestamp"] = "u-1", "7", "2026-03-01T12:00:00Z"
	if extra != nil {
		extra(m)
	}
	b, _ := json.Marshal(m)
	return b
}

func modifiedOf(t *testing.T, k *api.Kind, manifest string) string {
	t.Helper()
	b, err := modifiedConfiguration([]byte(manifest), k, "default")
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestModifiedConfiguration(t *testing.T) {
	manifest := `{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"c","annotations":{"kubectl.kubernetes.io/last-applied-configuration":"stale","team":"a"}},"data":{"n":"1"}}`
	mod := modifiedOf(t, api.ConfigMap, manifest)
	last := lastAppliedValue([]byte(mod))
	want := `{"apiVersion":"v1","data":{"n":"1"},"kind":"ConfigMap","metadata":{"annotations":{"team":"a"},"name":"c","namespace":"default"}}` + "\n"
	if last != want {
		t.Errorf("last-applied =\n%s\nwant\n%s", last, want)
	}
	// kubectl records an empty annotations map when the manifest has none.
	mod = modifiedOf(t, api.ConfigMap, `{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"c"}}`)
	if got := lastAppliedValue([]byte(mod)); got != `{"apiVersion":"v1","kind":"ConfigMap","metadata":{"annotations":{},"name":"c","namespace":"default"}}`+"\n" {
		t.Errorf("last-applied = %s", got)
	}
	// Cluster-scoped kinds get no namespace.
	mod = modifiedOf(t, api.Namespace, `{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"team-a"}}`)
	if strings.Contains(mod, `"namespace"`) {
		t.Errorf("namespace on a cluster-scoped object: %s", mod)
	}
}

func TestThreeWayPatch(t *testing.T) {
	const v1 = `{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"c","labels":{"app":"x"}},"data":{"a":"1","b":"2"}}`
	applied := modifiedOf(t, api.ConfigMap, v1)
	tests := []struct {
		name      string
		manifest  string
		current   []byte
		wantPatch string // "" = no-op
	}{
		{"unchanged", v1, live(t, applied, nil), ""},
		{"value changed", strings.Replace(v1, `"a":"1"`, `"a":"9"`, 1), live(t, applied, nil), `"a":"9"`},
		{"key removed from the manifest is deleted", strings.Replace(v1, `,"b":"2"`, "", 1), live(t, applied, nil), `"b":null`},
		{"fields set by others are kept", v1, live(t, applied, func(m map[string]any) {
			m["metadata"].(map[string]any)["labels"].(map[string]any)["owner"] = "ops"
			m["data"].(map[string]any)["extra"] = "x"
		}), ""},
		{"live value drifted back to the manifest", v1, live(t, applied, func(m map[string]any) {
			m["data"].(map[string]any)["a"] = "drift"
		}), `"a":"1"`},
		{"object created without apply gets the annotation", v1, live(t, `{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"c","namespace":"default","labels":{"app":"x"}},"data":{"a":"1","b":"2"}}`, nil),
			lastAppliedAnnotation},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mod := modifiedOf(t, api.ConfigMap, tt.manifest)
			patch, err := threeWayPatch(api.ConfigMap, []byte(mod), tt.current)
			if err != nil {
				t.Fatal(err)
			}
			noop, err := patchIsNoop(api.ConfigMap, tt.current, patch)
			if err != nil {
				t.Fatal(err)
			}
			switch {
			case tt.wantPatch == "" && !noop:
				t.Errorf("patch %s, want no change", patch)
			case tt.wantPatch != "" && (noop || !strings.Contains(string(patch), tt.wantPatch)):
				t.Errorf("patch %s (no-op %v), want one containing %s", patch, noop, tt.wantPatch)
			}
		})
	}
}

// TestApplyServerDefaults: lists are replaced whole by a JSON merge patch,
// so a container list the server filled with defaults differs from the
// manifest's; apply must still say "unchanged".
func TestApplyServerDefaults(t *testing.T) {
	manifest := `{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"web"},"spec":{"selector":{"matchLabels":{"app":"web"}},
		"template":{"metadata":{"labels":{"app":"web"}},"spec":{"containers":[{"name":"web","image":"nginx:1.27","ports":[{"containerPort":80}],
		"resources":{"requests":{"cpu":"0.5"}}}]}}}}`
	mod := modifiedOf(t, api.Deployment, manifest)
	obj, err := api.DecodeJSON(api.Deployment, []byte(mod))
	if err != nil {
		t.Fatal(err)
	}
	api.Default(api.Deployment, obj)
	obj.SetUID("u-1")
	obj.SetResourceVersion("9")
	current, _ := json.Marshal(obj)
	if !strings.Contains(string(current), `"protocol":"TCP"`) || !strings.Contains(string(current), `"cpu":"500m"`) {
		t.Fatalf("defaults not applied: %s", current)
	}
	patch, err := threeWayPatch(api.Deployment, []byte(mod), current)
	if err != nil {
		t.Fatal(err)
	}
	if string(patch) == "{}" {
		t.Fatalf("expected a list-replacing patch, got {}")
	}
	if noop, err := patchIsNoop(api.Deployment, current, patch); err != nil || !noop {
		t.Errorf("patch %s is not recognised as a no-op (%v)", patch, err)
	}
	// A real change in the list is not a no-op.
	changed := modifiedOf(t, api.Deployment, strings.Replace(manifest, "nginx:1.27", "nginx:1.28", 1))
	patch, _ = threeWayPatch(api.Deployment, []byte(changed), current)
	if noop, _ := patchIsNoop(api.Deployment, current, patch); noop {
		t.Errorf("image change seen as a no-op: %s", patch)
	}
}

func TestPreflight(t *testing.T) {
	ms, err := decodeSource("x.yaml", []byte("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\n  namespace: team-a\n"))
	if err != nil {
		t.Fatal(err)
	}
	if ns, err := preflight(ms[0], "default", false, true); err != nil || ns != "team-a" {
		t.Errorf("own namespace: %q %v", ns, err)
	}
	if _, err := preflight(ms[0], "team-b", true, true); err == nil || !strings.Contains(err.Error(), "--namespace=team-a") {
		t.Errorf("explicit -n mismatch: %v", err)
	}
	ms, _ = decodeSource("x.yaml", []byte("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  generateName: c-\n"))
	if _, err := preflight(ms[0], "default", false, true); err == nil {
		t.Errorf("apply accepted an object without a name")
	}
	if _, err := preflight(ms[0], "default", false, false); err != nil {
		t.Errorf("create refused generateName: %v", err)
	}
}

func TestRawObjectsMatchDecode(t *testing.T) {
	input := `# leading comment
---
apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: ConfigMap
  metadata: {name: a}
- apiVersion: v1
  kind: ConfigMap
  metadata: {name: b}
---
# only a comment
---
{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}}
`
	ms, err := decodeSource("in", []byte(input))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, m := range ms {
		var head struct {
			Metadata struct{ Name string } `json:"metadata"`
		}
		json.Unmarshal(m.raw, &head)
		if head.Metadata.Name != m.obj.GetName() {
			t.Errorf("raw %s paired with %s", m.raw, m.obj.GetName())
		}
		names = append(names, m.obj.GetName())
	}
	if strings.Join(names, ",") != "a,b,c" {
		t.Errorf("objects %v", names)
	}
}
