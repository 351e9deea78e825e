package cli

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"orch.dev/orch/api"
	"orch.dev/orch/api/client"
	"orch.dev/orch/internal/inproc"
)

// Helpers for the tests of rollout, set image, cordon and drain against an
// in-process server without controllers or scheduler: the tests create
// ReplicaSets, bind pods and report their status themselves.

// opsServer starts a one-server cluster and returns its URL and a client.
func opsServer(t *testing.T) (string, *client.Client) {
	t.Helper()
	c := inproc.Start(t, inproc.Options{})
	return registerCA(t, c.Agents[0]), c.Client()
}

// background runs orchctl until it exits or the test ends.
type background struct {
	out, err syncBuffer
	done     chan int
}

func startCLI(t *testing.T, srv string, args ...string) *background {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	b := &background{done: make(chan int, 1)}
	go func() {
		b.done <- Run(ctx, append(append([]string{"orchctl", "--server", srv}, caArgs(srv)...), args...), strings.NewReader(""), &b.out, &b.err)
	}()
	t.Cleanup(func() {
		cancel()
		<-b.done
	})
	return b
}

// wait returns the exit code once orchctl has ended.
func (b *background) wait(t *testing.T, limit time.Duration) int {
	t.Helper()
	select {
	case code := <-b.done:
		b.done <- code // for the cleanup
		return code
	case <-time.After(limit):
		t.Fatalf("orchctl still running after %s\nstdout:\n%s\nstderr:\n%s", limit, b.out.String(), b.err.String())
		return -1
	}
}

// waitOutput waits until stdout (or stderr) contains want.
func (b *background) waitOutput(t *testing.T, want string) {
	t.Helper()
	waitFor(t, 20*time.Second, func() bool { return strings.Contains(b.out.String()+b.err.String(), want) },
		func() string {
			return "waiting for " + want + "\nstdout:\n" + b.out.String() + "stderr:\n" + b.err.String()
		})
}

func mustCreate[T api.Object](t *testing.T, cl *client.Client, k *api.Kind, obj T) T {
	t.Helper()
	k.SetTypeMeta(obj)
	out, err := cl.Create(context.Background(), obj)
	if err != nil {
		t.Fatalf("creating %s %s: %v", k.Kind, obj.GetName(), err)
	}
	return out.(T)
}

func mustGet[T api.Object](t *testing.T, cl *client.Client, k *api.Kind, ns, name string) T {
	t.Helper()
	obj, err := cl.Get(context.Background(), k, ns, name, false)
	if err != nil {
		t.Fatalf("reading %s %s: %v", k.Kind, name, err)
	}
	return obj.(T)
}

func controllerRef(kind string, obj metav1.Object) metav1.OwnerReference {
	return metav1.OwnerReference{APIVersion: "apps/v1", Kind: kind, Name: obj.GetName(), UID: obj.GetUID(), Controller: ptrBool(true)}
}

func opsTemplate(app, image string) corev1.PodTemplateSpec {
	return corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": app}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: app, Image: image}}}}
}

// opsDeployment is a rolling-update Deployment of replicas pods that may
// lose maxUnavailable of them.
func opsDeployment(ns, name, image string, replicas int32, maxUnavailable int) *appsv1.Deployment {
	mu, ms := intstr.FromInt(maxUnavailable), intstr.FromInt(1)
	return &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: appsv1.DeploymentSpec{Replicas: &replicas, Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": name}},
			Template: opsTemplate(name, image),
			Strategy: appsv1.DeploymentStrategy{Type: appsv1.RollingUpdateDeploymentStrategyType,
				RollingUpdate: &appsv1.RollingUpdateDeployment{MaxUnavailable: &mu, MaxSurge: &ms}}}}
}

// opsReplicaSet is a ReplicaSet of dep at a revision, as the deployment
// controller would have made it for template.
func opsReplicaSet(dep *appsv1.Deployment, hash, revision string, template corev1.PodTemplateSpec, replicas int32) *appsv1.ReplicaSet {
	template = *template.DeepCopy()
	template.Labels[podTemplateHashLabel] = hash
	return &appsv1.ReplicaSet{
		ObjectMeta: metav1.ObjectMeta{Name: dep.Name + "-" + hash, Namespace: dep.Namespace, Labels: template.Labels,
			Annotations: map[string]string{revisionAnnotation: revision}, OwnerReferences: []metav1.OwnerReference{controllerRef("Deployment", dep)}},
		Spec: appsv1.ReplicaSetSpec{Replicas: &replicas, Selector: &metav1.LabelSelector{MatchLabels: template.Labels}, Template: template},
	}
}

// readyNode creates a Ready node with room for many pods.
func readyNode(t *testing.T, cl *client.Client, name string) *corev1.Node {
	t.Helper()
	room := corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("8"), corev1.ResourceMemory: resource.MustParse("16Gi"), corev1.ResourcePods: resource.MustParse("110")}
	return mustCreate(t, cl, api.Node, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name},
		Status: corev1.NodeStatus{Capacity: room, Allocatable: room,
			Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: "KubeletReady"}}}})
}

// runningPod creates a pod owned by owner (none if nil), binds it to node
// through the Binding API and reports it Running and Ready, as a scheduler
// and a node agent would.
func runningPod(t testing.TB, cl *client.Client, ns, name, node string, owner *metav1.OwnerReference) error {
	ctx := context.Background()
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: map[string]string{"app": strings.Split(name, "-")[0]}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "busybox"}}}}
	if owner != nil {
		pod.OwnerReferences = []metav1.OwnerReference{*owner}
	}
	api.Pod.SetTypeMeta(pod)
	if _, err := cl.Create(ctx, pod); err != nil {
		return err
	}
	body, _ := json.Marshal(corev1.Binding{ObjectMeta: metav1.ObjectMeta{Name: name},
		Target: corev1.ObjectReference{Kind: "Node", Name: node}})
	if _, err := cl.Do(ctx, client.Request{Method: http.MethodPost, Path: api.Pod.ObjectPath(ns, name) + "/binding", Body: body}); err != nil {
		return err
	}
	obj, err := cl.Get(ctx, api.Pod, ns, name, false)
	if err != nil {
		return err
	}
	p := obj.(*corev1.Pod)
	p.Status.Phase = corev1.PodRunning
	p.Status.Conditions = append(p.Status.Conditions, corev1.PodCondition{Type: corev1.PodReady, Status: corev1.ConditionTrue})
	_, err = cl.UpdateStatus(ctx, p)
	return err
}

func mustRunningPod(t *testing.T, cl *client.Client, ns, name, node string, owner *metav1.OwnerReference) {
	t.Helper()
	if err := runningPod(t, cl, ns, name, node, owner); err != nil {
		t.Fatalf("pod %s/%s: %v", ns, name, err)
	}
}

func mustNamespace(t *testing.T, cl *client.Client, name string) {
	t.Helper()
	mustCreate(t, cl, api.Namespace, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}})
}
