package api

import (
	corev1 "k8s.io/api/core/v1"
	metav1validation "k8s.io/apimachinery/pkg/apis/meta/v1/validation"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// NodePort range, as Kubernetes' default --service-node-port-range.
const (
	NodePortMin = 30000
	NodePortMax = 32767
)

func validateService(s, old *corev1.Service) field.ErrorList {
	var errs field.ErrorList
	sp := field.NewPath("spec")
	headless := s.Spec.ClusterIP == corev1.ClusterIPNone
	switch s.Spec.Type {
	case corev1.ServiceTypeClusterIP:
	case corev1.ServiceTypeNodePort:
		if headless {
			errs = append(errs, field.Invalid(sp.Child("clusterIP"), s.Spec.ClusterIP, "may not be set to 'None' for NodePort services"))
		}
	default:
		errs = append(errs, field.NotSupported(sp.Child("type"), s.Spec.Type, []string{"ClusterIP", "NodePort"}))
	}
	if s.Spec.ClusterIP != "" && !headless {
		errs = append(errs, validation.IsValidIP(sp.Child("clusterIP"), s.Spec.ClusterIP)...)
	}
	if len(s.Spec.ClusterIPs) > 0 && s.Spec.ClusterIP != "" && s.Spec.ClusterIPs[0] != s.Spec.ClusterIP {
		errs = append(errs, field.Invalid(sp.Child("clusterIPs").Index(0), s.Spec.ClusterIPs[0], "must match `clusterIP`"))
	}
	if len(s.Spec.Ports) == 0 && !headless {
		errs = append(errs, field.Required(sp.Child("ports"), ""))
	}
	names := sets.New[string]()
	for i, port := range s.Spec.Ports {
		pp := sp.Child("ports").Index(i)
		if len(s.Spec.Ports) > 1 && port.Name == "" {
			errs = append(errs, field.Required(pp.Child("name"), "when multiple ports are specified, each must be named"))
		}
		if port.Name != "" {
			errs = append(errs, validateDNSLabel(port.Name, pp.Child("name"))...)
			if names.Has(port.Name) {
				errs = append(errs, field.Duplicate(pp.Child("name"), port.Name))
			}
			names.Insert(port.Name)
		}
		errs = append(errs, validatePortNumber(port.Port, pp.Child("port"))...)
		errs = append(errs, validateProtocol(port.Protocol, pp.Child("protocol"))...)
		if port.TargetPort.Type == intstr.String {
			for _, msg := range validation.IsValidPortName(port.TargetPort.StrVal) {
				errs = append(errs, field.Invalid(pp.Child("targetPort"), port.TargetPort.StrVal, msg))
			}
		} else {
			errs = append(errs, validatePortNumber(port.TargetPort.IntVal, pp.Child("targetPort"))...)
		}
		if port.NodePort != 0 {
			if s.Spec.Type != corev1.ServiceTypeNodePort {
				errs = append(errs, field.Forbidden(pp.Child("nodePort"), "may not be used when `type` is 'ClusterIP'"))
			} else if port.NodePort < NodePortMin || port.NodePort > NodePortMax {
				errs = append(errs, field.Invalid(pp.Child("nodePort"), port.NodePort, "provided port is not in the valid range. The range of valid ports is 30000-32767"))
			}
		}
	}
	errs = append(errs, metav1validation.ValidateLabels(s.Spec.Selector, sp.Child("selector"))...)
	switch s.Spec.SessionAffinity {
	case corev1.ServiceAffinityNone:
		if s.Spec.SessionAffinityConfig != nil {
			errs = append(errs, field.Forbidden(sp.Child("sessionAffinityConfig"), "must not be set when `sessionAffinity` is None"))
		}
	case corev1.ServiceAffinityClientIP:
		if c := s.Spec.SessionAffinityConfig; c != nil && c.ClientIP != nil && c.ClientIP.TimeoutSeconds != nil {
			if t := *c.ClientIP.TimeoutSeconds; t <= 0 || t > 86400 {
				errs = append(errs, field.Invalid(sp.Child("sessionAffinityConfig", "clientIP", "timeoutSeconds"), t, "must be greater than 0 and less than 86400"))
			}
		}
	default:
		errs = append(errs, field.NotSupported(sp.Child("sessionAffinity"), s.Spec.SessionAffinity, []string{"None", "ClientIP"}))
	}
	if old != nil && old.Spec.ClusterIP != "" && s.Spec.ClusterIP != "" && s.Spec.ClusterIP != old.Spec.ClusterIP {
		errs = append(errs, field.Invalid(sp.Child("clusterIP"), s.Spec.ClusterIP, "field is immutable"))
	}
	return errs
}
