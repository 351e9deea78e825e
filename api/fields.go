package api

import (
	"fmt"
	"strconv"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/fields"
)

// FieldSet returns the fields of obj that a fieldSelector may name, as the
// Kubernetes API server supports them for each kind.
func FieldSet(obj Object) fields.Set {
	set := fields.Set{"metadata.name": obj.GetName()}
	if obj.GetNamespace() != "" {
		set["metadata.namespace"] = obj.GetNamespace()
	}
	switch o := obj.(type) {
	case *corev1.Pod:
		set["spec.nodeName"] = o.Spec.NodeName
		set["spec.restartPolicy"] = string(o.Spec.RestartPolicy)
		set["spec.schedulerName"] = o.Spec.SchedulerName
		set["status.phase"] = string(o.Status.Phase)
		set["status.podIP"] = o.Status.PodIP
		set["status.nominatedNodeName"] = o.Status.NominatedNodeName
	case *corev1.Node:
		set["spec.unschedulable"] = strconv.FormatBool(o.Spec.Unschedulable)
	case *corev1.Namespace:
		set["status.phase"] = string(o.Status.Phase)
	case *corev1.Secret:
		set["type"] = string(o.Type)
	case *corev1.Event:
		set["involvedObject.kind"] = o.InvolvedObject.Kind
		set["involvedObject.namespace"] = o.InvolvedObject.Namespace
		set["involvedObject.name"] = o.InvolvedObject.Name
		set["involvedObject.uid"] = string(o.InvolvedObject.UID)
		set["involvedObject.apiVersion"] = o.InvolvedObject.APIVersion
		set["involvedObject.resourceVersion"] = o.InvolvedObject.ResourceVersion
		set["involvedObject.fieldPath"] = o.InvolvedObject.FieldPath
		set["reason"] = o.Reason
		set["source"] = o.Source.Component
		set["type"] = o.Type
	}
	return set
}

// ParseFieldSelector parses sel and checks that every field it names is
// supported for kind k.
func ParseFieldSelector(k *Kind, sel string) (fields.Selector, error) {
	if sel == "" {
		return fields.Everything(), nil
	}
	s, err := fields.ParseSelector(sel)
	if err != nil {
		return nil, err
	}
	known := FieldSet(k.New())
	if k.Namespaced {
		known["metadata.namespace"] = ""
	}
	for _, r := range s.Requirements() {
		if _, ok := known[r.Field]; !ok {
			return nil, fmt.Errorf("field label not supported: %s", r.Field)
		}
	}
	return s, nil
}
