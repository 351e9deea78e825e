package cli

import (
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"orch.dev/orch/api"
)

// Fixtures for the rollout, drain and scheduling parts of describe.

func fixtureUnschedulablePod() *corev1.Pod {
	spec := podTemplate().Spec
	spec.Containers[0].Resources.Requests[corev1.ResourceMemory] = resource.MustParse("6Gi")
	spec.Priority = i32(100000)
	spec.PriorityClassName = "critical-web"
	spec.Tolerations = []corev1.Toleration{{Key: "node.kubernetes.io/not-ready", Operator: corev1.TolerationOpExists,
		Effect: corev1.TaintEffectNoExecute, TolerationSeconds: ptrTo(int64(5))}}
	pod := typed(api.Pod, &corev1.Pod{
		ObjectMeta: meta("web-7d9f-xyz12", "default", 2*time.Minute, map[string]string{"app": "web"}),
		Spec:       spec,
		Status: corev1.PodStatus{Phase: corev1.PodPending, NominatedNodeName: "node-3",
			Conditions: []corev1.PodCondition{{Type: corev1.PodScheduled, Status: corev1.ConditionFalse, Reason: "Unschedulable",
				Message: "0/5 nodes are available: 3 Insufficient memory, 2 node(s) had untolerated taint {gpu: true}."}}},
	})
	pod.OwnerReferences = []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: "web-7d9f", Controller: ptrBool(true)}}
	return pod
}

func fixtureSchedulingEvents() []*corev1.Event {
	return []*corev1.Event{typed(api.Event, &corev1.Event{ObjectMeta: meta("web-7d9f-xyz12.1", "default", 2*time.Minute, nil),
		InvolvedObject: corev1.ObjectReference{Kind: "Pod", Namespace: "default", Name: "web-7d9f-xyz12"},
		Type:           corev1.EventTypeWarning, Reason: "FailedScheduling",
		Message: "0/5 nodes are available: 3 Insufficient memory, 2 node(s) had untolerated taint {gpu: true}.",
		Source:  corev1.EventSource{Component: "default-scheduler"}, Count: 3, FirstTimestamp: ago(2 * time.Minute), LastTimestamp: ago(30 * time.Second)})}
}

// fixtureReplicaSet is a ReplicaSet of the fixture deployment "web" at a
// revision, running image.
func fixtureReplicaSet(name string, revision string, image string, want, have int32, created time.Duration) *appsv1.ReplicaSet {
	dep := fixtureDeployment()
	tmpl := podTemplate()
	tmpl.Labels = map[string]string{"app": "web", podTemplateHashLabel: name[len("web-"):]}
	tmpl.Spec.Containers[0].Image = image
	rs := typed(api.ReplicaSet, &appsv1.ReplicaSet{
		ObjectMeta: meta(name, "default", created, tmpl.Labels),
		Spec:       appsv1.ReplicaSetSpec{Replicas: i32(want), Selector: dep.Spec.Selector, Template: tmpl},
		Status:     appsv1.ReplicaSetStatus{Replicas: have},
	})
	rs.Annotations = map[string]string{revisionAnnotation: revision}
	rs.OwnerReferences = []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "Deployment", Name: "web", UID: dep.UID, Controller: ptrBool(true)}}
	return rs
}

func fixtureDeploymentReplicaSets() []*appsv1.ReplicaSet {
	return []*appsv1.ReplicaSet{
		fixtureReplicaSet("web-7d9f", "3", "nginx:1.27", 3, 2, time.Hour),
		fixtureReplicaSet("web-5b6c", "2", "nginx:1.26", 1, 1, 5*time.Hour),
		fixtureReplicaSet("web-4a3b", "1", "nginx:1.25", 0, 0, 26*time.Hour),
	}
}

// fixtureNodePods are the pods bound to node-1: two running (one with
// requests and limits, one a DaemonSet's) and one finished.
func fixtureNodePods() []*corev1.Pod {
	web := fixturePods()[0].(*corev1.Pod)
	agent := typed(api.Pod, &corev1.Pod{
		ObjectMeta: meta("agent-abc12", "kube-system", 7*24*time.Hour, nil),
		Spec: corev1.PodSpec{NodeName: "node-1", Containers: []corev1.Container{{Name: "agent", Image: "agent:1",
			Resources: corev1.ResourceRequirements{
				Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("250m"), corev1.ResourceMemory: resource.MustParse("128Mi")},
				Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("256Mi")}}}}},
		Status: corev1.PodStatus{Phase: corev1.PodRunning},
	})
	done := typed(api.Pod, &corev1.Pod{
		ObjectMeta: meta("job-once", "default", time.Hour, nil),
		Spec: corev1.PodSpec{NodeName: "node-1", Containers: []corev1.Container{{Name: "job", Image: "busybox",
			Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("2")}}}}},
		Status: corev1.PodStatus{Phase: corev1.PodSucceeded},
	})
	return []*corev1.Pod{web, agent, done}
}
