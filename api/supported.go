package api

import (
	"reflect"
	"sort"
	"strings"
	"sync"

	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
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
		"restartPolicy", "terminationGracePeriodSeconds", "activeDeadlineSeconds", "dnsPolicy", "dnsConfig",
		"nodeSelector", "nodeName", "hostname", "subdomain", "schedulerName",
		"affinity.nodeAffinity", "affinity.podAffinity", "affinity.podAntiAffinity",
		"tolerations", "priorityClassName", "priority", "preemptionPolicy", "topologySpreadConstraints",
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
	Endpoints:     {"subsets"},
	Node:          {"spec.podCIDR", "spec.podCIDRs", "spec.unschedulable", "spec.taints", "spec.providerID", "status"},
	PriorityClass: {"value", "globalDefault", "description", "preemptionPolicy"},
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
// implement, naming its path. It walks the typed object by reflection (by
// JSON field name), which costs far less than converting it to maps.
func ValidateSupportedFields(k *Kind, obj Object) field.ErrorList {
	var errs field.ErrorList
	walkSupported(allowTrees[k], reflect.ValueOf(obj), nil, &errs)
	return errs
}

// lazyPath is the path being walked, as cheap stack frames; a field.Path is
// built only for an error (most objects have none).
type lazyPath struct {
	parent *lazyPath
	name   string
	index  int // -1 unless a list element
}

func (p *lazyPath) child(name string) *lazyPath { return &lazyPath{parent: p, name: name, index: -1} }
func (p *lazyPath) at(i int) *lazyPath          { return &lazyPath{parent: p, index: i} }

func (p *lazyPath) fieldPath() *field.Path {
	if p == nil {
		return nil
	}
	parent := p.parent.fieldPath()
	switch {
	case p.index >= 0:
		return parent.Index(p.index)
	case parent == nil:
		return field.NewPath(p.name)
	}
	return parent.Child(p.name)
}

// scalarTypes encode as JSON scalars although they are structs.
var scalarTypes = map[reflect.Type]bool{
	reflect.TypeFor[metav1.Time]():        true,
	reflect.TypeFor[metav1.MicroTime]():   true,
	reflect.TypeFor[resource.Quantity]():  true,
	reflect.TypeFor[intstr.IntOrString](): true,
}

type jsonField struct {
	index  int
	name   string
	inline bool
}

var structFields sync.Map // reflect.Type -> []jsonField

func fieldsOf(t reflect.Type) []jsonField {
	if f, ok := structFields.Load(t); ok {
		return f.([]jsonField)
	}
	var out []jsonField
	for i := range t.NumField() {
		sf := t.Field(i)
		if !sf.IsExported() {
			continue
		}
		tag := sf.Tag.Get("json")
		name, opts, _ := strings.Cut(tag, ",")
		if name == "-" {
			continue
		}
		inline := strings.Contains(opts, "inline") || (sf.Anonymous && name == "")
		if name == "" {
			name = sf.Name
		}
		out = append(out, jsonField{index: i, name: name, inline: inline})
	}
	structFields.Store(t, out)
	return out
}

func walkSupported(n *allowTree, v reflect.Value, path *lazyPath, errs *field.ErrorList) {
	if n.leaf || !v.IsValid() || v.IsZero() {
		return
	}
	forbid := func() { *errs = append(*errs, field.Forbidden(path.fieldPath(), "not supported by orch")) }
	switch v.Kind() {
	case reflect.Pointer, reflect.Interface:
		walkSupported(n, v.Elem(), path, errs)
	case reflect.Struct:
		if scalarTypes[v.Type()] {
			forbid()
			return
		}
		for _, f := range fieldsOf(v.Type()) {
			fv := v.Field(f.index)
			if f.inline {
				walkSupported(n, fv, path, errs)
				continue
			}
			if fv.IsZero() || isEmptyContainer(fv) {
				continue
			}
			child := path.child(f.name)
			c, ok := n.children[f.name]
			if !ok {
				if !isUnset(fv) {
					*errs = append(*errs, field.Forbidden(child.fieldPath(), "not supported by orch"))
				}
				continue
			}
			walkSupported(c, fv, child, errs)
		}
	case reflect.Slice, reflect.Array:
		if v.Len() == 0 || v.Type().Elem().Kind() == reflect.Uint8 {
			if v.Len() > 0 {
				forbid()
			}
			return
		}
		c, ok := n.children["[]"]
		if !ok {
			forbid()
			return
		}
		for i := range v.Len() {
			walkSupported(c, v.Index(i), path.at(i), errs)
		}
	case reflect.Map:
		keys := v.MapKeys()
		sort.Slice(keys, func(i, j int) bool { return keys[i].String() < keys[j].String() })
		for _, key := range keys {
			child := path.child(key.String())
			c, ok := n.children[key.String()]
			if !ok {
				if !isUnset(v.MapIndex(key)) {
					*errs = append(*errs, field.Forbidden(child.fieldPath(), "not supported by orch"))
				}
				continue
			}
			walkSupported(c, v.MapIndex(key), child, errs)
		}
	default:
		forbid()
	}
}

// isUnset reports whether v would encode as nothing but empty objects and
// zero values, like `securityContext: {}` in generated manifests: such a
// field cannot change behaviour.
func isUnset(v reflect.Value) bool {
	if !v.IsValid() || v.IsZero() {
		return true
	}
	switch v.Kind() {
	case reflect.Pointer, reflect.Interface:
		return isUnset(v.Elem())
	case reflect.Struct:
		if scalarTypes[v.Type()] {
			return false
		}
		for _, f := range fieldsOf(v.Type()) {
			if !isUnset(v.Field(f.index)) {
				return false
			}
		}
		return true
	case reflect.Map, reflect.Slice:
		return v.Len() == 0
	}
	return false
}

// isEmptyContainer treats empty (but non-nil) maps and slices as unset.
func isEmptyContainer(v reflect.Value) bool {
	switch v.Kind() {
	case reflect.Map, reflect.Slice:
		return v.Len() == 0
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
