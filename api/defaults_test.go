package api

import (
	"reflect"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

func TestDefaultPod(t *testing.T) {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "p", SelfLink: "/x", ManagedFields: []metav1.ManagedFieldsEntry{{Manager: "m"}}},
		Spec: corev1.PodSpec{
			InitContainers: []corev1.Container{{Name: "init", Image: "busybox"}},
			Containers: []corev1.Container{
				{Name: "a", Image: "nginx:1.27", Ports: []corev1.ContainerPort{{ContainerPort: 80}},
					Env:            []corev1.EnvVar{{Name: "N", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "spec.nodeName"}}}},
					LivenessProbe:  &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Port: intstr.FromInt32(80)}}},
					ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromInt32(80)}}, PeriodSeconds: 3}},
				{Name: "b", Image: "registry.local:5000/app", ImagePullPolicy: corev1.PullNever},
				{Name: "c", Image: "app:latest"},
				{Name: "d", Image: "app@sha256:0123"},
				{Name: "e", Image: "registry.local:5000/app:v2"},
			},
			Volumes: []corev1.Volume{
				{Name: "cm", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{}}},
				{Name: "s", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{DefaultMode: ptr[int32](0o400)}}},
				{Name: "h", VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: "/x"}}},
			},
			Tolerations: []corev1.Toleration{{Key: "k", Value: "v"}},
		},
	}
	Default(Pod, p)
	if p.Namespace != "default" || p.Kind != "Pod" || p.APIVersion != "v1" || p.ManagedFields != nil || p.SelfLink != "" {
		t.Fatalf("metadata: %+v %+v", p.TypeMeta, p.ObjectMeta)
	}
	s := p.Spec
	if s.RestartPolicy != corev1.RestartPolicyAlways || *s.TerminationGracePeriodSeconds != 30 || s.DNSPolicy != corev1.DNSClusterFirst ||
		s.SchedulerName != "default-scheduler" {
		t.Fatalf("pod spec defaults: %+v", s)
	}
	pulls := map[string]corev1.PullPolicy{"init": corev1.PullAlways, "a": corev1.PullIfNotPresent, "b": corev1.PullNever,
		"c": corev1.PullAlways, "d": corev1.PullIfNotPresent, "e": corev1.PullIfNotPresent}
	for _, c := range append(s.InitContainers, s.Containers...) {
		if c.ImagePullPolicy != pulls[c.Name] {
			t.Errorf("container %s (%s): pull policy %s, want %s", c.Name, c.Image, c.ImagePullPolicy, pulls[c.Name])
		}
		if c.TerminationMessagePath != "/dev/termination-log" || c.TerminationMessagePolicy != corev1.TerminationMessageReadFile {
			t.Errorf("container %s termination message defaults: %q %q", c.Name, c.TerminationMessagePath, c.TerminationMessagePolicy)
		}
	}
	a := s.Containers[0]
	if a.Ports[0].Protocol != corev1.ProtocolTCP || a.Env[0].ValueFrom.FieldRef.APIVersion != "v1" {
		t.Fatalf("container defaults: %+v", a)
	}
	if l := a.LivenessProbe; l.TimeoutSeconds != 1 || l.PeriodSeconds != 10 || l.SuccessThreshold != 1 || l.FailureThreshold != 3 || l.HTTPGet.Scheme != corev1.URISchemeHTTP {
		t.Fatalf("liveness probe defaults: %+v", l)
	}
	if a.ReadinessProbe.PeriodSeconds != 3 {
		t.Fatal("an explicit probe period was overwritten")
	}
	if *s.Volumes[0].ConfigMap.DefaultMode != 0o644 || *s.Volumes[1].Secret.DefaultMode != 0o400 || *s.Volumes[2].HostPath.Type != corev1.HostPathUnset {
		t.Fatalf("volume defaults: %+v", s.Volumes)
	}
	if s.Tolerations[0].Operator != corev1.TolerationOpEqual {
		t.Fatalf("toleration operator %q", s.Tolerations[0].Operator)
	}
}

func TestDefaultWorkloads(t *testing.T) {
	d := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "d", Namespace: "prod"}, Spec: appsv1.DeploymentSpec{Template: webTemplate()}}
	Default(Deployment, d)
	if d.Namespace != "prod" || *d.Spec.Replicas != 1 || d.Spec.Strategy.Type != appsv1.RollingUpdateDeploymentStrategyType ||
		d.Spec.Strategy.RollingUpdate.MaxSurge.String() != "25%" || d.Spec.Strategy.RollingUpdate.MaxUnavailable.String() != "25%" ||
		*d.Spec.RevisionHistoryLimit != 10 || *d.Spec.ProgressDeadlineSeconds != 600 || d.Spec.Template.Spec.RestartPolicy != corev1.RestartPolicyAlways {
		t.Fatalf("deployment defaults: %+v", d.Spec)
	}

	// Explicit values, zero included, are kept.
	zero := &appsv1.Deployment{Spec: appsv1.DeploymentSpec{Replicas: ptr[int32](0), RevisionHistoryLimit: ptr[int32](0),
		Strategy: appsv1.DeploymentStrategy{RollingUpdate: &appsv1.RollingUpdateDeployment{MaxSurge: ptr(intstr.FromInt32(0))}}}}
	Default(Deployment, zero)
	if *zero.Spec.Replicas != 0 || *zero.Spec.RevisionHistoryLimit != 0 || zero.Spec.Strategy.RollingUpdate.MaxSurge.IntValue() != 0 ||
		zero.Spec.Strategy.RollingUpdate.MaxUnavailable.String() != "25%" {
		t.Fatalf("explicit zeros overwritten: %+v", zero.Spec)
	}

	recreate := &appsv1.Deployment{Spec: appsv1.DeploymentSpec{Strategy: appsv1.DeploymentStrategy{Type: appsv1.RecreateDeploymentStrategyType}}}
	Default(Deployment, recreate)
	if recreate.Spec.Strategy.RollingUpdate != nil {
		t.Fatal("Recreate deployment got rollingUpdate defaults")
	}

	rs := &appsv1.ReplicaSet{Spec: appsv1.ReplicaSetSpec{Template: webTemplate()}}
	Default(ReplicaSet, rs)
	if *rs.Spec.Replicas != 1 || rs.Spec.Template.Spec.DNSPolicy != corev1.DNSClusterFirst || rs.Kind != "ReplicaSet" || rs.APIVersion != "apps/v1" {
		t.Fatalf("replicaset defaults: %+v", rs)
	}

	ds := &appsv1.DaemonSet{Spec: appsv1.DaemonSetSpec{Template: webTemplate()}}
	Default(DaemonSet, ds)
	ru := ds.Spec.UpdateStrategy.RollingUpdate
	if ds.Spec.UpdateStrategy.Type != appsv1.RollingUpdateDaemonSetStrategyType || ru.MaxUnavailable.IntValue() != 1 ||
		ru.MaxSurge.IntValue() != 0 || ru.MaxSurge.Type != intstr.Int || *ds.Spec.RevisionHistoryLimit != 10 {
		t.Fatalf("daemonset defaults: %+v", ds.Spec)
	}
	onDelete := &appsv1.DaemonSet{Spec: appsv1.DaemonSetSpec{UpdateStrategy: appsv1.DaemonSetUpdateStrategy{Type: appsv1.OnDeleteDaemonSetStrategyType}}}
	Default(DaemonSet, onDelete)
	if onDelete.Spec.UpdateStrategy.RollingUpdate != nil {
		t.Fatal("OnDelete daemonset got rollingUpdate defaults")
	}
}

func TestDefaultService(t *testing.T) {
	s := &corev1.Service{Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Port: 80}, {Port: 53, Protocol: corev1.ProtocolUDP, TargetPort: intstr.FromString("dns")}}}}
	Default(Service, s)
	if s.Spec.Type != corev1.ServiceTypeClusterIP || s.Spec.SessionAffinity != corev1.ServiceAffinityNone || s.Spec.SessionAffinityConfig != nil ||
		*s.Spec.InternalTrafficPolicy != corev1.ServiceInternalTrafficPolicyCluster || s.Spec.ExternalTrafficPolicy != "" {
		t.Fatalf("service defaults: %+v", s.Spec)
	}
	if p := s.Spec.Ports[0]; p.Protocol != corev1.ProtocolTCP || p.TargetPort != intstr.FromInt32(80) {
		t.Fatalf("port defaults: %+v", p)
	}
	if p := s.Spec.Ports[1]; p.Protocol != corev1.ProtocolUDP || p.TargetPort.StrVal != "dns" {
		t.Fatalf("explicit port fields overwritten: %+v", p)
	}

	np := &corev1.Service{Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeNodePort, SessionAffinity: corev1.ServiceAffinityClientIP}}
	Default(Service, np)
	if np.Spec.ExternalTrafficPolicy != corev1.ServiceExternalTrafficPolicyCluster || *np.Spec.SessionAffinityConfig.ClientIP.TimeoutSeconds != 10800 {
		t.Fatalf("NodePort/ClientIP defaults: %+v", np.Spec)
	}
}

func TestDefaultOtherKinds(t *testing.T) {
	s := &corev1.Secret{Data: map[string][]byte{"a": []byte("1"), "b": []byte("2")}, StringData: map[string]string{"b": "two", "c": "3"}}
	Default(Secret, s)
	want := map[string][]byte{"a": []byte("1"), "b": []byte("two"), "c": []byte("3")}
	if s.Type != corev1.SecretTypeOpaque || s.StringData != nil || !reflect.DeepEqual(s.Data, want) {
		t.Fatalf("secret defaults: type %q data %q stringData %v", s.Type, s.Data, s.StringData)
	}
	onlyString := &corev1.Secret{Type: corev1.SecretTypeBasicAuth, StringData: map[string]string{"username": "u"}}
	Default(Secret, onlyString)
	if onlyString.Type != corev1.SecretTypeBasicAuth || string(onlyString.Data["username"]) != "u" {
		t.Fatalf("stringData into nil data: %+v", onlyString)
	}

	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "prod"}}
	Default(Namespace, ns)
	if ns.Status.Phase != corev1.NamespaceActive || ns.Namespace != "" {
		t.Fatalf("namespace defaults: %+v", ns)
	}
	n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n"}}
	Default(Node, n)
	if n.Namespace != "" || n.Kind != "Node" {
		t.Fatalf("cluster-scoped kinds get no namespace: %+v", n.ObjectMeta)
	}
	ep := &corev1.Endpoints{Subsets: []corev1.EndpointSubset{{Ports: []corev1.EndpointPort{{Port: 1}, {Port: 2, Protocol: corev1.ProtocolUDP}}}}}
	Default(Endpoints, ep)
	if ep.Subsets[0].Ports[0].Protocol != corev1.ProtocolTCP || ep.Subsets[0].Ports[1].Protocol != corev1.ProtocolUDP {
		t.Fatalf("endpoint port defaults: %+v", ep.Subsets)
	}
}

// TestDefaultIdempotent: defaulting twice changes nothing the second time.
func TestDefaultIdempotent(t *testing.T) {
	for k, obj := range validObjects() {
		Default(k, obj)
		again := obj.DeepCopyObject().(Object)
		Default(k, again)
		if !reflect.DeepEqual(obj, again) {
			t.Errorf("%s: second Default changed the object", k.Kind)
		}
	}
}
