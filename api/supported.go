package api

import (
	"fmt"
	"sort"
	"strings"

	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// The allowlist of fields orch implements, per kind. A path names a field;
// everything below a listed path is allowed ("spec.nodeSelector" allows any
// map). "[]" stands for every element of a list. Any other field that is set
// to a non-zero value is refused, so a manifest never carries a field that
// looks accepted but changes nothing.

var metadataFields = []string{
	"metadata.name", "metadata.generateName", "metadata.namespace", "metadata.labels",
	"metadata.annotations", "metadata.uid", "metadata.resourceVersion", "metadata.generation",
	"metadata.creationTimestamp", "metadata.deletionTimestamp", "metadata.deletionGracePeriodSeconds",
	"metadata.ownerReferences", "metadata.finalizers",
}

var probeFields = []string{
	"exec", "httpGet.path", "httpGet.port", "httpGet.host", "httpGet.scheme", "httpGet.httpHeaders",
	"tcpSocket", "initialDelaySeconds", "periodSeconds", "timeoutSeconds", "successThreshold",
	"failureThreshold",
}

var containerFields = append([]string{
	"name", "image", "imagePullPolicy", "command", "args", "workingDir",
	"ports[].name", "ports[].containerPort", "ports[].protocol", "ports[].hostPort", "ports[].hostIP",
	"env[].name", "env[].value", "env[].valueFrom.configMapKeyRef", "env[].valueFrom.secretKeyRef",
	"env[].valueFrom.fieldRef", "envFrom[].configMapRef", "envFrom[].secretRef", "envFrom[].prefix",
	"resources.limits", "resources.requests",
	"volumeMounts[].name", "volumeMounts[].mountPath", "volumeMounts[].readOnly", "volumeMounts[].subPath",
	"terminationMessagePath", "terminationMessagePolicy",
}, concat(prefixed("livenessProbe.", probeFields), prefixed("readinessProbe.", probeFields), prefixed("startupProbe.", probeFields))...)

var podSpecFields = concat(
	prefixed("containers[].", containerFields),
	prefixed("initContainers[].", containerFields),
	[]string{
		"volumes[].name", "volumes[].emptyDir.medium", "volumes[].emptyDir.sizeLimit",
		"volumes[].hostPath.path", "volumes[].hostPath.type",
		"volumes[].configMap.name", "volumes[].configMap.items", "volumes[].configMap.defaultMode", "volumes[].configMap.optional",
		"volumes[].secret.secretName", "volumes[].secret.items", "volumes[].secret.defaultMode", "volumes[].secret.optional",
		"restartPolicy", "terminationGracePeriodSeconds", "activeDeadlineSeconds", "dnsPolicy",
		"nodeSelector", "nodeName", "hostname", "subdomain", "schedulerName",
		"affinity.nodeAffinity", "affinity.podAffinity", "affinity.podAntiAffinity",
		"tolerations", "priorityClassName", "priority", "topologySpreadConstraints",
	})

var podTemplateFields = concat(
	[]string{"metadata.name", "metadata.labels", "metadata.annotations", "metadata.creationTimestamp"},
	prefixed("spec.", podSpecFields))

var supportedFields = map[*Kind][]string{
	Namespace: {"spec.finalizers", "status"},
	ConfigMap: {"data", "binaryData", "immutable"},
	Secret:    {"data", "stringData", "type", "immutable"},
	Pod:       concat(prefixed("spec.", podSpecFields), []string{"status"}),
	ReplicaSet: concat([]string{"spec.replicas", "spec.selector", "spec.minReadySeconds", "status"},
		prefixed("spec.template.", podTemplateFields)),
	Deployment: concat([]string{"spec.replicas", "spec.selector", "spec.minReadySeconds",
		"spec.strategy.type", "spec.strategy.rollingUpdate.maxSurge", "spec.strategy.rollingUpdate.maxUnavailable",
		"spec.revisionHistoryLimit", "spec.progressDeadlineSeconds", "spec.paused", "status"},
		prefixed("spec.template.", podTemplateFields)),
	DaemonSet: concat([]string{"spec.selector", "spec.minReadySeconds", "spec.revisionHistoryLimit",
		"spec.updateStrategy.type", "spec.updateStrategy.rollingUpdate.maxUnavailable",
		"spec.updateStrategy.rollingUpdate.maxSurge", "status"},
		prefixed("spec.template.", podTemplateFields)),
	Service: {"spec.type", "spec.selector", "spec.clusterIP", "spec.clusterIPs",
		"spec.ports[].name", "spec.ports[].protocol", "spec.ports[].port", "spec.ports[].targetPort",
		"spec.ports[].nodePort", "spec.ports[].appProtocol",
		"spec.sessionAffinity", "spec.sessionAffinityConfig.clientIP.timeoutSeconds",
		"spec.ipFamilies", "spec.ipFamilyPolicy", "spec.internalTrafficPolicy", "spec.externalTrafficPolicy",
		"spec.publishNotReadyAddresses", "status"},
	Endpoints: {"subsets"},
	Node:      {"spec.podCIDR", "spec.podCIDRs", "spec.unschedulable", "spec.taints", "spec.providerID", "status"},
	Event: {"involvedObject", "reason", "message", "source", "firstTimestamp", "lastTimestamp", "count",
		"type", "eventTime", "series", "action", "related", "reportingComponent", "reportingInstance"},
}

// allowTree is a parsed allowlist: a node with leaf=true allows its subtree.
type allowTree struct {
	leaf     bool
	children map[string]*allowTree
}

var allowTrees = map[*Kind]*allowTree{}

func init() {
	for k, paths := range supportedFields {
		root := &allowTree{children: map[string]*allowTree{}}
		for _, p := range append(append([]string{}, metadataFields...), paths...) {
			n := root
			for _, seg := range pathSegments(p) {
				c := n.children[seg]
				if c == nil {
					c = &allowTree{children: map[string]*allowTree{}}
					n.children[seg] = c
				}
				n = c
			}
			n.leaf = true
		}
		// apiVersion and kind are always allowed at the top level.
		root.children["apiVersion"] = &allowTree{leaf: true}
		root.children["kind"] = &allowTree{leaf: true}
		allowTrees[k] = root
	}
}

// pathSegments splits "spec.containers[].name" into spec, containers, [], name.
func pathSegments(p string) []string {
	var out []string
	for _, seg := range strings.Split(p, ".") {
		if name, ok := strings.CutSuffix(seg, "[]"); ok {
			out = append(out, name, "[]")
			continue
		}
		out = append(out, seg)
	}
	return out
}

// ValidateSupportedFields refuses every field of obj that orch does not
// implement, naming its path.
func ValidateSupportedFields(k *Kind, obj Object) field.ErrorList {
	u, err := runtime.DefaultUnstructuredConverter.ToUnstructured(obj)
	if err != nil {
		return field.ErrorList{field.InternalError(nil, err)}
	}
	var errs field.ErrorList
	walkSupported(allowTrees[k], u, nil, &errs)
	return errs
}

func walkSupported(n *allowTree, v any, path *field.Path, errs *field.ErrorList) {
	if n.leaf || isZero(v) {
		return
	}
	switch t := v.(type) {
	case map[string]any:
		keys := make([]string, 0, len(t))
		for key := range t {
			keys = append(keys, key)
		}
		sort.Strings(keys)
		for _, key := range keys {
			child := childPath(path, key)
			c, ok := n.children[key]
			if !ok {
				if !isZero(t[key]) {
					*errs = append(*errs, field.Forbidden(child, "not supported by orch"))
				}
				continue
			}
			walkSupported(c, t[key], child, errs)
		}
	case []any:
		c, ok := n.children["[]"]
		if !ok {
			*errs = append(*errs, field.Forbidden(path, "not supported by orch"))
			return
		}
		for i, e := range t {
			walkSupported(c, e, path.Index(i), errs)
		}
	default:
		*errs = append(*errs, field.Forbidden(path, fmt.Sprintf("not supported by orch (value of type %T)", v)))
	}
}

func childPath(p *field.Path, key string) *field.Path {
	if p == nil {
		return field.NewPath(key)
	}
	return p.Child(key)
}

// isZero treats absent, null, empty and zero-valued fields as unset: they
// cannot change behaviour, and typed objects carry many of them.
func isZero(v any) bool {
	switch t := v.(type) {
	case nil:
		return true
	case map[string]any:
		for _, e := range t {
			if !isZero(e) {
				return false
			}
		}
		return true
	case []any:
		return len(t) == 0
	case string:
		return t == ""
	case bool:
		return !t
	case int64:
		return t == 0
	case float64:
		return t == 0
	}
	return false
}

func prefixed(prefix string, paths []string) []string {
	out := make([]string, len(paths))
	for i, p := range paths {
		out[i] = prefix + p
	}
	return out
}

func concat(lists ...[]string) []string {
	var out []string
	for _, l := range lists {
		out = append(out, l...)
	}
	return out
}
