package api

import (
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

const (
	invalid      = field.ErrorTypeInvalid
	required     = field.ErrorTypeRequired
	forbidden    = field.ErrorTypeForbidden
	duplicate    = field.ErrorTypeDuplicate
	notSupported = field.ErrorTypeNotSupported
	notFound     = field.ErrorTypeNotFound
	tooLong      = field.ErrorTypeTooLong
)

func e(path string, t field.ErrorType) string { return path + ": " + string(t) }

func TestValidObjectsValidate(t *testing.T) {
	for k, obj := range validObjects() {
		Default(k, obj)
		if errs := Validate(k, obj, nil); len(errs) != 0 {
			t.Errorf("valid %s: %v", k.Kind, errs)
		}
		if errs := Validate(k, obj, obj.DeepCopyObject().(Object)); len(errs) != 0 {
			t.Errorf("unchanged %s update: %v", k.Kind, errs)
		}
	}
}

func deploy(o Object) *appsv1.Deployment   { return o.(*appsv1.Deployment) }
func podOf(o Object) *corev1.Pod           { return o.(*corev1.Pod) }
func svcOf(o Object) *corev1.Service       { return o.(*corev1.Service) }
func cmOf(o Object) *corev1.ConfigMap      { return o.(*corev1.ConfigMap) }
func secretOf(o Object) *corev1.Secret     { return o.(*corev1.Secret) }
func dsOf(o Object) *appsv1.DaemonSet      { return o.(*appsv1.DaemonSet) }
func rsOf(o Object) *appsv1.ReplicaSet     { return o.(*appsv1.ReplicaSet) }
func container(o Object) *corev1.Container { return &podOf(o).Spec.Containers[0] }
func i32(v int32) *int32                   { return &v }
func intOrStr(s string) *intstr.IntOrString {
	v := intstr.Parse(s)
	return &v
}

type validateCase struct {
	name string
	kind *Kind
	// mutate changes a defaulted valid object; with old set, the result
	// is validated as an update of old (the unmutated valid object).
	mutate func(Object)
	update bool
	want   []string
}

func runValidateCases(t *testing.T, cases []validateCase) {
	t.Helper()
	for _, tt := range cases {
		t.Run(tt.kind.Kind+"/"+tt.name, func(t *testing.T) {
			obj := validObjects()[tt.kind]
			Default(tt.kind, obj)
			var old Object
			if tt.update {
				old = obj.DeepCopyObject().(Object)
			}
			tt.mutate(obj)
			errs := Validate(tt.kind, obj, old)
			if got := errPaths(errs); join(got) != join(tt.want) {
				t.Fatalf("errors:\n  %s\nwant:\n  %s\n(%v)", join(got), join(tt.want), errs)
			}
		})
	}
}

func TestValidateWorkloads(t *testing.T) {
	runValidateCases(t, []validateCase{
		{"selector does not match template labels", Deployment, func(o Object) {
			deploy(o).Spec.Template.Labels = map[string]string{"app": "other"}
		}, false, []string{e("spec.template.metadata.labels", invalid)}},
		{"negative replicas", Deployment, func(o Object) { deploy(o).Spec.Replicas = i32(-1) },
			false, []string{e("spec.replicas", invalid)}},
		{"zero replicas", Deployment, func(o Object) { deploy(o).Spec.Replicas = i32(0) }, false, nil},
		{"maxSurge and maxUnavailable both 0", Deployment, func(o Object) {
			deploy(o).Spec.Strategy.RollingUpdate = &appsv1.RollingUpdateDeployment{MaxSurge: intOrStr("0"), MaxUnavailable: intOrStr("0")}
		}, false, []string{e("spec.strategy.rollingUpdate.maxUnavailable", invalid)}},
		{"maxSurge 0% and maxUnavailable 0", Deployment, func(o Object) {
			deploy(o).Spec.Strategy.RollingUpdate = &appsv1.RollingUpdateDeployment{MaxSurge: intOrStr("0%"), MaxUnavailable: intOrStr("0")}
		}, false, []string{e("spec.strategy.rollingUpdate.maxUnavailable", invalid)}},
		{"maxSurge 00% and maxUnavailable 0%", Deployment, func(o Object) {
			deploy(o).Spec.Strategy.RollingUpdate = &appsv1.RollingUpdateDeployment{MaxSurge: intOrStr("00%"), MaxUnavailable: intOrStr("0%")}
		}, false, []string{e("spec.strategy.rollingUpdate.maxUnavailable", invalid)}},
		{"maxSurge 0 and maxUnavailable 1", Deployment, func(o Object) {
			deploy(o).Spec.Strategy.RollingUpdate = &appsv1.RollingUpdateDeployment{MaxSurge: intOrStr("0"), MaxUnavailable: intOrStr("1")}
		}, false, nil},
		{"maxUnavailable over 100%", Deployment, func(o Object) {
			deploy(o).Spec.Strategy.RollingUpdate.MaxUnavailable = intOrStr("150%")
		}, false, []string{e("spec.strategy.rollingUpdate.maxUnavailable", invalid)}},
		{"malformed maxSurge", Deployment, func(o Object) {
			deploy(o).Spec.Strategy.RollingUpdate.MaxSurge = intOrStr("lots")
		}, false, []string{e("spec.strategy.rollingUpdate.maxSurge", invalid)}},
		{"negative maxSurge", Deployment, func(o Object) {
			deploy(o).Spec.Strategy.RollingUpdate.MaxSurge = intOrStr("-1")
		}, false, []string{e("spec.strategy.rollingUpdate.maxSurge", invalid)}},
		{"Recreate with rollingUpdate", Deployment, func(o Object) { deploy(o).Spec.Strategy.Type = appsv1.RecreateDeploymentStrategyType },
			false, []string{e("spec.strategy.rollingUpdate", forbidden)}},
		{"unknown strategy", Deployment, func(o Object) { deploy(o).Spec.Strategy.Type = "BlueGreen" },
			false, []string{e("spec.strategy.type", notSupported)}},
		{"template restartPolicy Never", Deployment, func(o Object) { deploy(o).Spec.Template.Spec.RestartPolicy = corev1.RestartPolicyNever },
			false, []string{e("spec.template.spec.restartPolicy", notSupported)}},
		{"no selector", Deployment, func(o Object) { deploy(o).Spec.Selector = nil },
			false, []string{e("spec.selector", required)}},
		{"empty selector", Deployment, func(o Object) { deploy(o).Spec.Selector = &metav1.LabelSelector{} },
			false, []string{e("spec.selector", invalid)}},
		{"progress deadline not above minReadySeconds", Deployment, func(o Object) { deploy(o).Spec.MinReadySeconds = 600 },
			false, []string{e("spec.progressDeadlineSeconds", invalid)}},
		{"unsupported template field", Deployment, func(o Object) { deploy(o).Spec.Template.Spec.HostNetwork = true },
			false, []string{e("spec.template.spec.hostNetwork", forbidden)}},
		{"bad container in template", Deployment, func(o Object) { deploy(o).Spec.Template.Spec.Containers[0].Image = " " },
			false, []string{e("spec.template.spec.containers[0].image", required)}},
		{"selector is immutable", Deployment, func(o Object) {
			d := deploy(o)
			d.Spec.Selector.MatchLabels = map[string]string{"app": "web", "v": "2"}
			d.Spec.Template.Labels = d.Spec.Selector.MatchLabels
		}, true, []string{e("spec.selector", invalid)}},
		{"scaling is an update", Deployment, func(o Object) { deploy(o).Spec.Replicas = i32(7) }, true, nil},
		{"update with a resourceVersion", Deployment, func(o Object) { o.SetResourceVersion("12"); deploy(o).Spec.Replicas = i32(7) }, true, nil},
		{"replicaset negative replicas", ReplicaSet, func(o Object) { rsOf(o).Spec.Replicas = i32(-3) },
			false, []string{e("spec.replicas", invalid)}},
		{"replicaset selector is immutable", ReplicaSet, func(o Object) {
			rsOf(o).Spec.Selector = &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{
				{Key: "app", Operator: metav1.LabelSelectorOpExists}}}
		}, true, []string{e("spec.selector", invalid)}},
		{"daemonset selector is immutable", DaemonSet, func(o Object) {
			d := dsOf(o)
			d.Spec.Selector.MatchLabels = map[string]string{"app": "agent"}
			d.Spec.Template.Labels = d.Spec.Selector.MatchLabels
		}, true, []string{e("spec.selector", invalid)}},
		{"daemonset selector mismatch", DaemonSet, func(o Object) { dsOf(o).Spec.Template.Labels = nil },
			false, []string{e("spec.template.metadata.labels", invalid)}},
		{"daemonset OnDelete with rollingUpdate", DaemonSet, func(o Object) { dsOf(o).Spec.UpdateStrategy.Type = appsv1.OnDeleteDaemonSetStrategyType },
			false, []string{e("spec.updateStrategy.rollingUpdate", forbidden)}},
		{"daemonset maxSurge and maxUnavailable both 0", DaemonSet, func(o Object) {
			dsOf(o).Spec.UpdateStrategy.RollingUpdate = &appsv1.RollingUpdateDaemonSet{MaxSurge: intOrStr("0"), MaxUnavailable: intOrStr("0%")}
		}, false, []string{e("spec.updateStrategy.rollingUpdate.maxUnavailable", invalid)}},
	})
}

func TestValidatePod(t *testing.T) {
	runValidateCases(t, []validateCase{
		{"hostIPC is not supported", Pod, func(o Object) { podOf(o).Spec.HostIPC = true },
			false, []string{e("spec.hostIPC", forbidden)}},
		{"securityContext is not supported", Pod, func(o Object) {
			container(o).SecurityContext = &corev1.SecurityContext{Privileged: new(bool)}
			*container(o).SecurityContext.Privileged = true
		}, false, []string{e("spec.containers[0].securityContext", forbidden)}},
		{"unsupported list field", Pod, func(o Object) { podOf(o).Spec.HostAliases = []corev1.HostAlias{{IP: "1.2.3.4"}} },
			false, []string{e("spec.hostAliases", forbidden)}},
		{"managedFields are not supported", Pod, func(o Object) {
			o.SetManagedFields([]metav1.ManagedFieldsEntry{{Manager: "kubectl", Operation: metav1.ManagedFieldsOperationUpdate, APIVersion: "v1"}})
		}, false, []string{e("metadata.managedFields", forbidden)}},
		{"no containers", Pod, func(o Object) { podOf(o).Spec.Containers = nil },
			false, []string{e("spec.containers", required)}},
		{"duplicate container name", Pod, func(o Object) {
			podOf(o).Spec.Containers = append(podOf(o).Spec.Containers, corev1.Container{Name: "web", Image: "x",
				ImagePullPolicy: corev1.PullAlways, TerminationMessagePolicy: corev1.TerminationMessageReadFile})
		}, false, []string{e("spec.containers[1].name", duplicate)}},
		{"invalid container name", Pod, func(o Object) { container(o).Name = "Web_1" },
			false, []string{e("spec.containers[0].name", invalid)}},
		{"no image", Pod, func(o Object) { container(o).Image = "" }, false, []string{e("spec.containers[0].image", required)}},
		{"dnsPolicy None without nameservers", Pod, func(o Object) { podOf(o).Spec.DNSPolicy = corev1.DNSNone },
			false, []string{e("spec.dnsConfig.nameservers", required)}},
		{"dnsPolicy None with a nameserver", Pod, func(o Object) {
			podOf(o).Spec.DNSPolicy = corev1.DNSNone
			podOf(o).Spec.DNSConfig = &corev1.PodDNSConfig{Nameservers: []string{"10.0.0.53"}, Searches: []string{"corp.example"}}
		}, false, nil},
		{"dnsConfig bad nameserver", Pod, func(o Object) {
			podOf(o).Spec.DNSConfig = &corev1.PodDNSConfig{Nameservers: []string{"not-an-ip"}}
		}, false, []string{e("spec.dnsConfig.nameservers[0]", invalid)}},
		{"bad port", Pod, func(o Object) { container(o).Ports[0].ContainerPort = 70000 },
			false, []string{e("spec.containers[0].ports[0].containerPort", invalid)}},
		{"mount of an unknown volume", Pod, func(o Object) {
			container(o).VolumeMounts = []corev1.VolumeMount{{Name: "data", MountPath: "/data"}}
		}, false, []string{e("spec.containers[0].volumeMounts[0].name", notFound)}},
		{"volume without a source", Pod, func(o Object) { podOf(o).Spec.Volumes = []corev1.Volume{{Name: "data"}} },
			false, []string{e("spec.volumes[0]", required)}},
		{"hostPath not absolute", Pod, func(o Object) {
			podOf(o).Spec.Volumes = []corev1.Volume{{Name: "data", VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: "var/data"}}}}
		}, false, []string{e("spec.volumes[0].hostPath.path", invalid)}},
		{"unsupported fieldRef", Pod, func(o Object) {
			container(o).Env = []corev1.EnvVar{{Name: "X", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{APIVersion: "v1", FieldPath: "spec.hostPID"}}}}
		}, false, []string{e("spec.containers[0].env[0].valueFrom.fieldRef.fieldPath", notSupported)}},
		{"requests above limits", Pod, func(o Object) {
			container(o).Resources = corev1.ResourceRequirements{
				Limits: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("500m")}, Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("1")}}
		}, false, []string{e("spec.containers[0].resources.requests[cpu]", invalid)}},
		{"probe without a handler", Pod, func(o Object) {
			container(o).LivenessProbe = &corev1.Probe{TimeoutSeconds: 1, PeriodSeconds: 10, SuccessThreshold: 1, FailureThreshold: 3}
		}, false, []string{e("spec.containers[0].livenessProbe", required)}},
		{"Exists toleration with a value", Pod, func(o Object) {
			podOf(o).Spec.Tolerations = []corev1.Toleration{{Key: "k", Operator: corev1.TolerationOpExists, Value: "v"}}
		}, false, []string{e("spec.tolerations[0].value", invalid)}},
		{"bad node affinity operator", Pod, func(o Object) {
			podOf(o).Spec.Affinity = &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{RequiredDuringSchedulingIgnoredDuringExecution: &corev1.NodeSelector{
				NodeSelectorTerms: []corev1.NodeSelectorTerm{{MatchExpressions: []corev1.NodeSelectorRequirement{{Key: "zone", Operator: "Near"}}}}}}}
		}, false, []string{e("spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0].matchExpressions[0].operator", notSupported)}},
		{"spread with zero skew", Pod, func(o Object) {
			podOf(o).Spec.TopologySpreadConstraints = []corev1.TopologySpreadConstraint{{TopologyKey: "zone", WhenUnsatisfiable: corev1.DoNotSchedule}}
		}, false, []string{e("spec.topologySpreadConstraints[0].maxSkew", invalid)}},
		{"other scheduler", Pod, func(o Object) { podOf(o).Spec.SchedulerName = "volcano" },
			false, []string{e("spec.schedulerName", notSupported)}},
		{"bad name", Pod, func(o Object) { o.SetName("Web_1") }, false, []string{e("metadata.name", invalid)}},
		{"no namespace", Pod, func(o Object) { o.SetNamespace("") }, false, []string{e("metadata.namespace", required)}},
		{"image update", Pod, func(o Object) { container(o).Image = "nginx:1.28" }, true, nil},
		{"deadline update", Pod, func(o Object) {
			podOf(o).Spec.ActiveDeadlineSeconds = new(int64)
			*podOf(o).Spec.ActiveDeadlineSeconds = 60
		}, true, nil},
		{"toleration added", Pod, func(o Object) {
			podOf(o).Spec.Tolerations = append(podOf(o).Spec.Tolerations, corev1.Toleration{Key: "k", Operator: corev1.TolerationOpExists})
		}, true, nil},
		{"restartPolicy update", Pod, func(o Object) { podOf(o).Spec.RestartPolicy = corev1.RestartPolicyNever },
			true, []string{e("spec", forbidden)}},
		{"container command update", Pod, func(o Object) { container(o).Command = []string{"sh"} },
			true, []string{e("spec", forbidden)}},
		{"container added", Pod, func(o Object) {
			podOf(o).Spec.Containers = append(podOf(o).Spec.Containers, corev1.Container{Name: "side", Image: "x",
				ImagePullPolicy: corev1.PullAlways, TerminationMessagePolicy: corev1.TerminationMessageReadFile})
		}, true, []string{e("spec", forbidden)}},
		{"namespace is immutable", Pod, func(o Object) { o.SetNamespace("staging") }, true, []string{e("metadata.namespace", invalid)}},
		{"uid is immutable", Pod, func(o Object) { o.SetUID("changed") }, true, []string{e("metadata.uid", invalid)}},
	})
}

func TestValidatePodUpdateRemovingToleration(t *testing.T) {
	old := valid[*corev1.Pod](Pod)
	old.Spec.Tolerations = []corev1.Toleration{{Key: "a", Operator: corev1.TolerationOpExists}, {Key: "b", Operator: corev1.TolerationOpExists}}
	pod := old.DeepCopy()
	pod.Spec.Tolerations = pod.Spec.Tolerations[1:]
	if got := errPaths(Validate(Pod, pod, old)); join(got) != e("spec", forbidden) {
		t.Fatalf("removing a toleration: %v", got)
	}
}

func TestValidateUnsupportedFieldDetail(t *testing.T) {
	p := valid[*corev1.Pod](Pod)
	p.Spec.HostIPC = true
	errs := Validate(Pod, p, nil)
	if len(errs) != 1 || errs[0].Type != field.ErrorTypeForbidden || !strings.Contains(errs[0].Error(), "not supported by orch") {
		t.Fatalf("errors %v", errs)
	}
	if errs := ValidateSupportedFields(Pod, p); len(errs) != 1 || errs[0].Field != "spec.hostIPC" {
		t.Fatalf("ValidateSupportedFields: %v", errs)
	}
	// Every supported kind has an allowlist.
	for _, k := range Kinds {
		if allowTrees[k] == nil {
			t.Errorf("%s has no supported-field allowlist", k.Kind)
		}
	}
}

func TestValidateServices(t *testing.T) {
	twoPorts := func(o Object) {
		svcOf(o).Spec.Ports = append(svcOf(o).Spec.Ports, corev1.ServicePort{Name: "https", Port: 443, Protocol: corev1.ProtocolTCP, TargetPort: intstr.FromInt32(443)})
	}
	runValidateCases(t, []validateCase{
		{"duplicate port name", Service, func(o Object) { twoPorts(o); svcOf(o).Spec.Ports[1].Name = "http" },
			false, []string{e("spec.ports[1].name", duplicate)}},
		{"unnamed second port", Service, func(o Object) { twoPorts(o); svcOf(o).Spec.Ports[1].Name = "" },
			false, []string{e("spec.ports[1].name", required)}},
		{"nodePort out of range", Service, func(o Object) {
			svcOf(o).Spec.Type = corev1.ServiceTypeNodePort
			svcOf(o).Spec.Ports[0].NodePort = 8080
		}, false, []string{e("spec.ports[0].nodePort", invalid)}},
		{"nodePort in range", Service, func(o Object) {
			svcOf(o).Spec.Type = corev1.ServiceTypeNodePort
			svcOf(o).Spec.Ports[0].NodePort = 30080
		}, false, nil},
		{"nodePort on ClusterIP", Service, func(o Object) { svcOf(o).Spec.Ports[0].NodePort = 30080 },
			false, []string{e("spec.ports[0].nodePort", forbidden)}},
		{"LoadBalancer", Service, func(o Object) { svcOf(o).Spec.Type = corev1.ServiceTypeLoadBalancer },
			false, []string{e("spec.type", notSupported)}},
		{"externalIPs are not supported", Service, func(o Object) { svcOf(o).Spec.ExternalIPs = []string{"1.2.3.4"} },
			false, []string{e("spec.externalIPs", forbidden)}},
		{"no ports", Service, func(o Object) { svcOf(o).Spec.Ports = nil }, false, []string{e("spec.ports", required)}},
		{"headless without ports", Service, func(o Object) { svcOf(o).Spec.Ports = nil; svcOf(o).Spec.ClusterIP = corev1.ClusterIPNone }, false, nil},
		{"bad clusterIP", Service, func(o Object) { svcOf(o).Spec.ClusterIP = "10.96.0.300" }, false, []string{e("spec.clusterIP", invalid)}},
		{"bad target port name", Service, func(o Object) { svcOf(o).Spec.Ports[0].TargetPort = intstr.FromString("Not_A_Name") },
			false, []string{e("spec.ports[0].targetPort", invalid)}},
		{"name must be a DNS label", Service, func(o Object) { o.SetName("web.prod") }, false, []string{e("metadata.name", invalid)}},
		{"clusterIP may be set when unset", Service, func(o Object) { svcOf(o).Spec.ClusterIP = "10.96.0.11" }, true, nil},
	})
	old := valid[*corev1.Service](Service)
	old.Spec.ClusterIP = "10.96.0.10"
	s := old.DeepCopy()
	s.Spec.ClusterIP = "10.96.0.11"
	if got := errPaths(Validate(Service, s, old)); join(got) != e("spec.clusterIP", invalid) {
		t.Fatalf("clusterIP change: %v", got)
	}
}

func TestValidateConfigAndSecrets(t *testing.T) {
	immutable := func(o Object) {
		t := true
		switch x := o.(type) {
		case *corev1.ConfigMap:
			x.Immutable = &t
		case *corev1.Secret:
			x.Immutable = &t
		}
	}
	runValidateCases(t, []validateCase{
		{"bad key", ConfigMap, func(o Object) { cmOf(o).Data["a/b"] = "x" }, false, []string{e("data[a/b]", invalid)}},
		{"bad binary key", ConfigMap, func(o Object) { cmOf(o).BinaryData = map[string][]byte{"..": nil} }, false, []string{e("binaryData[..]", invalid)}},
		{"key in data and binaryData", ConfigMap, func(o Object) { cmOf(o).BinaryData = map[string][]byte{"KEY_2": {1}} },
			false, []string{e("binaryData[KEY_2]", duplicate)}},
		{"too large", ConfigMap, func(o Object) { cmOf(o).Data["big"] = strings.Repeat("x", MaxObjectBytes) },
			false, []string{e("data", tooLong)}},
		{"secret type", Secret, func(o Object) { secretOf(o).Type = "kubernetes.io/service-account-token" },
			false, []string{e("type", notSupported)}},
		{"secret type is immutable", Secret, func(o Object) { secretOf(o).Type = corev1.SecretTypeBasicAuth }, true, []string{e("type", invalid)}},
		{"mutable secret update", Secret, func(o Object) { secretOf(o).Data["password"] = []byte("new") }, true, nil},
		{"mutable configmap update", ConfigMap, func(o Object) { cmOf(o).Data["app.conf"] = "x=2" }, true, nil},
	})

	cm := valid[*corev1.ConfigMap](ConfigMap)
	immutable(cm)
	for name, c := range map[string]struct {
		mutate func(*corev1.ConfigMap)
		want   []string
	}{
		"data change":      {func(c *corev1.ConfigMap) { c.Data["app.conf"] = "x=2" }, []string{e("data", forbidden)}},
		"binary added":     {func(c *corev1.ConfigMap) { c.BinaryData = map[string][]byte{"b": {1}} }, []string{e("data", forbidden)}},
		"immutable unset":  {func(c *corev1.ConfigMap) { c.Immutable = nil }, []string{e("immutable", forbidden)}},
		"labels only":      {func(c *corev1.ConfigMap) { c.Labels = map[string]string{"a": "b"} }, nil},
		"immutable unset+": {func(c *corev1.ConfigMap) { c.Immutable = nil; c.Data = nil }, []string{e("data", forbidden), e("immutable", forbidden)}},
	} {
		next := cm.DeepCopy()
		c.mutate(next)
		if got := errPaths(Validate(ConfigMap, next, cm)); join(got) != join(c.want) {
			t.Errorf("immutable configmap, %s: %v, want %v", name, got, c.want)
		}
	}
	s := valid[*corev1.Secret](Secret)
	immutable(s)
	next := s.DeepCopy()
	next.Data["password"] = []byte("rotated")
	if got := errPaths(Validate(Secret, next, s)); join(got) != e("data", forbidden) {
		t.Errorf("immutable secret data change: %v", got)
	}
}

// TestSecretValuesNeverInErrors: a Secret's values are never echoed back,
// whatever is wrong with it.
func TestSecretValuesNeverInErrors(t *testing.T) {
	const value = "s3cr3t-Value-4242"
	s := valid[*corev1.Secret](Secret)
	s.Data = map[string][]byte{"bad key!": []byte(value), "../up": []byte(value), "ok": []byte(value + strings.Repeat("x", MaxObjectBytes))}
	s.StringData = map[string]string{"also bad?": value}
	s.Type = "Bogus"
	old := s.DeepCopy()
	old.Type = corev1.SecretTypeOpaque
	old.Data = map[string][]byte{"ok": []byte(value)}
	old.Immutable = new(bool)
	*old.Immutable = true
	errs := Validate(Secret, s, old)
	want := []string{e("data", forbidden), e("data", tooLong), e("data[../up]", invalid), e("data[../up]", invalid), e("data[bad key!]", invalid),
		e("type", invalid), e("type", notSupported)}
	if got := errPaths(errs); join(got) != join(want) {
		t.Fatalf("errors:\n  %s\nwant:\n  %s", join(got), join(want))
	}
	for _, err := range errs {
		if strings.Contains(err.Error(), value) || strings.Contains(err.Error(), "czNjcjN0") {
			t.Errorf("error reveals the secret value: %v", err)
		}
	}
	if strings.Contains(errs.ToAggregate().Error(), value) {
		t.Error("aggregate error reveals the secret value")
	}
	// Nor does decoding.
	_, err := DecodeJSON(Secret, []byte(`{"metadata": {"name": "s"}, "data": {"k": "`+value+`"}}`))
	if err == nil || strings.Contains(err.Error(), value) {
		t.Errorf("decode error reveals the secret value: %v", err)
	}
}

func TestValidateClusterKindsAndEvents(t *testing.T) {
	runValidateCases(t, []validateCase{
		{"namespace name", Namespace, func(o Object) { o.SetName("Prod") }, false, []string{e("metadata.name", invalid)}},
		{"namespace in a namespace", Namespace, func(o Object) { o.SetNamespace("prod") }, false, []string{e("metadata.namespace", forbidden)}},
		{"bad podCIDR", Node, func(o Object) { o.(*corev1.Node).Spec.PodCIDR = "10.244.1.0/33" }, false, []string{e("spec.podCIDR", invalid)}},
		{"bad taint effect", Node, func(o Object) {
			o.(*corev1.Node).Spec.Taints = []corev1.Taint{{Key: "dedicated", Value: "gpu", Effect: "Sometimes"}}
		}, false, []string{e("spec.taints[0].effect", notSupported)}},
		{"duplicate taint", Node, func(o Object) {
			o.(*corev1.Node).Spec.Taints = []corev1.Taint{{Key: "a", Effect: corev1.TaintEffectNoSchedule}, {Key: "a", Value: "x", Effect: corev1.TaintEffectNoSchedule}}
		}, false, []string{e("spec.taints[1]", duplicate)}},
		{"negative capacity", Node, func(o Object) {
			o.(*corev1.Node).Status.Capacity = corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("-1")}
		}, false, []string{e("status.capacity[cpu]", invalid)}},
		{"bad endpoint IP", Endpoints, func(o Object) { o.(*corev1.Endpoints).Subsets[0].Addresses[0].IP = "10.244.0" },
			false, []string{e("subsets[0].addresses[0].ip", invalid)}},
		{"endpoint port 0", Endpoints, func(o Object) { o.(*corev1.Endpoints).Subsets[0].Ports[0].Port = 0 },
			false, []string{e("subsets[0].ports[0].port", invalid)}},
		{"event without involved kind", Event, func(o Object) { o.(*corev1.Event).InvolvedObject.Kind = "" },
			false, []string{e("involvedObject.kind", required)}},
		{"event type", Event, func(o Object) { o.(*corev1.Event).Type = "Critical" }, false, []string{e("type", notSupported)}},
		{"event in another namespace", Event, func(o Object) { o.(*corev1.Event).InvolvedObject.Namespace = "other" },
			false, []string{e("involvedObject.namespace", invalid)}},
	})
}
