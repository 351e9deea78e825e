package cli

import (
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	schedulingv1 "k8s.io/api/scheduling/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"orch.dev/orch/api"
)

// fixedNow is "now" in printer tests, so AGE columns are stable.
var fixedNow = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func ago(d time.Duration) metav1.Time { return metav1.NewTime(fixedNow.Add(-d)) }

func meta(name, ns string, created time.Duration, labels map[string]string) metav1.ObjectMeta {
	return metav1.ObjectMeta{Name: name, Namespace: ns, CreationTimestamp: ago(created), Labels: labels,
		ResourceVersion: "42", UID: "00000000-0000-0000-0000-000000000001"}
}

func typed[T api.Object](k *api.Kind, o T) T {
	k.SetTypeMeta(o)
	return o
}

func i32(v int32) *int32 { return &v }

func podTemplate() corev1.PodTemplateSpec {
	return corev1.PodTemplateSpec{
		ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "web"}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{
			Name: "web", Image: "nginx:1.27",
			Ports: []corev1.ContainerPort{{ContainerPort: 80, Protocol: corev1.ProtocolTCP}},
			Resources: corev1.ResourceRequirements{
				Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m"), corev1.ResourceMemory: resource.MustParse("64Mi")},
				Limits:   corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("500m")},
			},
			Env: []corev1.EnvVar{{Name: "MODE", Value: "prod"}, {Name: "PASSWORD", ValueFrom: &corev1.EnvVarSource{
				SecretKeyRef: &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "db"}, Key: "password"}}}},
		}}},
	}
}

func fixturePods() []api.Object {
	running := typed(api.Pod, &corev1.Pod{
		ObjectMeta: meta("web-7d9f-abcde", "default", 3*time.Hour, map[string]string{"app": "web"}),
		Spec:       podTemplate().Spec,
		Status: corev1.PodStatus{Phase: corev1.PodRunning, PodIP: "10.244.1.5", HostIP: "192.168.1.11",
			StartTime: ptrTime(ago(3 * time.Hour)),
			Conditions: []corev1.PodCondition{{Type: corev1.PodScheduled, Status: corev1.ConditionTrue},
				{Type: corev1.PodReady, Status: corev1.ConditionTrue}},
			ContainerStatuses: []corev1.ContainerStatus{{Name: "web", Ready: true, RestartCount: 2,
				State:                corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: ago(10 * time.Minute)}},
				LastTerminationState: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 137, Reason: "OOMKilled", FinishedAt: ago(10 * time.Minute)}},
			}}},
	})
	running.Spec.NodeName = "node-1"
	running.OwnerReferences = []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: "web-7d9f", Controller: ptrBool(true)}}
	pending := typed(api.Pod, &corev1.Pod{
		ObjectMeta: meta("web-7d9f-fghij", "default", 90*time.Second, map[string]string{"app": "web"}),
		Spec:       podTemplate().Spec,
		Status: corev1.PodStatus{Phase: corev1.PodPending, ContainerStatuses: []corev1.ContainerStatus{{Name: "web",
			State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ContainerCreating"}}}}},
	})
	pending.Spec.NodeName = "node-2"
	terminating := typed(api.Pod, &corev1.Pod{
		ObjectMeta: meta("old", "kube-system", 48*time.Hour, nil),
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "a", Image: "busybox"}, {Name: "b", Image: "busybox"}}},
		Status:     corev1.PodStatus{Phase: corev1.PodRunning},
	})
	terminating.DeletionTimestamp = ptrTime(ago(time.Second))
	return []api.Object{running, pending, terminating}
}

func ptrTime(t metav1.Time) *metav1.Time { return &t }
func ptrBool(b bool) *bool               { return &b }

func fixtureDeployment() *appsv1.Deployment {
	maxU, maxS := intstr.FromString("25%"), intstr.FromString("25%")
	return typed(api.Deployment, &appsv1.Deployment{
		ObjectMeta: meta("web", "default", 26*time.Hour, map[string]string{"app": "web"}),
		Spec: appsv1.DeploymentSpec{Replicas: i32(3), Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}},
			Template: podTemplate(),
			Strategy: appsv1.DeploymentStrategy{Type: appsv1.RollingUpdateDeploymentStrategyType,
				RollingUpdate: &appsv1.RollingUpdateDeployment{MaxUnavailable: &maxU, MaxSurge: &maxS}}},
		Status: appsv1.DeploymentStatus{Replicas: 3, UpdatedReplicas: 3, ReadyReplicas: 2, AvailableReplicas: 2, UnavailableReplicas: 1,
			Conditions: []appsv1.DeploymentCondition{{Type: appsv1.DeploymentAvailable, Status: corev1.ConditionTrue, Reason: "MinimumReplicasAvailable"}}},
	})
}

func fixtureNodes() []api.Object {
	ready := typed(api.Node, &corev1.Node{
		ObjectMeta: meta("node-1", "", 30*24*time.Hour, map[string]string{"node-role.kubernetes.io/control-plane": "", "kubernetes.io/hostname": "node-1"}),
		Spec:       corev1.NodeSpec{PodCIDR: "10.244.1.0/24", Taints: []corev1.Taint{{Key: "node-role.kubernetes.io/control-plane", Effect: corev1.TaintEffectNoSchedule}}},
		Status: corev1.NodeStatus{
			Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: "KubeletReady", Message: "orch node agent is ready",
				LastHeartbeatTime: ago(5 * time.Second), LastTransitionTime: ago(30 * 24 * time.Hour)}},
			Addresses: []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "192.168.1.11"}, {Type: corev1.NodeHostName, Address: "node-1"}},
			Capacity:  corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("4"), corev1.ResourceMemory: resource.MustParse("8Gi"), corev1.ResourcePods: resource.MustParse("110")},
			Allocatable: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("3800m"), corev1.ResourceMemory: resource.MustParse("7Gi"),
				corev1.ResourcePods: resource.MustParse("110")},
			NodeInfo: corev1.NodeSystemInfo{KubeletVersion: "v1.37.0-orch+dev", OSImage: "Debian GNU/Linux 13", KernelVersion: "6.12.0",
				ContainerRuntimeVersion: "containerd://2.1.0", OperatingSystem: "linux", Architecture: "amd64"},
		},
	})
	notReady := typed(api.Node, &corev1.Node{
		ObjectMeta: meta("node-2", "", 2*time.Hour, nil),
		Spec:       corev1.NodeSpec{Unschedulable: true},
		Status:     corev1.NodeStatus{Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionFalse}}},
	})
	return []api.Object{ready, notReady}
}

func fixtureServices() []api.Object {
	return []api.Object{
		typed(api.Service, &corev1.Service{ObjectMeta: meta("web", "default", time.Hour, nil), Spec: corev1.ServiceSpec{
			Type: corev1.ServiceTypeClusterIP, ClusterIP: "10.96.0.20", Selector: map[string]string{"app": "web"},
			Ports: []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromInt32(8080), Protocol: corev1.ProtocolTCP}}}}),
		typed(api.Service, &corev1.Service{ObjectMeta: meta("edge", "default", 5*time.Minute, nil), Spec: corev1.ServiceSpec{
			Type: corev1.ServiceTypeNodePort, ClusterIP: "10.96.0.21",
			Ports: []corev1.ServicePort{{Name: "http", Port: 80, NodePort: 30080, TargetPort: intstr.FromString("http"), Protocol: corev1.ProtocolTCP},
				{Name: "dns", Port: 53, NodePort: 30053, TargetPort: intstr.FromInt32(53), Protocol: corev1.ProtocolUDP}}}}),
		typed(api.Service, &corev1.Service{ObjectMeta: meta("headless", "default", 5*time.Minute, nil), Spec: corev1.ServiceSpec{
			Type: corev1.ServiceTypeClusterIP, ClusterIP: corev1.ClusterIPNone}}),
	}
}

func fixtureEndpoints() []api.Object {
	addrs := []corev1.EndpointAddress{{IP: "10.244.1.5"}, {IP: "10.244.2.7"}, {IP: "10.244.3.9"}}
	return []api.Object{
		typed(api.Endpoints, &corev1.Endpoints{ObjectMeta: meta("web", "default", time.Hour, nil),
			Subsets: []corev1.EndpointSubset{{Addresses: addrs, Ports: []corev1.EndpointPort{{Name: "http", Port: 8080, Protocol: corev1.ProtocolTCP},
				{Name: "metrics", Port: 9090, Protocol: corev1.ProtocolTCP}}}}}),
		typed(api.Endpoints, &corev1.Endpoints{ObjectMeta: meta("empty", "default", time.Hour, nil)}),
	}
}

func fixtureOthers() map[*api.Kind][]api.Object {
	dep := fixtureDeployment()
	return map[*api.Kind][]api.Object{
		api.Namespace: {typed(api.Namespace, &corev1.Namespace{ObjectMeta: meta("default", "", 400*24*time.Hour, nil), Status: corev1.NamespaceStatus{Phase: corev1.NamespaceActive}}),
			typed(api.Namespace, &corev1.Namespace{ObjectMeta: meta("going", "", time.Minute, nil), Status: corev1.NamespaceStatus{Phase: corev1.NamespaceTerminating}})},
		api.ConfigMap: {fixtureConfigMap()},
		api.Secret:    {fixtureSecret()},
		api.ReplicaSet: {typed(api.ReplicaSet, &appsv1.ReplicaSet{ObjectMeta: meta("web-7d9f", "default", 26*time.Hour, map[string]string{"app": "web"}),
			Spec:   appsv1.ReplicaSetSpec{Replicas: i32(3), Selector: dep.Spec.Selector, Template: podTemplate()},
			Status: appsv1.ReplicaSetStatus{Replicas: 3, ReadyReplicas: 2, AvailableReplicas: 2}})},
		api.DaemonSet: {typed(api.DaemonSet, &appsv1.DaemonSet{ObjectMeta: meta("agent", "kube-system", 7*24*time.Hour, nil),
			Spec: appsv1.DaemonSetSpec{Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "agent"}}, Template: func() corev1.PodTemplateSpec {
				t := podTemplate()
				t.Spec.NodeSelector = map[string]string{"kubernetes.io/os": "linux"}
				return t
			}()},
			Status: appsv1.DaemonSetStatus{DesiredNumberScheduled: 3, CurrentNumberScheduled: 3, NumberReady: 3, UpdatedNumberScheduled: 3, NumberAvailable: 3}})},
		api.Event: fixtureEvents(),
		api.PriorityClass: {typed(api.PriorityClass, &schedulingv1.PriorityClass{ObjectMeta: meta("critical-web", "", 3*time.Hour, nil),
			Value: 100000, GlobalDefault: false, PreemptionPolicy: ptrTo(corev1.PreemptLowerPriority)})},
	}
}

func ptrTo[T any](v T) *T { return &v }

func fixtureConfigMap() *corev1.ConfigMap {
	return typed(api.ConfigMap, &corev1.ConfigMap{ObjectMeta: meta("app-config", "default", 45*time.Second, map[string]string{"app": "web"}),
		Data:       map[string]string{"color": "blue", "nginx.conf": "server {\n\tlisten 80;\n}"},
		BinaryData: map[string][]byte{"logo.png": {0x89, 0x50, 0x4e, 0x47}}})
}

func fixtureSecret() *corev1.Secret {
	s := typed(api.Secret, &corev1.Secret{ObjectMeta: meta("db", "default", 10*time.Minute, nil), Type: corev1.SecretTypeOpaque,
		Data: map[string][]byte{"password": []byte("hunter2-very-secret"), "user": []byte("admin")}})
	s.Annotations = map[string]string{lastAppliedAnnotation: `{"data":{"password":"aHVudGVyMg=="}}`, "team": "db"}
	return s
}

func fixtureEvents() []api.Object {
	return []api.Object{
		typed(api.Event, &corev1.Event{ObjectMeta: meta("web.1", "default", time.Hour, nil),
			InvolvedObject: corev1.ObjectReference{Kind: "Deployment", Namespace: "default", Name: "web"},
			Type:           corev1.EventTypeNormal, Reason: "ScalingReplicaSet", Message: "Scaled up replica set web-7d9f to 3",
			Source: corev1.EventSource{Component: "deployment-controller"}, Count: 1, FirstTimestamp: ago(time.Hour), LastTimestamp: ago(time.Hour)}),
		typed(api.Event, &corev1.Event{ObjectMeta: meta("web-7d9f-abcde.2", "default", 2*time.Hour, nil),
			InvolvedObject: corev1.ObjectReference{Kind: "Pod", Namespace: "default", Name: "web-7d9f-abcde"},
			Type:           corev1.EventTypeWarning, Reason: "BackOff", Message: "Back-off restarting failed container web",
			Source: corev1.EventSource{Component: "kubelet", Host: "node-1"}, Count: 5, FirstTimestamp: ago(2 * time.Hour), LastTimestamp: ago(10 * time.Minute)}),
	}
}
