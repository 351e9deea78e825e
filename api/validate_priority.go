package api

import (
	"strings"

	corev1 "k8s.io/api/core/v1"
	schedulingv1 "k8s.io/api/scheduling/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// Built-in priority classes, as Kubernetes defines them. User classes may
// not go above HighestUserPriority nor use the "system-" prefix.
const (
	HighestUserPriority   = 1_000_000_000
	SystemClusterCritical = "system-cluster-critical"
	SystemNodeCritical    = "system-node-critical"
)

// SystemPriorityClasses are created in every cluster.
var SystemPriorityClasses = map[string]int32{
	SystemClusterCritical: 2_000_000_000,
	SystemNodeCritical:    2_000_001_000,
}

func validatePriorityClass(pc, old *schedulingv1.PriorityClass) field.ErrorList {
	var errs field.ErrorList
	if want, system := SystemPriorityClasses[pc.Name]; system {
		if pc.Value != want {
			errs = append(errs, field.Invalid(field.NewPath("value"), pc.Value, "a system priority class has a fixed value"))
		}
	} else {
		if strings.HasPrefix(pc.Name, "system-") {
			errs = append(errs, field.Invalid(field.NewPath("metadata", "name"), pc.Name, "the 'system-' prefix is reserved"))
		}
		if pc.Value > HighestUserPriority {
			errs = append(errs, field.Invalid(field.NewPath("value"), pc.Value, "must not be greater than 1000000000"))
		}
	}
	if p := pc.PreemptionPolicy; p != nil && *p != corev1.PreemptLowerPriority && *p != corev1.PreemptNever {
		errs = append(errs, field.NotSupported(field.NewPath("preemptionPolicy"), *p, []string{"PreemptLowerPriority", "Never"}))
	}
	if old != nil {
		if pc.Value != old.Value {
			errs = append(errs, field.Invalid(field.NewPath("value"), pc.Value, "field is immutable"))
		}
		if !equalPolicy(pc.PreemptionPolicy, old.PreemptionPolicy) {
			errs = append(errs, field.Invalid(field.NewPath("preemptionPolicy"), pc.PreemptionPolicy, "field is immutable"))
		}
	}
	return errs
}

func equalPolicy(a, b *corev1.PreemptionPolicy) bool {
	if a == nil || b == nil {
		return a == b
	}
	return *a == *b
}
