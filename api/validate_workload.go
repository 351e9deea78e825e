package api

import (
	"strconv"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	metav1validation "k8s.io/apimachinery/pkg/apis/meta/v1/validation"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// validatePodTemplate checks a controller's selector against its pod
// template and the template's spec; controllers only run pods that restart.
func validatePodTemplate(sel *metav1.LabelSelector, t *corev1.PodTemplateSpec, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	selPath := p.Child("selector")
	tp := p.Child("template")
	errs = append(errs, metav1validation.ValidateLabels(t.Labels, tp.Child("metadata", "labels"))...)
	if sel == nil {
		errs = append(errs, field.Required(selPath, ""))
	} else {
		errs = append(errs, metav1validation.ValidateLabelSelector(sel, metav1validation.LabelSelectorValidationOptions{}, selPath)...)
		if len(sel.MatchLabels)+len(sel.MatchExpressions) == 0 {
			errs = append(errs, field.Invalid(selPath, sel, "empty selector is invalid for deployment"))
		} else if s, err := metav1.LabelSelectorAsSelector(sel); err == nil && !s.Matches(labels.Set(t.Labels)) {
			errs = append(errs, field.Invalid(tp.Child("metadata", "labels"), t.Labels, "`selector` does not match template `labels`"))
		}
	}
	errs = append(errs, validatePodSpec(&t.Spec, tp.Child("spec"))...)
	if t.Spec.RestartPolicy != corev1.RestartPolicyAlways {
		errs = append(errs, field.NotSupported(tp.Child("spec", "restartPolicy"), t.Spec.RestartPolicy, []string{"Always"}))
	}
	return errs
}

func validateReplicas(r *int32, p *field.Path) field.ErrorList {
	if r != nil && *r < 0 {
		return field.ErrorList{field.Invalid(p, *r, "must be greater than or equal to 0")}
	}
	return nil
}

func validateSelectorUnchanged(sel, old *metav1.LabelSelector, p *field.Path) field.ErrorList {
	if !apiequality.Semantic.DeepEqual(sel, old) {
		return field.ErrorList{field.Invalid(p, sel, "field is immutable")}
	}
	return nil
}

func validateReplicaSet(rs, old *appsv1.ReplicaSet) field.ErrorList {
	sp := field.NewPath("spec")
	errs := validateReplicas(rs.Spec.Replicas, sp.Child("replicas"))
	errs = append(errs, validateNonNegative(int64(rs.Spec.MinReadySeconds), sp.Child("minReadySeconds"))...)
	errs = append(errs, validatePodTemplate(rs.Spec.Selector, &rs.Spec.Template, sp)...)
	if old != nil {
		errs = append(errs, validateSelectorUnchanged(rs.Spec.Selector, old.Spec.Selector, sp.Child("selector"))...)
	}
	return errs
}

func validateDeployment(d, old *appsv1.Deployment) field.ErrorList {
	sp := field.NewPath("spec")
	errs := validateReplicas(d.Spec.Replicas, sp.Child("replicas"))
	errs = append(errs, validateNonNegative(int64(d.Spec.MinReadySeconds), sp.Child("minReadySeconds"))...)
	errs = append(errs, validatePodTemplate(d.Spec.Selector, &d.Spec.Template, sp)...)
	strat := sp.Child("strategy")
	switch d.Spec.Strategy.Type {
	case appsv1.RecreateDeploymentStrategyType:
		if d.Spec.Strategy.RollingUpdate != nil {
			errs = append(errs, field.Forbidden(strat.Child("rollingUpdate"), "may not be specified when strategy `type` is 'Recreate'"))
		}
	case appsv1.RollingUpdateDeploymentStrategyType:
		if ru := d.Spec.Strategy.RollingUpdate; ru != nil {
			errs = append(errs, validateSurgeAndUnavailable(ru.MaxSurge, ru.MaxUnavailable, strat.Child("rollingUpdate"))...)
		}
	default:
		errs = append(errs, field.NotSupported(strat.Child("type"), d.Spec.Strategy.Type, []string{"RollingUpdate", "Recreate"}))
	}
	if l := d.Spec.RevisionHistoryLimit; l != nil {
		errs = append(errs, validateNonNegative(int64(*l), sp.Child("revisionHistoryLimit"))...)
	}
	if pd := d.Spec.ProgressDeadlineSeconds; pd != nil && *pd <= d.Spec.MinReadySeconds {
		errs = append(errs, field.Invalid(sp.Child("progressDeadlineSeconds"), *pd, "must be greater than minReadySeconds"))
	}
	if old != nil {
		errs = append(errs, validateSelectorUnchanged(d.Spec.Selector, old.Spec.Selector, sp.Child("selector"))...)
	}
	return errs
}

func validateDaemonSet(ds, old *appsv1.DaemonSet) field.ErrorList {
	sp := field.NewPath("spec")
	errs := validatePodTemplate(ds.Spec.Selector, &ds.Spec.Template, sp)
	errs = append(errs, validateNonNegative(int64(ds.Spec.MinReadySeconds), sp.Child("minReadySeconds"))...)
	strat := sp.Child("updateStrategy")
	switch ds.Spec.UpdateStrategy.Type {
	case appsv1.OnDeleteDaemonSetStrategyType:
		if ds.Spec.UpdateStrategy.RollingUpdate != nil {
			errs = append(errs, field.Forbidden(strat.Child("rollingUpdate"), "may not be specified when strategy `type` is 'OnDelete'"))
		}
	case appsv1.RollingUpdateDaemonSetStrategyType:
		if ru := ds.Spec.UpdateStrategy.RollingUpdate; ru != nil {
			errs = append(errs, validateSurgeAndUnavailable(ru.MaxSurge, ru.MaxUnavailable, strat.Child("rollingUpdate"))...)
		}
	default:
		errs = append(errs, field.NotSupported(strat.Child("type"), ds.Spec.UpdateStrategy.Type, []string{"RollingUpdate", "OnDelete"}))
	}
	if l := ds.Spec.RevisionHistoryLimit; l != nil {
		errs = append(errs, validateNonNegative(int64(*l), sp.Child("revisionHistoryLimit"))...)
	}
	if old != nil {
		errs = append(errs, validateSelectorUnchanged(ds.Spec.Selector, old.Spec.Selector, sp.Child("selector"))...)
	}
	return errs
}

// validateSurgeAndUnavailable applies Kubernetes' rules: each is a
// non-negative integer or a percentage, maxUnavailable is at most 100%, and
// they may not both be zero (a rollout could never make progress).
func validateSurgeAndUnavailable(surge, unavailable *intstr.IntOrString, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	errs = append(errs, validateIntOrPercent(surge, p.Child("maxSurge"))...)
	errs = append(errs, validateIntOrPercent(unavailable, p.Child("maxUnavailable"))...)
	if unavailable != nil && unavailable.Type == intstr.String {
		if v, err := intstr.GetScaledValueFromIntOrPercent(unavailable, 100, false); err == nil && v > 100 {
			errs = append(errs, field.Invalid(p.Child("maxUnavailable"), unavailable.String(), "must not be greater than 100%"))
		}
	}
	if len(errs) == 0 && isZeroIntOrPercent(surge) && isZeroIntOrPercent(unavailable) {
		errs = append(errs, field.Invalid(p.Child("maxUnavailable"), unavailable.String(), "may not be 0 when `maxSurge` is 0"))
	}
	return errs
}

func validateIntOrPercent(v *intstr.IntOrString, p *field.Path) field.ErrorList {
	if v == nil {
		return nil
	}
	if v.Type == intstr.String {
		var errs field.ErrorList
		for _, msg := range validation.IsValidPercent(v.StrVal) {
			errs = append(errs, field.Invalid(p, v.StrVal, msg))
		}
		return errs
	}
	return validateNonNegative(int64(v.IntVal), p)
}

func isZeroIntOrPercent(v *intstr.IntOrString) bool {
	if v == nil {
		return true
	}
	if v.Type == intstr.String {
		// "00%" is as zero as "0%" (Kubernetes parses the number).
		n, err := strconv.Atoi(strings.TrimSuffix(v.StrVal, "%"))
		return err == nil && n == 0
	}
	return v.IntVal == 0
}

func validateNonNegative(v int64, p *field.Path) field.ErrorList {
	if v < 0 {
		return field.ErrorList{field.Invalid(p, v, "must be greater than or equal to 0")}
	}
	return nil
}
