package suite

import (
	"encoding/json"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// podEventFields finds the right fields in what the server sends: a pod
// encoded by encoding/json, with every other "name" the encoding holds
// (owner, container, volume, condition messages that quote keys).
func TestPodEventFields(t *testing.T) {
	ctrl := true
	p := &corev1.Pod{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{Name: "bench-x1", Namespace: SchedNamespace, ResourceVersion: "42", Labels: map[string]string{"name": "label"},
			Annotations:     map[string]string{"note": `"nodeName":"elsewhere" "phase":"Failed"`},
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: "bench", UID: "u", Controller: &ctrl}}},
		Spec: benchPodSpec()}
	p.Spec.NodeName = "sim-7"
	p.Spec.Volumes = []corev1.Volume{{Name: "data"}}
	p.Status.Phase = corev1.PodRunning
	p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue, Message: `"name":"wrong"`}}
	p.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: "app", Ready: true}}
	obj, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	line := append(append([]byte(`{"type":"MODIFIED","object":`), obj...), '}') // as agent/watch.go writes it
	want := podEvent{Type: "MODIFIED", Name: "bench-x1", ResourceVersion: "42", NodeName: "sim-7", Phase: "Running"}
	if got := podEventFields(line); got != want {
		t.Fatalf("podEventFields(%s)\n= %+v\nwant %+v", line, got, want)
	}
	p.Spec.NodeName, p.Status.Phase = "", corev1.PodPending
	obj, _ = json.Marshal(p)
	line = append(append([]byte(`{"type":"ADDED","object":`), obj...), '}')
	want = podEvent{Type: "ADDED", Name: "bench-x1", ResourceVersion: "42", Phase: "Pending"}
	if got := podEventFields(line); got != want {
		t.Fatalf("unbound pod: %+v, want %+v", got, want)
	}
}
