package agent

import (
	"fmt"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	schedulingv1 "k8s.io/api/scheduling/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"orch.dev/orch/api"
	"orch.dev/orch/fsm"
)

// admit applies what Kubernetes' admission plugins would before an object
// is stored; today: priority classes. A pod gets the priority (and
// preemption policy) of its class, or of the cluster's global default
// class; a class that does not exist is an error on the field naming it,
// also in a controller's pod template (so a bad Deployment is refused up
// front instead of failing later for every pod).
func admit(k *api.Kind, obj api.Object, view *fsm.View, tolerationSeconds int64) field.ErrorList {
	switch o := obj.(type) {
	case *corev1.Pod:
		addDefaultTolerations(&o.Spec, tolerationSeconds)
		return admitPriority(&o.Spec, field.NewPath("spec"), view, true)
	case *appsv1.Deployment:
		return admitPriority(&o.Spec.Template.Spec, field.NewPath("spec", "template", "spec"), view, false)
	case *appsv1.ReplicaSet:
		return admitPriority(&o.Spec.Template.Spec, field.NewPath("spec", "template", "spec"), view, false)
	case *appsv1.DaemonSet:
		return admitPriority(&o.Spec.Template.Spec, field.NewPath("spec", "template", "spec"), view, false)
	}
	return nil
}

func admitPriority(spec *corev1.PodSpec, p *field.Path, view *fsm.View, resolve bool) field.ErrorList {
	var pc *schedulingv1.PriorityClass
	if name := spec.PriorityClassName; name != "" {
		rec := view.Get(api.PriorityClass, "", name)
		if rec == nil {
			return field.ErrorList{field.NotFound(p.Child("priorityClassName"), name)}
		}
		pc = rec.Obj.(*schedulingv1.PriorityClass)
	} else {
		pc = globalDefaultClass(view)
	}
	if !resolve {
		return nil
	}
	value, policy := int32(0), corev1.PreemptLowerPriority
	if pc != nil {
		value = pc.Value
		if pc.PreemptionPolicy != nil {
			policy = *pc.PreemptionPolicy
		}
	}
	if spec.Priority != nil && *spec.Priority != value {
		return field.ErrorList{field.Forbidden(p.Child("priority"),
			fmt.Sprintf("must not be set: it is %d, computed from the priority class", value))}
	}
	spec.Priority = &value
	spec.PreemptionPolicy = &policy
	return nil
}

// globalDefaultClass is the class with globalDefault set (the highest
// value if, against the rules, several are).
func globalDefaultClass(view *fsm.View) *schedulingv1.PriorityClass {
	var best *schedulingv1.PriorityClass
	view.List(api.PriorityClass, "", func(r *fsm.Record) bool {
		pc := r.Obj.(*schedulingv1.PriorityClass)
		if pc.GlobalDefault && (best == nil || pc.Value > best.Value) {
			best = pc
		}
		return true
	})
	return best
}

// addDefaultTolerations gives a pod that has none of its own the
// tolerations Kubernetes' DefaultTolerationSeconds admission adds, with
// orch's (much shorter) edge default: a pod stays on a not-ready or
// unreachable node this long before it is evicted and replaced.
func addDefaultTolerations(spec *corev1.PodSpec, seconds int64) {
	for _, key := range []string{corev1.TaintNodeNotReady, corev1.TaintNodeUnreachable} {
		has := false
		for _, t := range spec.Tolerations {
			if (t.Key == key || t.Key == "") && (t.Effect == corev1.TaintEffectNoExecute || t.Effect == "") {
				has = true
			}
		}
		if !has {
			s := seconds
			spec.Tolerations = append(spec.Tolerations, corev1.Toleration{Key: key, Operator: corev1.TolerationOpExists,
				Effect: corev1.TaintEffectNoExecute, TolerationSeconds: &s})
		}
	}
}
