package sched

import (
	"fmt"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"pgregory.net/rapid"

	"orch.dev/orch/sched/fit"
)

// Random clusters for the property tests: small (so that constraints
// collide often) and drawing every feature a filter checks: readiness,
// cordons, taints, labels for selectors and affinities, cpu, memory, pod
// counts, an extended resource, host ports, pod (anti-)affinity, hard
// topology spread and priorities.

const gpu corev1.ResourceName = "nvidia.com/gpu"

var (
	zones      = []string{"a", "b", "c"}
	apps       = []string{"web", "db", "cache"}
	genNS      = []string{"default", "team-a", "team-b"}
	dedicated  = corev1.Taint{Key: "dedicated", Value: "infra", Effect: corev1.TaintEffectNoSchedule}
	draining   = corev1.Taint{Key: "draining", Effect: corev1.TaintEffectNoExecute}
	spotPrefer = corev1.Taint{Key: "spot", Effect: corev1.TaintEffectPreferNoSchedule}
)

type cluster struct {
	nodes      []*corev1.Node
	namespaces []*corev1.Namespace
	bound      []*corev1.Pod
	pending    []*corev1.Pod
}

func drawCluster(t *rapid.T) cluster {
	var c cluster
	for i, ns := range genNS {
		c.namespaces = append(c.namespaces, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns,
			Labels: map[string]string{"team": fmt.Sprint(i % 2)}}})
	}
	for i := range rapid.IntRange(1, 7).Draw(t, "nodes") {
		c.nodes = append(c.nodes, drawNode(t, fmt.Sprintf("n%d", i)))
	}
	// Bound pods are placed where they fit, so the cluster starts valid.
	for i := range rapid.IntRange(0, 12).Draw(t, "bound") {
		p := drawPod(t, fmt.Sprintf("b%d", i))
		n := rapid.SampledFrom(c.nodes).Draw(t, "node")
		if len(fit.Insufficient(fit.Requests(p), fit.Allocatable(n), fit.Used(onNode(c.bound, n.Name)))) > 0 {
			continue
		}
		if _, bad := fit.PortConflict(p, onNode(c.bound, n.Name)); bad {
			continue
		}
		p.Spec.NodeName = n.Name
		p.Status.Phase = rapid.SampledFrom([]corev1.PodPhase{corev1.PodRunning, corev1.PodRunning, corev1.PodSucceeded}).Draw(t, "phase")
		c.bound = append(c.bound, p)
	}
	for i := range rapid.IntRange(1, 25).Draw(t, "pending") {
		c.pending = append(c.pending, drawPod(t, fmt.Sprintf("p%d", i)))
	}
	return c
}

func onNode(pods []*corev1.Pod, node string) []*corev1.Pod {
	var out []*corev1.Pod
	for _, p := range pods {
		if p.Spec.NodeName == node {
			out = append(out, p)
		}
	}
	return out
}

func drawNode(t *rapid.T, name string) *corev1.Node {
	labels := map[string]string{}
	if rapid.IntRange(0, 5).Draw(t, "zoned") > 0 {
		labels[corev1.LabelTopologyZone] = rapid.SampledFrom(zones).Draw(t, "zone")
	}
	if rapid.Bool().Draw(t, "ssd") {
		labels["disk"] = "ssd"
	}
	n := node(name, rapid.SampledFrom([]string{"1", "2", "4"}).Draw(t, "cpu"), rapid.SampledFrom([]string{"1Gi", "2Gi", "4Gi"}).Draw(t, "memory"),
		int64(rapid.IntRange(1, 6).Draw(t, "maxPods")), labels)
	if g := rapid.IntRange(-2, 2).Draw(t, "gpus"); g > 0 {
		n.Status.Allocatable[gpu] = *resource.NewQuantity(int64(g), resource.DecimalSI)
	}
	if rapid.IntRange(0, 9).Draw(t, "notReady") == 0 {
		n.Status.Conditions[0].Status = corev1.ConditionFalse
	}
	n.Spec.Unschedulable = rapid.IntRange(0, 9).Draw(t, "cordoned") == 0
	for _, taint := range []corev1.Taint{dedicated, draining, spotPrefer} {
		if rapid.IntRange(0, 5).Draw(t, "tainted") == 0 {
			n.Spec.Taints = append(n.Spec.Taints, taint)
		}
	}
	return n
}

func drawPod(t *rapid.T, name string) *corev1.Pod {
	ns := rapid.SampledFrom(genNS).Draw(t, "namespace")
	p := pod(ns, name, rapid.SampledFrom([]string{"", "100m", "500m", "1"}).Draw(t, "cpu"),
		rapid.SampledFrom([]string{"", "256Mi", "1Gi"}).Draw(t, "memory"), rapid.SampledFrom([]int32{0, 10, 100}).Draw(t, "priority"))
	app := rapid.SampledFrom(apps).Draw(t, "app")
	p.Labels = map[string]string{"app": app}
	c := &p.Spec.Containers[0]
	if rapid.IntRange(0, 4).Draw(t, "wantsGPU") == 0 {
		c.Resources.Requests[gpu] = resource.MustParse("1")
	}
	if rapid.IntRange(0, 4).Draw(t, "hostPort") == 0 {
		c.Ports = []corev1.ContainerPort{{ContainerPort: 80, HostPort: rapid.SampledFrom([]int32{80, 443}).Draw(t, "port"),
			Protocol: rapid.SampledFrom([]corev1.Protocol{corev1.ProtocolTCP, corev1.ProtocolUDP}).Draw(t, "protocol")}}
	}
	if rapid.IntRange(0, 4).Draw(t, "tolerates") == 0 {
		p.Spec.Tolerations = append(p.Spec.Tolerations, corev1.Toleration{Key: "dedicated", Operator: corev1.TolerationOpExists})
	}
	if rapid.IntRange(0, 9).Draw(t, "daemon") == 0 {
		p.Spec.Tolerations = append(p.Spec.Tolerations, corev1.Toleration{Key: corev1.TaintNodeUnschedulable, Operator: corev1.TolerationOpExists})
	}
	if rapid.IntRange(0, 4).Draw(t, "nodeSelector") == 0 {
		p.Spec.NodeSelector = map[string]string{"disk": "ssd"}
	}
	aff := &corev1.Affinity{}
	if rapid.IntRange(0, 5).Draw(t, "nodeAffinity") == 0 {
		aff.NodeAffinity = &corev1.NodeAffinity{RequiredDuringSchedulingIgnoredDuringExecution: &corev1.NodeSelector{
			NodeSelectorTerms: []corev1.NodeSelectorTerm{{MatchExpressions: []corev1.NodeSelectorRequirement{{
				Key: corev1.LabelTopologyZone, Operator: corev1.NodeSelectorOpIn, Values: []string{"a", "b"}}}}}}}
	}
	term := func(label string) corev1.PodAffinityTerm {
		t2 := corev1.PodAffinityTerm{
			LabelSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": rapid.SampledFrom(apps).Draw(t, label+"App")}},
			TopologyKey:   rapid.SampledFrom([]string{corev1.LabelHostname, corev1.LabelTopologyZone}).Draw(t, label+"Key")}
		if rapid.IntRange(0, 3).Draw(t, label+"AllNamespaces") == 0 {
			t2.NamespaceSelector = &metav1.LabelSelector{}
		}
		return t2
	}
	if rapid.IntRange(0, 3).Draw(t, "antiAffinity") == 0 {
		aff.PodAntiAffinity = &corev1.PodAntiAffinity{RequiredDuringSchedulingIgnoredDuringExecution: []corev1.PodAffinityTerm{term("anti")}}
	}
	if rapid.IntRange(0, 6).Draw(t, "affinity") == 0 {
		aff.PodAffinity = &corev1.PodAffinity{RequiredDuringSchedulingIgnoredDuringExecution: []corev1.PodAffinityTerm{term("affinity")}}
	}
	if *aff != (corev1.Affinity{}) {
		p.Spec.Affinity = aff
	}
	if rapid.IntRange(0, 6).Draw(t, "spread") == 0 {
		p.Spec.TopologySpreadConstraints = []corev1.TopologySpreadConstraint{{MaxSkew: int32(rapid.IntRange(1, 2).Draw(t, "maxSkew")),
			TopologyKey: corev1.LabelTopologyZone, WhenUnsatisfiable: corev1.DoNotSchedule,
			LabelSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": app}}}}
	}
	if rapid.IntRange(0, 2).Draw(t, "owned") == 0 {
		p.OwnerReferences = []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: app,
			UID: types.UID("rs-" + ns + "-" + app), Controller: new(true)}}
	}
	return p
}
