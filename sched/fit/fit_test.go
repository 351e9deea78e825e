package fit

import (
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func list(kv ...string) corev1.ResourceList {
	l := corev1.ResourceList{}
	for i := 0; i < len(kv); i += 2 {
		l[corev1.ResourceName(kv[i])] = resource.MustParse(kv[i+1])
	}
	return l
}

func container(req corev1.ResourceList, ports ...corev1.ContainerPort) corev1.Container {
	return corev1.Container{Name: "c", Image: "i", Resources: corev1.ResourceRequirements{Requests: req}, Ports: ports}
}

func podWith(containers ...corev1.Container) *corev1.Pod {
	return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "p"}, Spec: corev1.PodSpec{Containers: containers}}
}

func nodeWith(labels map[string]string, taints ...corev1.Taint) *corev1.Node {
	return &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n", Labels: labels}, Spec: corev1.NodeSpec{Taints: taints}}
}

func TestRequests(t *testing.T) {
	restartAlways := corev1.ContainerRestartPolicyAlways
	tests := []struct {
		name string
		pod  *corev1.Pod
		want Resources
	}{
		{"nothing requested still takes a pod slot", podWith(container(nil)),
			Resources{corev1.ResourcePods: 1000}},
		{"containers add up", podWith(container(list("cpu", "100m", "memory", "1Ki")), container(list("cpu", "250m", "nvidia.com/gpu", "1"))),
			Resources{corev1.ResourceCPU: 350, corev1.ResourceMemory: 1024 * 1000, "nvidia.com/gpu": 1000, corev1.ResourcePods: 1000}},
		{"the largest init container wins per resource", func() *corev1.Pod {
			p := podWith(container(list("cpu", "100m", "memory", "10Mi")))
			p.Spec.InitContainers = []corev1.Container{container(list("cpu", "2")), container(list("memory", "1Mi"))}
			return p
		}(), Resources{corev1.ResourceCPU: 2000, corev1.ResourceMemory: 10 * 1024 * 1024 * 1000, corev1.ResourcePods: 1000}},
		{"sidecars add to the containers", func() *corev1.Pod {
			p := podWith(container(list("cpu", "100m")))
			sidecar := container(list("cpu", "50m"))
			sidecar.RestartPolicy = &restartAlways
			p.Spec.InitContainers = []corev1.Container{sidecar}
			return p
		}(), Resources{corev1.ResourceCPU: 150, corev1.ResourcePods: 1000}},
		{"overhead counts", func() *corev1.Pod {
			p := podWith(container(list("cpu", "100m")))
			p.Spec.Overhead = list("cpu", "10m")
			return p
		}(), Resources{corev1.ResourceCPU: 110, corev1.ResourcePods: 1000}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Requests(tt.pod)
			for k, v := range got {
				if v == 0 {
					delete(got, k)
				}
			}
			if !equal(got, tt.want) {
				t.Errorf("Requests = %v, want %v", got, tt.want)
			}
		})
	}
}

func equal(a, b Resources) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

func TestAllocatableFallsBackToCapacity(t *testing.T) {
	n := nodeWith(nil)
	n.Status.Capacity = list("cpu", "4", "pods", "10")
	if got := Allocatable(n); got[corev1.ResourceCPU] != 4000 || got[corev1.ResourcePods] != 10000 {
		t.Errorf("without allocatable: %v, want the capacity", got)
	}
	n.Status.Allocatable = list("cpu", "3")
	if got := Allocatable(n); got[corev1.ResourceCPU] != 3000 || got[corev1.ResourcePods] != 0 {
		t.Errorf("with allocatable: %v, want the allocatable only", got)
	}
}

func TestUsedCountsOnlyOccupyingPods(t *testing.T) {
	mk := func(node string, phase corev1.PodPhase) *corev1.Pod {
		p := podWith(container(list("cpu", "1")))
		p.Spec.NodeName, p.Status.Phase = node, phase
		return p
	}
	pods := []*corev1.Pod{mk("n", corev1.PodRunning), mk("n", corev1.PodPending), mk("n", corev1.PodSucceeded),
		mk("n", corev1.PodFailed), mk("", corev1.PodPending)}
	want := []bool{true, true, false, false, false}
	for i, p := range pods {
		if Occupies(p) != want[i] {
			t.Errorf("pod %d (node %q, %s): Occupies = %v", i, p.Spec.NodeName, p.Status.Phase, !want[i])
		}
	}
	if got := Used(pods); got[corev1.ResourceCPU] != 2000 || got[corev1.ResourcePods] != 2000 {
		t.Errorf("Used = %v, want 2 cpu and 2 pods", got)
	}
}

func TestInsufficient(t *testing.T) {
	alloc := Resources{corev1.ResourceCPU: 4000, corev1.ResourceMemory: 1000, corev1.ResourcePods: 3000, "nvidia.com/gpu": 2000}
	used := Resources{corev1.ResourceCPU: 3000, corev1.ResourceMemory: 0, corev1.ResourcePods: 2000, "nvidia.com/gpu": 2000}
	tests := []struct {
		name string
		req  Resources
		want []corev1.ResourceName
	}{
		{"exactly what is left fits", Resources{corev1.ResourceCPU: 1000, corev1.ResourceMemory: 1000, corev1.ResourcePods: 1000}, nil},
		{"one milli-unit more does not", Resources{corev1.ResourceCPU: 1001, corev1.ResourcePods: 1000},
			[]corev1.ResourceName{corev1.ResourceCPU}},
		{"every short resource, sorted", Resources{"nvidia.com/gpu": 1000, corev1.ResourceMemory: 1001, corev1.ResourcePods: 2000},
			[]corev1.ResourceName{corev1.ResourceMemory, "nvidia.com/gpu", corev1.ResourcePods}},
		{"a resource the node does not offer", Resources{"example.com/fpga": 1000}, []corev1.ResourceName{"example.com/fpga"}},
		{"a zero request needs nothing", Resources{"example.com/fpga": 0, "nvidia.com/gpu": 0}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Insufficient(tt.req, alloc, used); !slices.Equal(got, tt.want) {
				t.Errorf("Insufficient = %v, want %v", got, tt.want)
			}
		})
	}
	// A node that shrank below what its pods use is short of everything.
	if got := Insufficient(Resources{corev1.ResourceCPU: 1}, Resources{corev1.ResourceCPU: 1000}, Resources{corev1.ResourceCPU: 2000}); len(got) != 1 {
		t.Errorf("overcommitted node: Insufficient = %v, want cpu", got)
	}
}

func TestMatchesNodeSelector(t *testing.T) {
	node := nodeWith(map[string]string{"zone": "a", "disk": "ssd", "gen": "5"})
	req := func(terms ...corev1.NodeSelectorTerm) *corev1.Affinity {
		return &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{
			RequiredDuringSchedulingIgnoredDuringExecution: &corev1.NodeSelector{NodeSelectorTerms: terms}}}
	}
	expr := func(key string, op corev1.NodeSelectorOperator, values ...string) corev1.NodeSelectorTerm {
		return corev1.NodeSelectorTerm{MatchExpressions: []corev1.NodeSelectorRequirement{{Key: key, Operator: op, Values: values}}}
	}
	tests := []struct {
		name     string
		selector map[string]string
		affinity *corev1.Affinity
		want     bool
	}{
		{"no constraint", nil, nil, true},
		{"selector matches", map[string]string{"zone": "a", "disk": "ssd"}, nil, true},
		{"selector value differs", map[string]string{"zone": "b"}, nil, false},
		{"selector key missing", map[string]string{"gpu": "true"}, nil, false},
		{"In", nil, req(expr("zone", corev1.NodeSelectorOpIn, "a", "b")), true},
		{"NotIn", nil, req(expr("zone", corev1.NodeSelectorOpNotIn, "a")), false},
		{"Exists", nil, req(expr("disk", corev1.NodeSelectorOpExists)), true},
		{"DoesNotExist", nil, req(expr("disk", corev1.NodeSelectorOpDoesNotExist)), false},
		{"Gt", nil, req(expr("gen", corev1.NodeSelectorOpGt, "4")), true},
		{"Lt", nil, req(expr("gen", corev1.NodeSelectorOpLt, "5")), false},
		{"terms are ORed", nil, req(expr("zone", corev1.NodeSelectorOpIn, "b"), expr("disk", corev1.NodeSelectorOpIn, "ssd")), true},
		{"selector and affinity are ANDed", map[string]string{"zone": "b"}, req(expr("disk", corev1.NodeSelectorOpExists)), false},
		{"an empty term list matches nothing", nil, req(), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := podWith(container(nil))
			p.Spec.NodeSelector, p.Spec.Affinity = tt.selector, tt.affinity
			if got := MatchesNodeSelector(p, node); got != tt.want {
				t.Errorf("MatchesNodeSelector = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestUntoleratedTaint(t *testing.T) {
	gpu := corev1.Taint{Key: "gpu", Value: "true", Effect: corev1.TaintEffectNoSchedule}
	noExec := corev1.Taint{Key: "maintenance", Effect: corev1.TaintEffectNoExecute}
	prefer := corev1.Taint{Key: "spot", Effect: corev1.TaintEffectPreferNoSchedule}
	tests := []struct {
		name   string
		taints []corev1.Taint
		tols   []corev1.Toleration
		want   string // key of the untolerated taint, "" when none
		tolGPU bool   // Tolerates(pod, gpu)
	}{
		{name: "no taints"},
		{name: "PreferNoSchedule never blocks", taints: []corev1.Taint{prefer}},
		{name: "NoSchedule blocks", taints: []corev1.Taint{prefer, gpu}, want: "gpu"},
		{name: "NoExecute blocks", taints: []corev1.Taint{noExec}, want: "maintenance"},
		{name: "Equal with the value", taints: []corev1.Taint{gpu},
			tols: []corev1.Toleration{{Key: "gpu", Operator: corev1.TolerationOpEqual, Value: "true", Effect: corev1.TaintEffectNoSchedule}}, tolGPU: true},
		{name: "Equal with another value", taints: []corev1.Taint{gpu},
			tols: []corev1.Toleration{{Key: "gpu", Operator: corev1.TolerationOpEqual, Value: "false"}}, want: "gpu"},
		{name: "Exists with any effect", taints: []corev1.Taint{gpu, noExec},
			tols: []corev1.Toleration{{Key: "gpu", Operator: corev1.TolerationOpExists}}, want: "maintenance", tolGPU: true},
		{name: "a toleration of another effect", taints: []corev1.Taint{gpu},
			tols: []corev1.Toleration{{Key: "gpu", Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute}}, want: "gpu"},
		{name: "an empty key with Exists tolerates everything", taints: []corev1.Taint{gpu, noExec},
			tols: []corev1.Toleration{{Operator: corev1.TolerationOpExists}}, tolGPU: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := podWith(container(nil))
			p.Spec.Tolerations = tt.tols
			taint, found := UntoleratedTaint(p, nodeWith(nil, tt.taints...))
			switch {
			case tt.want == "" && found:
				t.Errorf("untolerated taint %v, want none", taint)
			case tt.want != "" && (!found || taint.Key != tt.want):
				t.Errorf("untolerated taint %v (found %v), want %s", taint, found, tt.want)
			}
			if got := Tolerates(p, &gpu); got != tt.tolGPU {
				t.Errorf("Tolerates(gpu) = %v, want %v", got, tt.tolGPU)
			}
		})
	}
}

func TestCordoned(t *testing.T) {
	n := nodeWith(nil)
	p := podWith(container(nil))
	if Cordoned(p, n) {
		t.Error("a schedulable node is cordoned")
	}
	n.Spec.Unschedulable = true
	if !Cordoned(p, n) {
		t.Error("an unschedulable node does not reject an ordinary pod")
	}
	p.Spec.Tolerations = []corev1.Toleration{{Key: corev1.TaintNodeUnschedulable, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoSchedule}}
	if Cordoned(p, n) {
		t.Error("a pod tolerating node.kubernetes.io/unschedulable (a daemon pod) is kept off a cordoned node")
	}
}

func TestHostPortsAndConflicts(t *testing.T) {
	port := func(p int32, proto corev1.Protocol, ip string) corev1.ContainerPort {
		return corev1.ContainerPort{ContainerPort: 80, HostPort: p, Protocol: proto, HostIP: ip}
	}
	withPorts := func(ports ...corev1.ContainerPort) *corev1.Pod {
		p := podWith(container(nil, ports...))
		p.Spec.NodeName = "n"
		return p
	}
	if got := HostPorts(withPorts(corev1.ContainerPort{ContainerPort: 80}, port(8080, "", ""))); !slices.Equal(got, []HostPort{{"0.0.0.0", corev1.ProtocolTCP, 8080}}) {
		t.Errorf("HostPorts = %v: want only the host port, with defaults", got)
	}
	tests := []struct {
		name     string
		have     corev1.ContainerPort
		want     corev1.ContainerPort
		conflict bool
	}{
		{"same port", port(80, corev1.ProtocolTCP, ""), port(80, corev1.ProtocolTCP, ""), true},
		{"unset protocol is TCP", port(80, "", ""), port(80, corev1.ProtocolTCP, ""), true},
		{"other protocol", port(80, corev1.ProtocolUDP, ""), port(80, corev1.ProtocolTCP, ""), false},
		{"other port", port(81, corev1.ProtocolTCP, ""), port(80, corev1.ProtocolTCP, ""), false},
		{"different IPs", port(80, corev1.ProtocolTCP, "10.0.0.1"), port(80, corev1.ProtocolTCP, "10.0.0.2"), false},
		{"same IP", port(80, corev1.ProtocolTCP, "10.0.0.1"), port(80, corev1.ProtocolTCP, "10.0.0.1"), true},
		{"held on every IP", port(80, corev1.ProtocolTCP, ""), port(80, corev1.ProtocolTCP, "10.0.0.2"), true},
		{"wanted on every IP", port(80, corev1.ProtocolTCP, "10.0.0.1"), port(80, corev1.ProtocolTCP, "0.0.0.0"), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, got := PortConflict(withPorts(tt.want), []*corev1.Pod{withPorts(tt.have)}); got != tt.conflict {
				t.Errorf("PortConflict = %v, want %v", got, tt.conflict)
			}
		})
	}
	done := withPorts(port(80, corev1.ProtocolTCP, ""))
	done.Status.Phase = corev1.PodSucceeded
	if _, got := PortConflict(withPorts(port(80, corev1.ProtocolTCP, "")), []*corev1.Pod{done}); got {
		t.Error("a finished pod still holds its host port")
	}
}

func TestReady(t *testing.T) {
	n := nodeWith(nil)
	if Ready(n) {
		t.Error("a node without a Ready condition is ready")
	}
	for _, st := range []corev1.ConditionStatus{corev1.ConditionFalse, corev1.ConditionUnknown} {
		n.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: st}}
		if Ready(n) {
			t.Errorf("Ready=%s counts as ready", st)
		}
	}
	n.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeMemoryPressure, Status: corev1.ConditionTrue},
		{Type: corev1.NodeReady, Status: corev1.ConditionTrue}}
	if !Ready(n) {
		t.Error("Ready=True does not count as ready")
	}
}
