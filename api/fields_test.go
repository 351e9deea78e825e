package api

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestParseFieldSelector(t *testing.T) {
	bound := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "prod"},
		Spec: corev1.PodSpec{NodeName: "n1"}, Status: corev1.PodStatus{Phase: corev1.PodRunning}}
	tests := []struct {
		kind    *Kind
		sel     string
		matches bool   // against bound (for Pod selectors)
		err     string // substring of the expected error, "" for none
	}{
		{Pod, "", true, ""},
		{Pod, "spec.nodeName=n1", true, ""},
		{Pod, "spec.nodeName=n2", false, ""},
		{Pod, "spec.nodeName!=n2,status.phase=Running", true, ""},
		{Pod, "spec.nodeName==n1", true, ""},
		{Pod, "spec.nodeName=", false, ""},
		{Pod, "metadata.namespace=prod", true, ""},
		{Pod, "metadata.name=p,metadata.namespace!=prod", false, ""},
		{Pod, "spec.nodeNme=n1", false, "field label not supported: spec.nodeNme"},
		{Pod, "spec.hostNetwork=true", false, "field label not supported: spec.hostNetwork"},
		{Pod, "metadata.labels=x", false, "not supported"},
		{Pod, "spec.nodeName", false, "invalid selector"},
		{Node, "spec.unschedulable=true", false, ""},
		{Node, "spec.nodeName=n1", false, "not supported"},
		{Secret, "type=Opaque", false, ""},
		{Event, "involvedObject.name=p,reason=Started,source=kubelet", false, ""},
		{Namespace, "status.phase=Active", false, ""},
		{Deployment, "status.phase=Running", false, "not supported"},
	}
	for _, tt := range tests {
		s, err := ParseFieldSelector(tt.kind, tt.sel)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("%s %q: error %v, want %q", tt.kind.Kind, tt.sel, err, tt.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s %q: %v", tt.kind.Kind, tt.sel, err)
			continue
		}
		if tt.kind == Pod && s.Matches(FieldSet(bound)) != tt.matches {
			t.Errorf("%q matches %v, want %v", tt.sel, !tt.matches, tt.matches)
		}
	}
	// metadata.name everywhere, metadata.namespace on every namespaced kind.
	for _, k := range Kinds {
		if _, err := ParseFieldSelector(k, "metadata.name=x"); err != nil {
			t.Errorf("%s: metadata.name: %v", k.Kind, err)
		}
		if _, err := ParseFieldSelector(k, "metadata.namespace=x"); k.Namespaced && err != nil {
			t.Errorf("%s: metadata.namespace: %v", k.Kind, err)
		}
	}
}

func TestFieldSet(t *testing.T) {
	ev := &corev1.Event{ObjectMeta: metav1.ObjectMeta{Name: "e", Namespace: "prod"}, Reason: "Pulled", Type: "Normal",
		Source:         corev1.EventSource{Component: "orch-node"},
		InvolvedObject: corev1.ObjectReference{Kind: "Pod", Name: "p", Namespace: "prod", UID: "u1"}}
	set := FieldSet(ev)
	for k, want := range map[string]string{"metadata.name": "e", "metadata.namespace": "prod", "reason": "Pulled", "type": "Normal",
		"source": "orch-node", "involvedObject.kind": "Pod", "involvedObject.uid": "u1"} {
		if set[k] != want {
			t.Errorf("FieldSet(event)[%s] = %q, want %q", k, set[k], want)
		}
	}
	node := FieldSet(&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n"}, Spec: corev1.NodeSpec{Unschedulable: true}})
	if node["spec.unschedulable"] != "true" || node["metadata.name"] != "n" {
		t.Errorf("FieldSet(node) = %v", node)
	}
	if _, ok := node["metadata.namespace"]; ok {
		t.Error("a cluster-scoped object has a metadata.namespace field")
	}
}

func TestKindLookup(t *testing.T) {
	for name, want := range map[string]*Kind{"deployments": Deployment, "deploy": Deployment, "Deployment": Deployment,
		"deployments.apps": Deployment, "po": Pod, "pods.core": Pod, "PODS": Pod, "endpoints": Endpoints, "ns": Namespace, "cm": ConfigMap} {
		if k, err := KindForResource(name); err != nil || k != want {
			t.Errorf("KindForResource(%q) = %v, %v; want %s", name, k, err, want.Kind)
		}
	}
	for _, name := range []string{"deployments.core", "pods.apps", "cronjobs", ""} {
		if k, err := KindForResource(name); err == nil {
			t.Errorf("KindForResource(%q) = %s", name, k.Kind)
		}
	}
	if k, err := KindFor("apps/v1", "ReplicaSet"); err != nil || k != ReplicaSet {
		t.Errorf("KindFor(apps/v1, ReplicaSet) = %v, %v", k, err)
	}
	if _, err := KindFor("extensions/v1beta1", "ReplicaSet"); err == nil {
		t.Error("KindFor accepted an old apiVersion")
	}
	if k, ok := KindForPath("apps", "v1", "daemonsets"); !ok || k != DaemonSet {
		t.Errorf("KindForPath(apps, v1, daemonsets) = %v", k)
	}
	paths := map[string]string{
		Pod.ObjectPath("prod", "p"):   "/api/v1/namespaces/prod/pods/p",
		Deployment.Path("prod"):       "/apis/apps/v1/namespaces/prod/deployments",
		Deployment.Path(""):           "/apis/apps/v1/deployments",
		Node.ObjectPath("prod", "n1"): "/api/v1/nodes/n1",
	}
	for got, want := range paths {
		if got != want {
			t.Errorf("path %q, want %q", got, want)
		}
	}
	if len(Kinds) != 12 || len(KindNames()) != 12 || KindNames()[0] != "ConfigMap" {
		t.Errorf("kinds: %v", KindNames())
	}
	for _, k := range Kinds {
		obj := k.New()
		if obj.GetObjectKind().GroupVersionKind().Kind != k.Kind {
			t.Errorf("%s.New() has no TypeMeta", k.Kind)
		}
		b, err := obj.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := k.Decode(b); err != nil {
			t.Errorf("%s: %v", k.Kind, err)
		}
	}
}
