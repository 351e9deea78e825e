package api

import (
	"fmt"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	schedulingv1 "k8s.io/api/scheduling/v1"
	apimachineryvalidation "k8s.io/apimachinery/pkg/api/validation"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// Validate checks obj, and for an update (old != nil) the change from old,
// returning every problem with its field path. It runs on defaulted objects.
func Validate(k *Kind, obj, old Object) field.ErrorList {
	errs := validateMeta(k, obj, old)
	errs = append(errs, ValidateSupportedFields(k, obj)...)
	switch o := obj.(type) {
	case *corev1.Namespace:
	case *corev1.ConfigMap:
		errs = append(errs, validateConfigMap(o, oldAs[*corev1.ConfigMap](old))...)
	case *corev1.Secret:
		errs = append(errs, validateSecret(o, oldAs[*corev1.Secret](old))...)
	case *corev1.Pod:
		errs = append(errs, validatePodSpec(&o.Spec, field.NewPath("spec"))...)
		if prev := oldAs[*corev1.Pod](old); prev != nil {
			errs = append(errs, validatePodUpdate(o, prev)...)
		}
	case *appsv1.ReplicaSet:
		errs = append(errs, validateReplicaSet(o, oldAs[*appsv1.ReplicaSet](old))...)
	case *appsv1.Deployment:
		errs = append(errs, validateDeployment(o, oldAs[*appsv1.Deployment](old))...)
	case *appsv1.DaemonSet:
		errs = append(errs, validateDaemonSet(o, oldAs[*appsv1.DaemonSet](old))...)
	case *corev1.Service:
		errs = append(errs, validateService(o, oldAs[*corev1.Service](old))...)
	case *corev1.Endpoints:
		errs = append(errs, validateEndpoints(o)...)
	case *corev1.Node:
		errs = append(errs, validateNode(o)...)
	case *corev1.Event:
		errs = append(errs, validateEvent(o)...)
	case *schedulingv1.PriorityClass:
		errs = append(errs, validatePriorityClass(o, oldAs[*schedulingv1.PriorityClass](old))...)
	default:
		errs = append(errs, field.InternalError(nil, fmt.Errorf("no validation for %T", obj)))
	}
	return errs
}

func oldAs[T Object](old Object) T {
	var zero T
	if old == nil {
		return zero
	}
	t, _ := old.(T)
	return t
}

// nameRules gives the name format of each kind (as Kubernetes does).
func nameRule(k *Kind) apimachineryvalidation.ValidateNameFunc {
	switch k {
	case Namespace, Service:
		return apimachineryvalidation.NameIsDNSLabel
	}
	return apimachineryvalidation.NameIsDNSSubdomain
}

func validateMeta(k *Kind, obj, old Object) field.ErrorList {
	metaPath := field.NewPath("metadata")
	errs := apimachineryvalidation.ValidateObjectMetaAccessor(obj, k.Namespaced, nameRule(k), metaPath)
	if old != nil {
		for _, err := range apimachineryvalidation.ValidateObjectMetaAccessorUpdate(obj, old, metaPath) {
			// An update without a resourceVersion is unconditional
			// (DESIGN.md, as in Kubernetes, whose storage layer fills the
			// version in before validating).
			if err.Field == "metadata.resourceVersion" && obj.GetResourceVersion() == "" {
				continue
			}
			errs = append(errs, err)
		}
	}
	return errs
}

func validateConfigMap(cm, old *corev1.ConfigMap) field.ErrorList {
	var errs field.ErrorList
	total := 0
	for key, v := range cm.Data {
		errs = append(errs, validateDataKey(key, field.NewPath("data").Key(key))...)
		total += len(v)
		if _, dup := cm.BinaryData[key]; dup {
			errs = append(errs, field.Duplicate(field.NewPath("binaryData").Key(key), key))
		}
	}
	for key, v := range cm.BinaryData {
		errs = append(errs, validateDataKey(key, field.NewPath("binaryData").Key(key))...)
		total += len(v)
	}
	if total > MaxObjectBytes {
		errs = append(errs, field.TooLong(field.NewPath("data"), "", MaxObjectBytes))
	}
	if old != nil && old.Immutable != nil && *old.Immutable {
		if !equalStringMaps(cm.Data, old.Data) || !equalByteMaps(cm.BinaryData, old.BinaryData) {
			errs = append(errs, field.Forbidden(field.NewPath("data"), "field is immutable when `immutable` is set"))
		}
		if cm.Immutable == nil || !*cm.Immutable {
			errs = append(errs, field.Forbidden(field.NewPath("immutable"), "field is immutable when `immutable` is set"))
		}
	}
	return errs
}

func validateSecret(s, old *corev1.Secret) field.ErrorList {
	var errs field.ErrorList
	total := 0
	for key, v := range s.Data {
		// Only the key is ever reported: a Secret's values never appear in errors.
		errs = append(errs, validateDataKey(key, field.NewPath("data").Key(key))...)
		total += len(v)
	}
	if total > MaxObjectBytes {
		errs = append(errs, field.TooLong(field.NewPath("data"), "", MaxObjectBytes))
	}
	switch s.Type {
	case corev1.SecretTypeOpaque, corev1.SecretTypeDockerConfigJson, corev1.SecretTypeTLS, corev1.SecretTypeBasicAuth, corev1.SecretTypeSSHAuth:
	case "orch.dev/token", "orch.dev/cluster-ca", "orch.dev/gossip-keyring": // orch's own records in orch-system (only admins and servers reach it)
	default:
		errs = append(errs, field.NotSupported(field.NewPath("type"), s.Type, []string{
			string(corev1.SecretTypeOpaque), string(corev1.SecretTypeDockerConfigJson), string(corev1.SecretTypeTLS),
			string(corev1.SecretTypeBasicAuth), string(corev1.SecretTypeSSHAuth)}))
	}
	if old != nil {
		if s.Type != old.Type {
			errs = append(errs, field.Invalid(field.NewPath("type"), s.Type, "field is immutable"))
		}
		if old.Immutable != nil && *old.Immutable && !equalByteMaps(s.Data, old.Data) {
			errs = append(errs, field.Forbidden(field.NewPath("data"), "field is immutable when `immutable` is set"))
		}
	}
	return errs
}

func validateDataKey(key string, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	for _, msg := range validation.IsConfigMapKey(key) {
		errs = append(errs, field.Invalid(p, key, msg))
	}
	return errs
}

func validateNode(n *corev1.Node) field.ErrorList {
	var errs field.ErrorList
	if n.Spec.PodCIDR != "" {
		errs = append(errs, validation.IsValidCIDR(field.NewPath("spec", "podCIDR"), n.Spec.PodCIDR)...)
	}
	for i, c := range n.Spec.PodCIDRs {
		errs = append(errs, validation.IsValidCIDR(field.NewPath("spec", "podCIDRs").Index(i), c)...)
	}
	errs = append(errs, validateTaints(n.Spec.Taints, field.NewPath("spec", "taints"))...)
	for i, a := range n.Status.Addresses {
		if a.Type == corev1.NodeInternalIP || a.Type == corev1.NodeExternalIP {
			errs = append(errs, validation.IsValidIP(field.NewPath("status", "addresses").Index(i).Child("address"), a.Address)...)
		}
	}
	for name, q := range n.Status.Capacity {
		if q.Sign() < 0 {
			errs = append(errs, field.Invalid(field.NewPath("status", "capacity").Key(string(name)), q.String(), "must be non-negative"))
		}
	}
	return errs
}

var taintEffects = []string{string(corev1.TaintEffectNoSchedule), string(corev1.TaintEffectPreferNoSchedule), string(corev1.TaintEffectNoExecute)}

func validateTaints(taints []corev1.Taint, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	seen := map[string]bool{}
	for i, t := range taints {
		tp := p.Index(i)
		errs = append(errs, validateQualifiedName(t.Key, tp.Child("key"))...)
		if t.Value != "" {
			for _, msg := range validation.IsValidLabelValue(t.Value) {
				errs = append(errs, field.Invalid(tp.Child("value"), t.Value, msg))
			}
		}
		switch t.Effect {
		case corev1.TaintEffectNoSchedule, corev1.TaintEffectPreferNoSchedule, corev1.TaintEffectNoExecute:
		default:
			errs = append(errs, field.NotSupported(tp.Child("effect"), t.Effect, taintEffects))
		}
		if id := t.Key + "/" + string(t.Effect); seen[id] {
			errs = append(errs, field.Duplicate(tp, t.Key+":"+string(t.Effect)))
		} else {
			seen[id] = true
		}
	}
	return errs
}

func validateQualifiedName(v string, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	for _, msg := range validation.IsQualifiedName(v) {
		errs = append(errs, field.Invalid(p, v, msg))
	}
	return errs
}

func validateEvent(e *corev1.Event) field.ErrorList {
	var errs field.ErrorList
	if e.InvolvedObject.Kind == "" {
		errs = append(errs, field.Required(field.NewPath("involvedObject", "kind"), ""))
	}
	if e.InvolvedObject.Namespace != "" && e.InvolvedObject.Namespace != e.Namespace {
		errs = append(errs, field.Invalid(field.NewPath("involvedObject", "namespace"), e.InvolvedObject.Namespace, "does not match event.namespace"))
	}
	if e.Type != "" && e.Type != corev1.EventTypeNormal && e.Type != corev1.EventTypeWarning {
		errs = append(errs, field.NotSupported(field.NewPath("type"), e.Type, []string{corev1.EventTypeNormal, corev1.EventTypeWarning}))
	}
	if len(e.Message) > 4096 {
		errs = append(errs, field.TooLong(field.NewPath("message"), "", 4096))
	}
	return errs
}

func validateEndpoints(ep *corev1.Endpoints) field.ErrorList {
	var errs field.ErrorList
	for i, ss := range ep.Subsets {
		sp := field.NewPath("subsets").Index(i)
		for j, a := range ss.Addresses {
			errs = append(errs, validation.IsValidIP(sp.Child("addresses").Index(j).Child("ip"), a.IP)...)
		}
		for j, a := range ss.NotReadyAddresses {
			errs = append(errs, validation.IsValidIP(sp.Child("notReadyAddresses").Index(j).Child("ip"), a.IP)...)
		}
		for j, port := range ss.Ports {
			pp := sp.Child("ports").Index(j)
			errs = append(errs, validatePortNumber(port.Port, pp.Child("port"))...)
			errs = append(errs, validateProtocol(port.Protocol, pp.Child("protocol"))...)
		}
	}
	return errs
}

func validatePortNumber(port int32, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	for _, msg := range validation.IsValidPortNum(int(port)) {
		errs = append(errs, field.Invalid(p, port, msg))
	}
	return errs
}

func validateProtocol(proto corev1.Protocol, p *field.Path) field.ErrorList {
	if proto == corev1.ProtocolTCP || proto == corev1.ProtocolUDP {
		return nil
	}
	return field.ErrorList{field.NotSupported(p, proto, []string{string(corev1.ProtocolTCP), string(corev1.ProtocolUDP)})}
}

func equalStringMaps(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

func equalByteMaps(a, b map[string][]byte) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || string(w) != string(v) {
			return false
		}
	}
	return true
}
