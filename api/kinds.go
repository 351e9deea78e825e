package api

import (
	"fmt"
	"slices"
	"sort"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	schedulingv1 "k8s.io/api/scheduling/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// Object is what every stored kind implements: the Kubernetes object
// interfaces plus the generated protobuf codec used in the Raft log and in
// snapshots.
type Object interface {
	runtime.Object
	metav1.Object
	Marshal() ([]byte, error)
	Unmarshal([]byte) error
}

// Kind describes one supported object kind.
type Kind struct {
	Kind       string // "Deployment"
	Resource   string // "deployments"
	Singular   string // "deployment"
	ShortNames []string
	Group      string // "" for the core group
	Version    string // "v1"
	Namespaced bool
	// HasStatus reports whether the kind has a status subresource: writes to
	// the main resource keep the stored status and writes to /status change
	// nothing else.
	HasStatus bool
	// HasSpec reports whether the kind's desired state lives under .spec, so
	// that metadata.generation counts spec changes.
	HasSpec bool

	newObj func() Object
}

// GroupVersion is the kind's API group and version.
func (k *Kind) GroupVersion() schema.GroupVersion {
	return schema.GroupVersion{Group: k.Group, Version: k.Version}
}

// APIVersion is the apiVersion field value ("v1", "apps/v1").
func (k *Kind) APIVersion() string { return k.GroupVersion().String() }

// New returns an empty object of this kind with its TypeMeta set.
func (k *Kind) New() Object {
	o := k.newObj()
	k.SetTypeMeta(o)
	return o
}

// SetTypeMeta stamps apiVersion and kind on obj.
func (k *Kind) SetTypeMeta(o Object) {
	o.GetObjectKind().SetGroupVersionKind(k.GroupVersion().WithKind(k.Kind))
}

// ListKind is the kind name of a list of these objects ("ConfigMapList").
func (k *Kind) ListKind() string { return k.Kind + "List" }

// Decode reads the protobuf encoding of an object of this kind.
func (k *Kind) Decode(b []byte) (Object, error) {
	o := k.New()
	if err := o.Unmarshal(b); err != nil {
		return nil, fmt.Errorf("decode %s: %w", k.Kind, err)
	}
	k.SetTypeMeta(o)
	return o, nil
}

// Path is the REST collection path for namespace ns ("" for all namespaces
// or for cluster-scoped kinds).
func (k *Kind) Path(ns string) string {
	var b strings.Builder
	if k.Group == "" {
		b.WriteString("/api/" + k.Version)
	} else {
		b.WriteString("/apis/" + k.Group + "/" + k.Version)
	}
	if k.Namespaced && ns != "" {
		b.WriteString("/namespaces/" + ns)
	}
	b.WriteString("/" + k.Resource)
	return b.String()
}

// ObjectPath is the REST path of one object.
func (k *Kind) ObjectPath(ns, name string) string { return k.Path(ns) + "/" + name }

func kind[T any, PT interface {
	*T
	Object
}](k Kind) *Kind {
	k.newObj = func() Object { return PT(new(T)) }
	if k.Singular == "" {
		k.Singular = strings.ToLower(k.Kind)
	}
	return &k
}

// The supported kinds. Their order is the order of tables in a snapshot;
// append new kinds at the end.
var (
	Namespace  = kind[corev1.Namespace](Kind{Kind: "Namespace", Resource: "namespaces", ShortNames: []string{"ns"}, Version: "v1", HasStatus: true, HasSpec: true})
	ConfigMap  = kind[corev1.ConfigMap](Kind{Kind: "ConfigMap", Resource: "configmaps", ShortNames: []string{"cm"}, Version: "v1", Namespaced: true})
	Secret     = kind[corev1.Secret](Kind{Kind: "Secret", Resource: "secrets", Version: "v1", Namespaced: true})
	Pod        = kind[corev1.Pod](Kind{Kind: "Pod", Resource: "pods", ShortNames: []string{"po"}, Version: "v1", Namespaced: true, HasStatus: true, HasSpec: true})
	ReplicaSet = kind[appsv1.ReplicaSet](Kind{Kind: "ReplicaSet", Resource: "replicasets", ShortNames: []string{"rs"}, Group: "apps", Version: "v1", Namespaced: true, HasStatus: true, HasSpec: true})
	Deployment = kind[appsv1.Deployment](Kind{Kind: "Deployment", Resource: "deployments", ShortNames: []string{"deploy"}, Group: "apps", Version: "v1", Namespaced: true, HasStatus: true, HasSpec: true})
	DaemonSet  = kind[appsv1.DaemonSet](Kind{Kind: "DaemonSet", Resource: "daemonsets", ShortNames: []string{"ds"}, Group: "apps", Version: "v1", Namespaced: true, HasStatus: true, HasSpec: true})
	Service    = kind[corev1.Service](Kind{Kind: "Service", Resource: "services", ShortNames: []string{"svc"}, Version: "v1", Namespaced: true, HasStatus: true, HasSpec: true})
	Endpoints  = kind[corev1.Endpoints](Kind{Kind: "Endpoints", Resource: "endpoints", Singular: "endpoints", ShortNames: []string{"ep"}, Version: "v1", Namespaced: true})
	Node       = kind[corev1.Node](Kind{Kind: "Node", Resource: "nodes", ShortNames: []string{"no"}, Version: "v1", HasStatus: true, HasSpec: true})
	Event      = kind[corev1.Event](Kind{Kind: "Event", Resource: "events", ShortNames: []string{"ev"}, Version: "v1", Namespaced: true})

	PriorityClass = kind[schedulingv1.PriorityClass](Kind{Kind: "PriorityClass", Resource: "priorityclasses", ShortNames: []string{"pc"}, Group: "scheduling.k8s.io", Version: "v1"})
)

// Kinds lists every supported kind in snapshot order.
var Kinds = []*Kind{Namespace, ConfigMap, Secret, Pod, ReplicaSet, Deployment, DaemonSet, Service, Endpoints, Node, Event, PriorityClass}

var byKind = map[string]*Kind{}

func init() {
	for _, k := range Kinds {
		byKind[k.Kind] = k
	}
}

// KindByName finds a kind by its Kind name ("ConfigMap").
func KindByName(name string) (*Kind, bool) {
	k, ok := byKind[name]
	return k, ok
}

// KindFor finds the kind of an apiVersion/kind pair as written in a manifest.
func KindFor(apiVersion, kindName string) (*Kind, error) {
	k, ok := byKind[kindName]
	if !ok {
		return nil, fmt.Errorf("unknown kind %q (supported: %s)", kindName, strings.Join(KindNames(), ", "))
	}
	if k.APIVersion() != apiVersion {
		return nil, fmt.Errorf("kind %s is served as apiVersion %q, not %q", kindName, k.APIVersion(), apiVersion)
	}
	return k, nil
}

// KindForResource finds a kind by any name a user may type: resource
// ("deployments"), singular, short name or Kind, case-insensitively, with an
// optional ".group" suffix ("deployments.apps").
func KindForResource(name string) (*Kind, error) {
	n := strings.ToLower(name)
	group := ""
	if i := strings.IndexByte(n, '.'); i >= 0 {
		n, group = n[:i], n[i+1:]
	}
	for _, k := range Kinds {
		if group != "" && group != k.Group && !(group == "core" && k.Group == "") {
			continue
		}
		if n == k.Resource || n == k.Singular || n == strings.ToLower(k.Kind) || slices.Contains(k.ShortNames, n) {
			return k, nil
		}
	}
	return nil, fmt.Errorf("the server doesn't have a resource type %q", name)
}

// KindForPath finds the kind served at a REST group, version and resource.
func KindForPath(group, version, resource string) (*Kind, bool) {
	for _, k := range Kinds {
		if k.Group == group && k.Version == version && k.Resource == resource {
			return k, true
		}
	}
	return nil, false
}

// KindNames returns the sorted Kind names.
func KindNames() []string {
	names := make([]string, 0, len(Kinds))
	for _, k := range Kinds {
		names = append(names, k.Kind)
	}
	sort.Strings(names)
	return names
}
