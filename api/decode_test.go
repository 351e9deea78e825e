package api

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
)

// summary renders decoded objects as "Kind ns/name".
func summary(objs []Object) []string {
	out := make([]string, len(objs))
	for i, o := range objs {
		gvk := o.GetObjectKind().GroupVersionKind()
		out[i] = fmt.Sprintf("%s %s %s/%s", gvk.GroupVersion(), gvk.Kind, o.GetNamespace(), o.GetName())
	}
	return out
}

func TestDecodeManifests(t *testing.T) {
	tests := []struct {
		name, in string
		want     []string
	}{
		{"multi-document YAML with comments and empty documents", `
# A leading comment document.
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: settings   # trailing comment
  namespace: prod
data:
  a: "1"
---
---
# only a comment
---

---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: web, image: nginx}]
...
`, []string{"v1 ConfigMap prod/settings", "apps/v1 Deployment /web"}},
		{"JSON", `{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "prod"}}`,
			[]string{"v1 Namespace /prod"}},
		{"JSON over several lines", "{\n  \"apiVersion\": \"v1\",\n  \"kind\": \"Secret\",\n  \"metadata\": {\"name\": \"s\"},\n  \"data\": {\"k\": \"dg==\"}\n}\n",
			[]string{"v1 Secret /s"}},
		{"kind List", `
apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: Service
  metadata: {name: web}
  spec: {ports: [{port: 80}]}
- apiVersion: v1
  kind: Pod
  metadata: {name: p, namespace: x}
  spec: {containers: [{name: c, image: busybox}]}
`, []string{"v1 Service /web", "v1 Pod x/p"}},
		{"typed list in JSON", `{"apiVersion": "v1", "kind": "ConfigMapList", "items": [
			{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}},
			{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "b"}}]}`,
			[]string{"v1 ConfigMap /a", "v1 ConfigMap /b"}},
		{"empty list", "apiVersion: v1\nkind: List\nitems: []\n", nil},
		{"empty input", "", nil},
		{"only comments", "# nothing\n---\n# here\n", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			objs, err := DecodeManifests(strings.NewReader(tt.in))
			if err != nil {
				t.Fatal(err)
			}
			if got := summary(objs); strings.Join(got, "\n") != strings.Join(tt.want, "\n") {
				t.Fatalf("decoded %q, want %q", got, tt.want)
			}
		})
	}
}

func TestDecodeManifestsTypedValues(t *testing.T) {
	objs, err := DecodeManifests(strings.NewReader(`
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, labels: {tier: "1"}}
spec:
  replicas: 3
  selector: {matchLabels: {app: web}}
  strategy: {rollingUpdate: {maxSurge: 1, maxUnavailable: "50%"}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - name: web
        image: nginx:1.27
        resources: {requests: {cpu: 250m, memory: 64Mi}}
        ports: [{containerPort: 8080}]
`))
	if err != nil {
		t.Fatal(err)
	}
	d := objs[0].(*appsv1.Deployment)
	c := d.Spec.Template.Spec.Containers[0]
	if *d.Spec.Replicas != 3 || d.Labels["tier"] != "1" || d.Spec.Strategy.RollingUpdate.MaxSurge.IntValue() != 1 ||
		d.Spec.Strategy.RollingUpdate.MaxUnavailable.String() != "50%" || c.Resources.Requests.Cpu().MilliValue() != 250 ||
		c.Ports[0].ContainerPort != 8080 {
		t.Fatalf("decoded deployment %+v", d.Spec)
	}
}

func TestDecodeManifestsErrors(t *testing.T) {
	deployment := `apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 1
`
	tests := []struct {
		name, in string
		want     []string // substrings of the error
	}{
		{"unknown field names document, object and path",
			"apiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n---\n" + deployment + "  replicaz: 2\n",
			[]string{"document 2", "Deployment/web", `unknown field "spec.replicaz"`}},
		{"unknown nested field",
			deployment + "  template:\n    spec:\n      containers: [{name: c, image: x, imagePolicy: Always}]\n",
			[]string{"document 1", "Deployment/web", "spec.template.spec.containers[0].imagePolicy"}},
		{"unknown top-level field", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\ndatta: {}\n",
			[]string{"document 1", "ConfigMap/c", `unknown field "datta"`}},
		{"duplicate field", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\ndata: {}\ndata: {}\n",
			[]string{"document 1", "data"}},
		{"wrong type", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\ndata: [1, 2]\n",
			[]string{"document 1", "ConfigMap/c"}},
		{"malformed YAML", "apiVersion: v1\nkind: ConfigMap\n---\napiVersion: v1\nkind: [unclosed\n",
			[]string{"document 2"}},
		{"bad indentation", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n name: b\n",
			[]string{"document 1"}},
		{"unknown kind", "apiVersion: batch/v1\nkind: CronJob\nmetadata: {name: nightly}\n",
			[]string{"document 1", "CronJob/nightly", `unknown kind "CronJob"`}},
		{"wrong apiVersion", "apiVersion: v1\nkind: Deployment\nmetadata: {name: web}\n",
			[]string{"document 1", "Deployment/web", `"apps/v1"`, `not "v1"`}},
		{"missing kind", "apiVersion: v1\nmetadata: {name: x}\n", []string{"document 1", "kind"}},
		{"missing apiVersion", "kind: Pod\nmetadata: {name: x}\n", []string{"document 1", "apiVersion"}},
		{"scalar document", "just a string\n", []string{"document 1", "expected an object"}},
		{"list document", "- a\n- b\n", []string{"document 1", "expected an object"}},
		{"bad list item", "apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: ConfigMap\n  metadata: {name: ok}\n" +
			"- apiVersion: v1\n  kind: ConfigMap\n  metadata: {name: bad}\n  extra: 1\n",
			[]string{"document 1", "items[1]", "ConfigMap/bad", `unknown field "extra"`}},
		{"oversized document", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: big}\ndata:\n  k: " +
			strings.Repeat("x", MaxRequestBytes) + "\n", []string{"document 1", "exceeds"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			objs, err := DecodeManifests(strings.NewReader(tt.in))
			if err == nil {
				t.Fatalf("decoded %v, want an error", summary(objs))
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

func TestDecodeJSON(t *testing.T) {
	obj, err := DecodeJSON(Pod, []byte(`{"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "x"}]}}`))
	if err != nil {
		t.Fatal(err)
	}
	if gvk := obj.GetObjectKind().GroupVersionKind(); gvk.Kind != "Pod" || gvk.Version != "v1" {
		t.Fatalf("TypeMeta not set: %v", gvk)
	}
	if obj.(*corev1.Pod).Spec.Containers[0].Image != "x" {
		t.Fatalf("decoded %+v", obj)
	}
	bad := map[string]string{
		"kind mismatch":        `{"kind": "Service", "metadata": {"name": "p"}}`,
		"apiVersion mismatch":  `{"apiVersion": "apps/v1", "kind": "Pod", "metadata": {"name": "p"}}`,
		"malformed apiVersion": `{"apiVersion": "v1/extra/parts", "kind": "Pod", "metadata": {"name": "p"}}`,
		"apiVersion /":         `{"apiVersion": "/", "metadata": {"name": "p"}}`,
		"unknown field":        `{"metadata": {"name": "p", "nmae": "q"}}`,
		"case mismatch":        `{"metadata": {"Name": "p"}}`,
		"not JSON":             `{"metadata":`,
		"trailing data":        `{"metadata": {"name": "p"}} {}`,
	}
	for name, in := range bad {
		if _, err := DecodeJSON(Pod, []byte(in)); err == nil {
			t.Errorf("%s: DecodeJSON accepted %s", name, in)
		}
	}
	if _, err := DecodeJSON(Pod, []byte(`{"metadata": {"name": "p", "nmae": "q"}}`)); err == nil || !strings.Contains(err.Error(), "metadata.nmae") {
		t.Errorf("unknown field error does not name the path: %v", err)
	}
}

func TestDecodeAny(t *testing.T) {
	obj, err := DecodeAny([]byte(`{"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "agent"}}`))
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := obj.(*appsv1.DaemonSet); !ok {
		t.Fatalf("decoded %T", obj)
	}
	for _, in := range []string{`{"apiVersion": "v1"}`, `{"kind": "Pod"}`, `{"apiVersion": "v1", "kind": "Widget"}`, `[]`} {
		if _, err := DecodeAny([]byte(in)); err == nil {
			t.Errorf("DecodeAny accepted %s", in)
		}
	}
}

// FuzzDecodeManifests: any input decodes or fails without panicking, and
// what decodes is a fixed point of encoding and decoding again.
func FuzzDecodeManifests(f *testing.F) {
	for _, seed := range []string{
		"apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\ndata: {k: v}\n---\napiVersion: v1\nkind: Namespace\nmetadata: {name: n}\n",
		`{"apiVersion": "v1", "kind": "List", "items": [{"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}}]}`,
		"apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec: {replicas: 2, selector: {matchLabels: {a: b}}, " +
			"template: {metadata: {labels: {a: b}}, spec: {containers: [{name: c, image: x, resources: {limits: {cpu: 1500m}}}]}}}\n",
		"apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec: {ports: [{port: 80, targetPort: http}]}\n",
		"apiVersion: v1\nkind: Pod\nmetadata: {name: p, creationTimestamp: \"2024-01-01T00:00:00.5Z\"}\n",
		"# comment\n---\n---\n",
		"apiVersion: v1\nkind: Node\nmetadata: {name: n}\nstatus: {capacity: {memory: 1Gi}}\n",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 64<<10 {
			return
		}
		objs, err := DecodeManifests(strings.NewReader(string(data)))
		if err != nil {
			return
		}
		for _, obj := range objs {
			gvk := obj.GetObjectKind().GroupVersionKind()
			k, err := KindFor(gvk.GroupVersion().String(), gvk.Kind)
			if err != nil {
				t.Fatalf("decoded an object without a supported TypeMeta: %v", err)
			}
			first, err := json.Marshal(obj)
			if err != nil {
				t.Fatalf("decoded %s does not encode: %v", k.Kind, err)
			}
			again, err := DecodeJSON(k, first)
			if err != nil {
				t.Fatalf("encoded %s does not decode: %v\n%s", k.Kind, err, first)
			}
			second, _ := json.Marshal(again)
			if string(first) != string(second) {
				t.Fatalf("%s is not a fixed point:\n%s\n%s", k.Kind, first, second)
			}
			Default(k, obj)
			Validate(k, obj, nil) // must not panic on any decodable input
		}
	})
}
