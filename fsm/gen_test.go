package fsm

import (
	"fmt"
	"math/rand/v2"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"

	"orch.dev/orch/api"
)

// cmdGen produces a seeded, reproducible stream of commands over several
// kinds. Names come from small pools so that creates collide, updates and
// deletes find their targets and namespaces get deleted with contents.
// Objects carry maps with many keys: a map-order dependence anywhere
// between proposer and snapshot shows up as differing bytes.
type cmdGen struct {
	t      testing.TB
	r      *rand.Rand
	serial int
}

func newCmdGen(t testing.TB, seed uint64) *cmdGen {
	return &cmdGen{t: t, r: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))}
}

var (
	genNamespaces = []string{"default", "ns1", "ns2", "ns3"}
	genNames      = []string{"a", "b", "c", "d", "e"}
	genNodes      = []string{"node-1", "node-2", "node-3"}
	genKinds      = []*api.Kind{api.ConfigMap, api.Secret, api.Pod, api.Deployment, api.ReplicaSet, api.Service, api.Endpoints, api.Event, api.Node}
)

func (g *cmdGen) pick(xs []string) string { return xs[g.r.IntN(len(xs))] }

func (g *cmdGen) strMap(max int) map[string]string {
	n := g.r.IntN(max + 1)
	if n == 0 {
		return nil
	}
	m := make(map[string]string, n)
	for i := 0; i < n; i++ {
		m[fmt.Sprintf("key-%03d", g.r.IntN(1000))] = fmt.Sprintf("value-%d", g.r.Uint32())
	}
	return m
}

func (g *cmdGen) resources() corev1.ResourceList {
	return corev1.ResourceList{
		corev1.ResourceCPU:              *resource.NewMilliQuantity(int64(g.r.IntN(4000)), resource.DecimalSI),
		corev1.ResourceMemory:           *resource.NewQuantity(int64(g.r.IntN(1<<34)), resource.BinarySI),
		corev1.ResourcePods:             *resource.NewQuantity(110, resource.DecimalSI),
		corev1.ResourceEphemeralStorage: *resource.NewQuantity(int64(g.r.IntN(1<<36)), resource.BinarySI),
	}
}

func (g *cmdGen) meta(k *api.Kind) metav1.ObjectMeta {
	g.serial++
	m := metav1.ObjectMeta{
		Name:              g.pick(genNames),
		UID:               types.UID(fmt.Sprintf("uid-%d", g.serial)),
		CreationTimestamp: metav1.Unix(1714564800+int64(g.serial), 0),
		Labels:            g.strMap(20),
		Annotations:       g.strMap(20),
	}
	if k.Namespaced {
		m.Namespace = g.pick(genNamespaces)
	}
	if k == api.Node {
		m.Name = g.pick(genNodes)
	}
	if g.r.IntN(8) == 0 {
		m.Finalizers = []string{"orch.dev/test"}
	}
	if g.r.IntN(4) == 0 {
		// Owned by one of the possible deployments of the namespace.
		m.OwnerReferences = []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "Deployment",
			Name: g.pick(genNames), UID: types.UID(fmt.Sprintf("uid-%d", g.r.IntN(g.serial)+1))}}
	}
	return m
}

func (g *cmdGen) object(k *api.Kind) api.Object {
	m := g.meta(k)
	switch k {
	case api.ConfigMap:
		return &corev1.ConfigMap{ObjectMeta: m, Data: g.strMap(60)}
	case api.Secret:
		data := map[string][]byte{}
		for key, v := range g.strMap(30) {
			data[key] = []byte(v)
		}
		return &corev1.Secret{ObjectMeta: m, Type: corev1.SecretTypeOpaque, Data: data}
	case api.Pod:
		p := &corev1.Pod{ObjectMeta: m, Spec: corev1.PodSpec{
			NodeSelector: g.strMap(10),
			Containers: []corev1.Container{{Name: "app", Image: fmt.Sprintf("busybox:%d", g.r.IntN(3)),
				Resources: corev1.ResourceRequirements{Requests: g.resources(), Limits: g.resources()}}},
		}}
		if g.r.IntN(2) == 0 {
			p.Spec.NodeName = g.pick(genNodes)
		}
		p.Status.Phase = corev1.PodPhase(g.pick([]string{"Pending", "Running", "Succeeded"}))
		return p
	case api.Deployment:
		replicas := int32(g.r.IntN(5))
		labels := g.strMap(8)
		return &appsv1.Deployment{ObjectMeta: m, Spec: appsv1.DeploymentSpec{
			Replicas: &replicas,
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "nginx"}}}},
		}, Status: appsv1.DeploymentStatus{Replicas: replicas, ReadyReplicas: int32(g.r.IntN(5))}}
	case api.ReplicaSet:
		return &appsv1.ReplicaSet{ObjectMeta: m, Spec: appsv1.ReplicaSetSpec{Selector: &metav1.LabelSelector{MatchLabels: g.strMap(5)}}}
	case api.Service:
		return &corev1.Service{ObjectMeta: m, Spec: corev1.ServiceSpec{Selector: g.strMap(10), Ports: []corev1.ServicePort{
			{Name: "http", Port: int32(80 + g.r.IntN(10)), TargetPort: intstr.FromString("http")}}}}
	case api.Endpoints:
		return &corev1.Endpoints{ObjectMeta: m, Subsets: []corev1.EndpointSubset{{
			Addresses: []corev1.EndpointAddress{{IP: fmt.Sprintf("10.244.0.%d", g.r.IntN(250))}},
			Ports:     []corev1.EndpointPort{{Port: 8080}}}}}
	case api.Event:
		return &corev1.Event{ObjectMeta: m, Reason: "Test", Message: fmt.Sprint(g.r.Uint64()),
			InvolvedObject: corev1.ObjectReference{Kind: "Pod", Namespace: m.Namespace, Name: g.pick(genNames)}}
	case api.Node:
		return &corev1.Node{ObjectMeta: m, Status: corev1.NodeStatus{Capacity: g.resources(), Allocatable: g.resources(),
			Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue}}}}
	}
	g.t.Fatalf("no generator for %s", k.Kind)
	return nil
}

// command returns a random command; a quarter carry a request ID from a
// small pool, so that some are retries of earlier ones.
func (g *cmdGen) command(batchOK bool) Command {
	cmd := g.bareCommand(batchOK)
	if g.r.IntN(4) == 0 {
		id := fmt.Sprintf("req-%d", g.r.IntN(40))
		switch c := cmd.(type) {
		case *Create:
			c.RequestID = id
		case *Update:
			c.RequestID = id
		case *Delete:
			c.RequestID = id
		case *Batch:
			c.RequestID = id
		}
	}
	return cmd
}

func (g *cmdGen) bareCommand(batchOK bool) Command {
	k := genKinds[g.r.IntN(len(genKinds))]
	switch n := g.r.IntN(20); {
	case n < 8:
		return createCmd(g.t, g.object(k))
	case n < 12:
		return updateCmd(g.t, g.object(k))
	case n < 14:
		if !k.HasStatus {
			k = api.Pod
		}
		return statusCmd(g.t, g.object(k))
	case n < 17:
		o := g.object(k)
		return &Delete{Kind: k.Kind, Namespace: o.GetNamespace(), Name: o.GetName(),
			DeletionTime: 1714564800e9 + int64(g.r.IntN(1e9)), Orphan: g.r.IntN(2) == 0}
	case n < 18:
		// Namespaces come and go, with their contents.
		ns := genNamespaces[1+g.r.IntN(len(genNamespaces)-1)]
		if g.r.IntN(2) == 0 {
			return &Delete{Kind: "Namespace", Name: ns}
		}
		return createCmd(g.t, namespace(ns))
	case batchOK:
		b := &Batch{}
		for i := g.r.IntN(6); i >= 0; i-- {
			b.Commands = append(b.Commands, g.command(false))
		}
		return b
	default:
		return createCmd(g.t, g.object(k))
	}
}

// commandLog returns n encoded log entries: first every namespace, then
// random commands.
func commandLog(t testing.TB, seed uint64, n int) [][]byte {
	g := newCmdGen(t, seed)
	var out [][]byte
	for _, ns := range genNamespaces {
		out = append(out, Encode(createCmd(t, namespace(ns))))
	}
	for len(out) < n {
		out = append(out, Encode(g.command(true)))
	}
	return out
}
