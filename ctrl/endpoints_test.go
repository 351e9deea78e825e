package ctrl

import (
	"context"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"

	"orch.dev/orch/agent"
	"orch.dev/orch/api"
	"orch.dev/orch/api/client"
	"orch.dev/orch/internal/inproc"
)

func endpointsPod(name, ip string, ready bool, labels map[string]string) *corev1.Pod {
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name, Labels: labels, UID: types.UID("uid-" + name)},
		Spec: corev1.PodSpec{NodeName: "n1", Containers: []corev1.Container{{Name: "c", Image: "img",
			Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 8080, Protocol: corev1.ProtocolTCP}}}}},
		Status: corev1.PodStatus{Phase: corev1.PodRunning, PodIP: ip}}
	st := corev1.ConditionFalse
	if ready {
		st = corev1.ConditionTrue
	}
	p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: st}}
	api.Pod.SetTypeMeta(p)
	return p
}

func endpointsService(name string, targetPort intstr.IntOrString) *corev1.Service {
	s := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name},
		Spec: corev1.ServiceSpec{Selector: map[string]string{"app": name},
			Ports: []corev1.ServicePort{{Name: "web", Port: 80, Protocol: corev1.ProtocolTCP, TargetPort: targetPort}}}}
	api.Service.SetTypeMeta(s)
	return s
}

// Ready pods go under addresses and the others under notReadyAddresses,
// sorted by IP; a named target port resolves to the pod's container port,
// and a pod that does not declare it is left out.
func TestEndpointSubsets(t *testing.T) {
	lbl := map[string]string{"app": "web"}
	pods := []*corev1.Pod{
		endpointsPod("b", "10.244.0.3", true, lbl),
		endpointsPod("a", "10.244.0.2", true, lbl),
		endpointsPod("c", "10.244.0.4", false, lbl),
	}
	pods[1].Spec.Hostname, pods[1].Spec.Subdomain = "alpha", "web"
	pods[0].Spec.Hostname, pods[0].Spec.Subdomain = "beta", "other"
	noPort := endpointsPod("d", "10.244.0.5", true, lbl)
	noPort.Spec.Containers[0].Ports = nil
	pods = append(pods, noPort)

	got := endpointSubsets(endpointsService("web", intstr.FromString("http")), pods)
	if len(got) != 1 {
		t.Fatalf("%d subsets, want 1: %+v", len(got), got)
	}
	s := got[0]
	if len(s.Addresses) != 2 || s.Addresses[0].IP != "10.244.0.2" || s.Addresses[1].IP != "10.244.0.3" {
		t.Fatalf("ready addresses %+v", s.Addresses)
	}
	if s.Addresses[0].Hostname != "alpha" || s.Addresses[1].Hostname != "" {
		t.Fatalf("hostnames %q %q, want alpha (subdomain web) and none (subdomain other)", s.Addresses[0].Hostname, s.Addresses[1].Hostname)
	}
	if len(s.NotReadyAddresses) != 1 || s.NotReadyAddresses[0].IP != "10.244.0.4" {
		t.Fatalf("not-ready addresses %+v", s.NotReadyAddresses)
	}
	if len(s.Ports) != 1 || s.Ports[0].Port != 8080 || s.Ports[0].Name != "web" {
		t.Fatalf("ports %+v, want web -> 8080", s.Ports)
	}
	if ref := s.Addresses[0].TargetRef; ref == nil || ref.Name != "a" || s.Addresses[0].NodeName == nil || *s.Addresses[0].NodeName != "n1" {
		t.Fatalf("address lacks its pod or node: %+v", s.Addresses[0])
	}

	numeric := endpointSubsets(endpointsService("web", intstr.FromInt32(9090)), pods)
	if n := len(numeric[0].Addresses) + len(numeric[0].NotReadyAddresses); n != 4 || numeric[0].Ports[0].Port != 9090 {
		t.Fatalf("numeric target port: %+v", numeric)
	}
}

// On a live in-process cluster: Endpoints follow the pods' readiness and
// IPs, and go away with their Service.
func TestEndpointsFollowPods(t *testing.T) {
	c := inproc.Start(t, inproc.Options{Servers: 1, Setup: func(a *agent.Agent) {
		// No heartbeats here: a minute's grace keeps the node Ready.
		a.OnLeader(func(ctx context.Context, a *agent.Agent) { Run(ctx, a, Options{NodeMonitorGracePeriod: time.Minute}) })
	}})
	cl := c.Client()
	ctx := context.Background()
	n1 := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1"}}
	api.Node.SetTypeMeta(n1)
	if _, err := cl.Create(ctx, n1); err != nil { // pods of unknown nodes are deleted
		t.Fatal(err)
	}
	if _, err := cl.Create(ctx, endpointsService("web", intstr.FromString("http"))); err != nil {
		t.Fatal(err)
	}
	lbl := map[string]string{"app": "web"}
	for _, p := range []*corev1.Pod{endpointsPod("a", "10.244.0.2", true, lbl), endpointsPod("b", "10.244.0.3", false, lbl)} {
		status := p.Status
		p.UID, p.Status = "", corev1.PodStatus{}
		created, err := cl.Create(ctx, p)
		if err != nil {
			t.Fatal(err)
		}
		cp := created.(*corev1.Pod)
		cp.Status = status
		if _, err := cl.UpdateStatus(ctx, cp); err != nil {
			t.Fatal(err)
		}
	}
	addresses := func() (ready, notReady []string) {
		obj, err := cl.Get(ctx, api.Endpoints, "default", "web", false)
		if err != nil {
			return nil, nil
		}
		for _, s := range obj.(*corev1.Endpoints).Subsets {
			for _, a := range s.Addresses {
				ready = append(ready, a.IP)
			}
			for _, a := range s.NotReadyAddresses {
				notReady = append(notReady, a.IP)
			}
		}
		return ready, notReady
	}
	c.WaitFor(10*time.Second, "endpoints with a ready and a not-ready address", func() bool {
		r, n := addresses()
		return len(r) == 1 && r[0] == "10.244.0.2" && len(n) == 1 && n[0] == "10.244.0.3"
	})

	obj, err := cl.Get(ctx, api.Pod, "default", "b", false)
	if err != nil {
		t.Fatal(err)
	}
	b := obj.(*corev1.Pod)
	b.Status.Conditions[0].Status = corev1.ConditionTrue
	if _, err := cl.UpdateStatus(ctx, b); err != nil {
		t.Fatal(err)
	}
	c.WaitFor(10*time.Second, "both addresses ready", func() bool {
		r, n := addresses()
		return len(r) == 2 && len(n) == 0
	})
	if err := cl.Delete(ctx, api.Pod, "default", "a", client.DeleteOptions{Grace: new(int64)}); err != nil {
		t.Fatal(err)
	}
	c.WaitFor(10*time.Second, "the deleted pod's address gone", func() bool {
		r, _ := addresses()
		return len(r) == 1 && r[0] == "10.244.0.3"
	})
	if err := cl.Delete(ctx, api.Service, "default", "web", client.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	c.WaitFor(10*time.Second, "the endpoints deleted with their service", func() bool {
		_, err := cl.Get(ctx, api.Endpoints, "default", "web", false)
		return apierrors.IsNotFound(err)
	})
}
