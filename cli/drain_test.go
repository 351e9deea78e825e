package cli

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func drainPod(ns, name, ownerKind string, phase corev1.PodPhase, emptyDir bool) *corev1.Pod {
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Spec: corev1.PodSpec{NodeName: "n1"},
		Status: corev1.PodStatus{Phase: phase}}
	if ownerKind != "" {
		p.OwnerReferences = []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: ownerKind, Name: "owner", Controller: ptrBool(true)}}
	}
	if emptyDir {
		p.Spec.Volumes = []corev1.Volume{{Name: "scratch", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}}
	}
	return p
}

// TestPlanDrain: which pods drain evicts, warns about or refuses, with
// kubectl's messages.
func TestPlanDrain(t *testing.T) {
	web := drainPod("default", "web-1", "ReplicaSet", corev1.PodRunning, false)
	agent := drainPod("kube-system", "agent-1", "DaemonSet", corev1.PodRunning, false)
	agent2 := drainPod("kube-system", "agent-2", "DaemonSet", corev1.PodRunning, false)
	agentDone := drainPod("kube-system", "agent-old", "DaemonSet", corev1.PodFailed, false)
	bare := drainPod("default", "bare", "", corev1.PodRunning, false)
	bareDone := drainPod("default", "bare-done", "", corev1.PodSucceeded, false)
	scratch := drainPod("default", "cache-1", "ReplicaSet", corev1.PodRunning, true)
	notOwner := drainPod("default", "orphan", "", corev1.PodRunning, false)
	notOwner.OwnerReferences = []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: "x"}} // not a controller
	mirror := drainPod("kube-system", "static-n1", "", corev1.PodRunning, false)
	mirror.Annotations = map[string]string{corev1.MirrorPodAnnotationKey: "x"}
	all := []*corev1.Pod{web, agent, agent2, agentDone, bare, bareDone, scratch, notOwner, mirror}

	tests := []struct {
		name     string
		pods     []*corev1.Pod
		opts     drainOptions
		evict    string
		warnings string
		errs     string
	}{
		{"defaults refuse bare and emptyDir pods", all, drainOptions{ignoreDaemonSets: true}, "web-1 agent-old bare-done", "ignoring DaemonSet-managed Pods: kube-system/agent-1, kube-system/agent-2",
			"cannot delete Pods with local storage (use --delete-emptydir-data to override): default/cache-1|" +
				"cannot delete Pods declare no controller (use --force to override): default/bare, default/orphan"},
		{"force and delete-emptydir-data", all, drainOptions{ignoreDaemonSets: true, deleteEmptyDirData: true, force: true},
			"web-1 agent-old bare bare-done cache-1 orphan",
			"ignoring DaemonSet-managed Pods: kube-system/agent-1, kube-system/agent-2; deleting Pods with local storage: default/cache-1; " +
				"deleting Pods that declare no controller: default/bare, default/orphan", ""},
		{"daemon sets not ignored", []*corev1.Pod{web, agent}, drainOptions{}, "web-1", "",
			"cannot delete DaemonSet-managed Pods (use --ignore-daemonsets to ignore): kube-system/agent-1"},
		{"only replicated pods", []*corev1.Pod{web, mirror}, drainOptions{ignoreDaemonSets: true}, "web-1", "", ""},
		{"empty node", nil, drainOptions{ignoreDaemonSets: true}, "", "", ""},
	}
	for _, tt := range tests {
		plan := planDrain(tt.pods, tt.opts)
		var names []string
		for _, p := range plan.evict {
			names = append(names, p.Name)
		}
		if got := strings.Join(names, " "); got != tt.evict {
			t.Errorf("%s: evicts %q, want %q", tt.name, got, tt.evict)
		}
		if plan.warnings != tt.warnings {
			t.Errorf("%s: warnings\n%q\nwant\n%q", tt.name, plan.warnings, tt.warnings)
		}
		if got := strings.Join(plan.errs, "|"); got != tt.errs {
			t.Errorf("%s: errors\n%q\nwant\n%q", tt.name, got, tt.errs)
		}
	}
}

func TestNodeName(t *testing.T) {
	for in, want := range map[string]string{"n1": "n1", "node/n1": "n1", "nodes/n1": "n1", "no/n1": "n1"} {
		if got, err := nodeName(in); err != nil || got != want {
			t.Errorf("nodeName(%q) = %q, %v", in, got, err)
		}
	}
	for _, bad := range []string{"pod/n1", "node/", "bogus/n1"} {
		if _, err := nodeName(bad); err == nil {
			t.Errorf("nodeName(%q) accepted", bad)
		}
	}
}
