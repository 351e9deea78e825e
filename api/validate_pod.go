package api

import (
	"fmt"
	"path"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	metav1validation "k8s.io/apimachinery/pkg/apis/meta/v1/validation"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// fieldRefPaths are the pod fields an env var's fieldRef may expose.
var fieldRefPaths = sets.New("metadata.name", "metadata.namespace", "metadata.uid", "spec.nodeName",
	"spec.serviceAccountName", "status.hostIP", "status.podIP", "status.podIPs")

func validatePodSpec(s *corev1.PodSpec, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	if len(s.Containers) == 0 {
		errs = append(errs, field.Required(p.Child("containers"), "a pod needs at least one container"))
	}
	volumes := sets.New[string]()
	for i, v := range s.Volumes {
		vp := p.Child("volumes").Index(i)
		errs = append(errs, validateDNSLabel(v.Name, vp.Child("name"))...)
		if volumes.Has(v.Name) {
			errs = append(errs, field.Duplicate(vp.Child("name"), v.Name))
		}
		volumes.Insert(v.Name)
		errs = append(errs, validateVolumeSource(&v.VolumeSource, vp)...)
	}
	names := sets.New[string]()
	for i := range s.InitContainers {
		errs = append(errs, validateContainer(&s.InitContainers[i], p.Child("initContainers").Index(i), volumes, names, true)...)
	}
	for i := range s.Containers {
		errs = append(errs, validateContainer(&s.Containers[i], p.Child("containers").Index(i), volumes, names, false)...)
	}
	switch s.RestartPolicy {
	case corev1.RestartPolicyAlways, corev1.RestartPolicyOnFailure, corev1.RestartPolicyNever:
	default:
		errs = append(errs, field.NotSupported(p.Child("restartPolicy"), s.RestartPolicy, []string{"Always", "OnFailure", "Never"}))
	}
	switch s.DNSPolicy {
	case corev1.DNSClusterFirst, corev1.DNSDefault, corev1.DNSClusterFirstWithHostNet:
	case corev1.DNSNone:
		if s.DNSConfig == nil || len(s.DNSConfig.Nameservers) == 0 {
			errs = append(errs, field.Required(p.Child("dnsConfig", "nameservers"), "must provide at least one DNS nameserver when dnsPolicy is None"))
		}
	default:
		errs = append(errs, field.NotSupported(p.Child("dnsPolicy"), s.DNSPolicy, []string{"ClusterFirst", "ClusterFirstWithHostNet", "Default", "None"}))
	}
	if c := s.DNSConfig; c != nil {
		if len(c.Nameservers) > 3 {
			errs = append(errs, field.TooMany(p.Child("dnsConfig", "nameservers"), len(c.Nameservers), 3))
		}
		for i, ns := range c.Nameservers {
			errs = append(errs, validation.IsValidIP(p.Child("dnsConfig", "nameservers").Index(i), ns)...)
		}
		if len(c.Searches) > 32 {
			errs = append(errs, field.TooMany(p.Child("dnsConfig", "searches"), len(c.Searches), 32))
		}
		for i, o := range c.Options {
			if o.Name == "" {
				errs = append(errs, field.Required(p.Child("dnsConfig", "options").Index(i).Child("name"), ""))
			}
		}
	}
	if s.SchedulerName != corev1.DefaultSchedulerName {
		errs = append(errs, field.NotSupported(p.Child("schedulerName"), s.SchedulerName, []string{corev1.DefaultSchedulerName}))
	}
	if g := s.TerminationGracePeriodSeconds; g != nil && *g < 0 {
		errs = append(errs, field.Invalid(p.Child("terminationGracePeriodSeconds"), *g, "must be >= 0"))
	}
	if d := s.ActiveDeadlineSeconds; d != nil && *d <= 0 {
		errs = append(errs, field.Invalid(p.Child("activeDeadlineSeconds"), *d, "must be > 0"))
	}
	errs = append(errs, metav1validation.ValidateLabels(s.NodeSelector, p.Child("nodeSelector"))...)
	if s.Hostname != "" {
		errs = append(errs, validateDNSLabel(s.Hostname, p.Child("hostname"))...)
	}
	if s.Subdomain != "" {
		errs = append(errs, validateDNSLabel(s.Subdomain, p.Child("subdomain"))...)
	}
	if s.NodeName != "" {
		for _, msg := range validation.IsDNS1123Subdomain(s.NodeName) {
			errs = append(errs, field.Invalid(p.Child("nodeName"), s.NodeName, msg))
		}
	}
	errs = append(errs, validateTolerations(s.Tolerations, p.Child("tolerations"))...)
	errs = append(errs, validateAffinity(s.Affinity, p.Child("affinity"))...)
	errs = append(errs, validateSpreadConstraints(s.TopologySpreadConstraints, p.Child("topologySpreadConstraints"))...)
	return errs
}

func validateVolumeSource(v *corev1.VolumeSource, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	n := 0
	if v.EmptyDir != nil {
		n++
		if m := v.EmptyDir.Medium; m != corev1.StorageMediumDefault && m != corev1.StorageMediumMemory {
			errs = append(errs, field.NotSupported(p.Child("emptyDir", "medium"), m, []string{"", "Memory"}))
		}
	}
	if v.HostPath != nil {
		n++
		if !path.IsAbs(v.HostPath.Path) {
			errs = append(errs, field.Invalid(p.Child("hostPath", "path"), v.HostPath.Path, "must be an absolute path"))
		}
	}
	if v.ConfigMap != nil {
		n++
		if v.ConfigMap.Name == "" {
			errs = append(errs, field.Required(p.Child("configMap", "name"), ""))
		}
		errs = append(errs, validateKeyToPaths(v.ConfigMap.Items, p.Child("configMap", "items"))...)
		errs = append(errs, validateMode(v.ConfigMap.DefaultMode, p.Child("configMap", "defaultMode"))...)
	}
	if v.Secret != nil {
		n++
		if v.Secret.SecretName == "" {
			errs = append(errs, field.Required(p.Child("secret", "secretName"), ""))
		}
		errs = append(errs, validateKeyToPaths(v.Secret.Items, p.Child("secret", "items"))...)
		errs = append(errs, validateMode(v.Secret.DefaultMode, p.Child("secret", "defaultMode"))...)
	}
	if n == 0 {
		errs = append(errs, field.Required(p, "must specify one of: emptyDir, hostPath, configMap, secret"))
	} else if n > 1 {
		errs = append(errs, field.Forbidden(p, "may not specify more than one volume type"))
	}
	return errs
}

func validateMode(mode *int32, p *field.Path) field.ErrorList {
	if mode != nil && (*mode < 0 || *mode > 0777) {
		return field.ErrorList{field.Invalid(p, *mode, "must be a number between 0 and 0777 (octal)")}
	}
	return nil
}

func validateKeyToPaths(items []corev1.KeyToPath, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	for i, it := range items {
		ip := p.Index(i)
		if it.Key == "" {
			errs = append(errs, field.Required(ip.Child("key"), ""))
		}
		errs = append(errs, validateRelativePath(it.Path, ip.Child("path"))...)
		errs = append(errs, validateMode(it.Mode, ip.Child("mode"))...)
	}
	return errs
}

func validateRelativePath(v string, p *field.Path) field.ErrorList {
	if v == "" {
		return field.ErrorList{field.Required(p, "")}
	}
	if path.IsAbs(v) {
		return field.ErrorList{field.Invalid(p, v, "must be a relative path")}
	}
	for _, part := range strings.Split(v, "/") {
		if part == ".." {
			return field.ErrorList{field.Invalid(p, v, "must not contain '..'")}
		}
	}
	return nil
}

func validateContainer(c *corev1.Container, p *field.Path, volumes, names sets.Set[string], init bool) field.ErrorList {
	var errs field.ErrorList
	errs = append(errs, validateDNSLabel(c.Name, p.Child("name"))...)
	if names.Has(c.Name) {
		errs = append(errs, field.Duplicate(p.Child("name"), c.Name))
	}
	names.Insert(c.Name)
	if strings.TrimSpace(c.Image) == "" {
		errs = append(errs, field.Required(p.Child("image"), ""))
	}
	switch c.ImagePullPolicy {
	case corev1.PullAlways, corev1.PullIfNotPresent, corev1.PullNever:
	default:
		errs = append(errs, field.NotSupported(p.Child("imagePullPolicy"), c.ImagePullPolicy, []string{"Always", "IfNotPresent", "Never"}))
	}
	if c.WorkingDir != "" && !path.IsAbs(c.WorkingDir) {
		errs = append(errs, field.Invalid(p.Child("workingDir"), c.WorkingDir, "must be an absolute path"))
	}
	portNames := sets.New[string]()
	for i, port := range c.Ports {
		pp := p.Child("ports").Index(i)
		errs = append(errs, validatePortNumber(port.ContainerPort, pp.Child("containerPort"))...)
		if port.HostPort != 0 {
			errs = append(errs, validatePortNumber(port.HostPort, pp.Child("hostPort"))...)
		}
		errs = append(errs, validateProtocol(port.Protocol, pp.Child("protocol"))...)
		if port.Name != "" {
			for _, msg := range validation.IsValidPortName(port.Name) {
				errs = append(errs, field.Invalid(pp.Child("name"), port.Name, msg))
			}
			if portNames.Has(port.Name) {
				errs = append(errs, field.Duplicate(pp.Child("name"), port.Name))
			}
			portNames.Insert(port.Name)
		}
	}
	for i, e := range c.Env {
		ep := p.Child("env").Index(i)
		for _, msg := range validation.IsRelaxedEnvVarName(e.Name) {
			errs = append(errs, field.Invalid(ep.Child("name"), e.Name, msg))
		}
		errs = append(errs, validateEnvSource(e, ep)...)
	}
	for i, e := range c.EnvFrom {
		ep := p.Child("envFrom").Index(i)
		switch {
		case e.ConfigMapRef != nil && e.SecretRef != nil:
			errs = append(errs, field.Forbidden(ep, "may not have more than one field specified at a time"))
		case e.ConfigMapRef != nil && e.ConfigMapRef.Name == "":
			errs = append(errs, field.Required(ep.Child("configMapRef", "name"), ""))
		case e.SecretRef != nil && e.SecretRef.Name == "":
			errs = append(errs, field.Required(ep.Child("secretRef", "name"), ""))
		case e.ConfigMapRef == nil && e.SecretRef == nil:
			errs = append(errs, field.Required(ep, "must specify configMapRef or secretRef"))
		}
	}
	errs = append(errs, validateResources(&c.Resources, p.Child("resources"))...)
	mounts := sets.New[string]()
	for i, m := range c.VolumeMounts {
		mp := p.Child("volumeMounts").Index(i)
		if !volumes.Has(m.Name) {
			errs = append(errs, field.NotFound(mp.Child("name"), m.Name))
		}
		if !path.IsAbs(m.MountPath) {
			errs = append(errs, field.Invalid(mp.Child("mountPath"), m.MountPath, "must be an absolute path"))
		}
		if mounts.Has(m.MountPath) {
			errs = append(errs, field.Invalid(mp.Child("mountPath"), m.MountPath, "must be unique"))
		}
		mounts.Insert(m.MountPath)
		if m.SubPath != "" {
			errs = append(errs, validateRelativePath(m.SubPath, mp.Child("subPath"))...)
		}
	}
	probes := []struct {
		name  string
		probe *corev1.Probe
	}{{"livenessProbe", c.LivenessProbe}, {"readinessProbe", c.ReadinessProbe}, {"startupProbe", c.StartupProbe}}
	for _, pr := range probes {
		if pr.probe == nil {
			continue
		}
		if init {
			errs = append(errs, field.Forbidden(p.Child(pr.name), "may not be set for init containers"))
			continue
		}
		errs = append(errs, validateProbe(pr.probe, pr.name != "readinessProbe", p.Child(pr.name))...)
	}
	return errs
}

func validateEnvSource(e corev1.EnvVar, p *field.Path) field.ErrorList {
	if e.ValueFrom == nil {
		return nil
	}
	if e.Value != "" {
		return field.ErrorList{field.Invalid(p.Child("valueFrom"), "", "may not be specified when `value` is not empty")}
	}
	var errs field.ErrorList
	vf, vp := e.ValueFrom, p.Child("valueFrom")
	n := 0
	if r := vf.ConfigMapKeyRef; r != nil {
		n++
		if r.Name == "" {
			errs = append(errs, field.Required(vp.Child("configMapKeyRef", "name"), ""))
		}
		if r.Key == "" {
			errs = append(errs, field.Required(vp.Child("configMapKeyRef", "key"), ""))
		}
	}
	if r := vf.SecretKeyRef; r != nil {
		n++
		if r.Name == "" {
			errs = append(errs, field.Required(vp.Child("secretKeyRef", "name"), ""))
		}
		if r.Key == "" {
			errs = append(errs, field.Required(vp.Child("secretKeyRef", "key"), ""))
		}
	}
	if r := vf.FieldRef; r != nil {
		n++
		fp := r.FieldPath
		if !fieldRefPaths.Has(fp) && !strings.HasPrefix(fp, "metadata.labels['") && !strings.HasPrefix(fp, "metadata.annotations['") {
			errs = append(errs, field.NotSupported(vp.Child("fieldRef", "fieldPath"), fp, sets.List(fieldRefPaths)))
		}
	}
	if n != 1 {
		errs = append(errs, field.Invalid(vp, "", "must specify exactly one of: configMapKeyRef, secretKeyRef, fieldRef"))
	}
	return errs
}

func validateResources(r *corev1.ResourceRequirements, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	for _, part := range []struct {
		name string
		list corev1.ResourceList
	}{{"limits", r.Limits}, {"requests", r.Requests}} {
		for name, q := range part.list {
			rp := p.Child(part.name).Key(string(name))
			errs = append(errs, validateQualifiedName(string(name), rp)...)
			if q.Sign() < 0 {
				errs = append(errs, field.Invalid(rp, q.String(), "must be greater than or equal to 0"))
			}
			if isExtendedResource(name) && q.MilliValue()%1000 != 0 {
				errs = append(errs, field.Invalid(rp, q.String(), "must be an integer"))
			}
		}
	}
	for name, req := range r.Requests {
		lim, ok := r.Limits[name]
		switch {
		case ok && req.Cmp(lim) > 0:
			errs = append(errs, field.Invalid(p.Child("requests").Key(string(name)), req.String(), fmt.Sprintf("must be less than or equal to %s limit of %s", name, lim.String())))
		case isExtendedResource(name) && (!ok || req.Cmp(lim) != 0):
			errs = append(errs, field.Invalid(p.Child("requests").Key(string(name)), req.String(), "must be equal to the limit for an extended resource"))
		}
	}
	return errs
}

// isExtendedResource reports whether name is a domain-qualified resource
// such as nvidia.com/gpu (not cpu, memory or a kubernetes.io one).
func isExtendedResource(name corev1.ResourceName) bool {
	n := string(name)
	return strings.Contains(n, "/") && !strings.Contains(n, "kubernetes.io/")
}

func validateProbe(pr *corev1.Probe, mustSucceedOnce bool, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	n := 0
	if pr.Exec != nil {
		n++
		if len(pr.Exec.Command) == 0 {
			errs = append(errs, field.Required(p.Child("exec", "command"), ""))
		}
	}
	if pr.HTTPGet != nil {
		n++
		errs = append(errs, validateProbePort(pr.HTTPGet.Port, p.Child("httpGet", "port"))...)
		if pr.HTTPGet.Scheme != corev1.URISchemeHTTP && pr.HTTPGet.Scheme != corev1.URISchemeHTTPS {
			errs = append(errs, field.NotSupported(p.Child("httpGet", "scheme"), pr.HTTPGet.Scheme, []string{"HTTP", "HTTPS"}))
		}
	}
	if pr.TCPSocket != nil {
		n++
		errs = append(errs, validateProbePort(pr.TCPSocket.Port, p.Child("tcpSocket", "port"))...)
	}
	if n != 1 {
		errs = append(errs, field.Required(p, "must specify exactly one handler: exec, httpGet or tcpSocket"))
	}
	for _, f := range []struct {
		name string
		v    int32
		min  int32
	}{{"initialDelaySeconds", pr.InitialDelaySeconds, 0}, {"timeoutSeconds", pr.TimeoutSeconds, 1},
		{"periodSeconds", pr.PeriodSeconds, 1}, {"successThreshold", pr.SuccessThreshold, 1}, {"failureThreshold", pr.FailureThreshold, 1}} {
		if f.v < f.min {
			errs = append(errs, field.Invalid(p.Child(f.name), f.v, fmt.Sprintf("must be >= %d", f.min)))
		}
	}
	if mustSucceedOnce && pr.SuccessThreshold != 1 {
		errs = append(errs, field.Invalid(p.Child("successThreshold"), pr.SuccessThreshold, "must be 1"))
	}
	return errs
}

func validateProbePort(port intstr.IntOrString, p *field.Path) field.ErrorList {
	if port.Type == intstr.String {
		var errs field.ErrorList
		for _, msg := range validation.IsValidPortName(port.StrVal) {
			errs = append(errs, field.Invalid(p, port.StrVal, msg))
		}
		return errs
	}
	return validatePortNumber(port.IntVal, p)
}

func validateTolerations(ts []corev1.Toleration, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	for i, t := range ts {
		tp := p.Index(i)
		if t.Key != "" {
			errs = append(errs, validateQualifiedName(t.Key, tp.Child("key"))...)
		}
		switch t.Operator {
		case corev1.TolerationOpEqual:
			if t.Key == "" {
				errs = append(errs, field.Invalid(tp.Child("operator"), t.Operator, "operator must be Exists when `key` is empty"))
			}
		case corev1.TolerationOpExists:
			if t.Value != "" {
				errs = append(errs, field.Invalid(tp.Child("value"), t.Value, "value must be empty when `operator` is 'Exists'"))
			}
		default:
			errs = append(errs, field.NotSupported(tp.Child("operator"), t.Operator, []string{"Equal", "Exists"}))
		}
		if t.Effect != "" {
			switch t.Effect {
			case corev1.TaintEffectNoSchedule, corev1.TaintEffectPreferNoSchedule, corev1.TaintEffectNoExecute:
			default:
				errs = append(errs, field.NotSupported(tp.Child("effect"), t.Effect, taintEffects))
			}
		}
		if t.TolerationSeconds != nil && t.Effect != corev1.TaintEffectNoExecute {
			errs = append(errs, field.Invalid(tp.Child("effect"), t.Effect, "effect must be 'NoExecute' when `tolerationSeconds` is set"))
		}
	}
	return errs
}

func validatePodUpdate(pod, old *corev1.Pod) field.ErrorList {
	// As in Kubernetes, a pod's spec is fixed once created except for its
	// images, its deadline and added tolerations.
	spec := old.Spec.DeepCopy()
	for i := range spec.Containers {
		if i < len(pod.Spec.Containers) {
			spec.Containers[i].Image = pod.Spec.Containers[i].Image
		}
	}
	for i := range spec.InitContainers {
		if i < len(pod.Spec.InitContainers) {
			spec.InitContainers[i].Image = pod.Spec.InitContainers[i].Image
		}
	}
	spec.ActiveDeadlineSeconds = pod.Spec.ActiveDeadlineSeconds
	if len(pod.Spec.Tolerations) >= len(old.Spec.Tolerations) &&
		apiequality.Semantic.DeepEqual(pod.Spec.Tolerations[:len(old.Spec.Tolerations)], old.Spec.Tolerations) {
		spec.Tolerations = pod.Spec.Tolerations
	}
	if !apiequality.Semantic.DeepEqual(spec, &pod.Spec) {
		return field.ErrorList{field.Forbidden(field.NewPath("spec"),
			"pod updates may not change fields other than spec.containers[*].image, spec.initContainers[*].image, spec.activeDeadlineSeconds or spec.tolerations (only additions)")}
	}
	return nil
}

func validateDNSLabel(v string, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	for _, msg := range validation.IsDNS1123Label(v) {
		errs = append(errs, field.Invalid(p, v, msg))
	}
	return errs
}
