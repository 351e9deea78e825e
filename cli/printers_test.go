package cli

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"orch.dev/orch/api"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// golden compares got with testdata/name, or rewrites it with -update.
func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./cli -run %s -update)", err, t.Name())
	}
	if got != string(want) {
		t.Errorf("%s differs (run with -update to accept):\n--- got\n%s\n--- want\n%s", path, got, want)
	}
}

func allFixtures() map[*api.Kind][]api.Object {
	m := fixtureOthers()
	m[api.Pod] = fixturePods()
	m[api.Deployment] = []api.Object{fixtureDeployment()}
	m[api.Node] = fixtureNodes()
	m[api.Service] = fixtureServices()
	m[api.Endpoints] = fixtureEndpoints()
	return m
}

func TestTables(t *testing.T) {
	fixtures := allFixtures()
	for _, k := range api.Kinds {
		objs := fixtures[k]
		if len(objs) == 0 {
			t.Errorf("no fixture for %s", k.Kind)
			continue
		}
		var b bytes.Buffer
		for _, v := range []struct {
			title string
			opts  tableOptions
		}{
			{"default", tableOptions{}},
			{"-o wide", tableOptions{wide: true}},
			{"-A --show-labels", tableOptions{allNamespaces: true, showLabels: true}},
			{"several types, --no-headers", tableOptions{withKind: true, noHeaders: true}},
		} {
			b.WriteString("# " + v.title + "\n")
			if err := printTable(&b, k, objs, fixedNow, v.opts); err != nil {
				t.Fatal(err)
			}
		}
		golden(t, "table-"+k.Resource+".txt", b.String())
	}
}

func TestStructuredOutput(t *testing.T) {
	objs := []api.Object{fixtureConfigMap(), fixtureDeployment()}
	for _, format := range []string{outJSON, outYAML} {
		var list, single bytes.Buffer
		if err := printStructured(&list, format, objs, false); err != nil {
			t.Fatal(err)
		}
		if err := printStructured(&single, format, objs[:1], true); err != nil {
			t.Fatal(err)
		}
		golden(t, "list."+format, list.String())
		golden(t, "single."+format, single.String())
	}
	var empty bytes.Buffer
	printStructured(&empty, outJSON, nil, false)
	want := "{\n    \"apiVersion\": \"v1\",\n    \"items\": [],\n    \"kind\": \"List\",\n    \"metadata\": {\n        \"resourceVersion\": \"\"\n    }\n}\n"
	if empty.String() != want {
		t.Errorf("empty list:\n%s\nwant:\n%s", empty.String(), want)
	}
	var names bytes.Buffer
	printNames(&names, objs)
	if names.String() != "configmap/app-config\ndeployment.apps/web\n" {
		t.Errorf("-o name: %q", names.String())
	}
}

func TestDescribe(t *testing.T) {
	events := []*corev1.Event{fixtureEvents()[1].(*corev1.Event)}
	cases := []struct {
		name string
		kind *api.Kind
		obj  api.Object
		rel  related
	}{
		{"pod", api.Pod, fixturePods()[0], related{events: events}},
		{"pod-unschedulable", api.Pod, fixtureUnschedulablePod(), related{events: fixtureSchedulingEvents()}},
		{"deployment", api.Deployment, fixtureDeployment(), related{replicaSets: fixtureDeploymentReplicaSets()}},
		{"configmap", api.ConfigMap, fixtureConfigMap(), related{}},
		{"secret", api.Secret, fixtureSecret(), related{}},
		{"node", api.Node, fixtureNodes()[0], related{pods: fixtureNodePods()}},
		{"service", api.Service, fixtureServices()[1], related{}},
		{"endpoints", api.Endpoints, fixtureEndpoints()[0], related{}},
		{"replicaset", api.ReplicaSet, fixtureOthers()[api.ReplicaSet][0], related{}},
		{"daemonset", api.DaemonSet, fixtureOthers()[api.DaemonSet][0], related{}},
		{"namespace", api.Namespace, fixtureOthers()[api.Namespace][0], related{}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var b bytes.Buffer
			describeObject(&b, c.kind, c.obj, c.rel, fixedNow, time.UTC)
			out := b.String()
			golden(t, "describe-"+c.name+".txt", out)
			if !strings.Contains(out, "Events:") {
				t.Errorf("no Events section")
			}
			if strings.Contains(out, lastAppliedAnnotation) {
				t.Errorf("shows the last-applied annotation")
			}
		})
	}
	var b bytes.Buffer
	describeObject(&b, api.Secret, fixtureSecret(), related{}, fixedNow, time.UTC)
	for _, secret := range []string{"hunter2", "admin", "aHVudGVyMg"} {
		if strings.Contains(b.String(), secret) {
			t.Errorf("describe secret reveals %q:\n%s", secret, b.String())
		}
	}
	if !strings.Contains(b.String(), "password:  19 bytes") {
		t.Errorf("describe secret lacks sizes:\n%s", b.String())
	}
}
