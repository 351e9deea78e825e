package sched

import (
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"

	"orch.dev/orch/sched/fit"
)

// Resource is a resource vector in sched/fit's milli-units, laid out so that
// the per-node checks of the hot path do not hash: cpu, memory and pods are
// fields; every other resource (nvidia.com/gpu, ephemeral-storage,
// hugepages...) is a short list sorted by name.
type Resource struct {
	MilliCPU int64
	Memory   int64
	Pods     int64
	Scalar   []Scalar
}

// Scalar is one other resource.
type Scalar struct {
	Name  corev1.ResourceName
	Value int64
}

func newResource(r fit.Resources) Resource {
	var out Resource
	for name, v := range r {
		switch name {
		case corev1.ResourceCPU:
			out.MilliCPU = v
		case corev1.ResourceMemory:
			out.Memory = v
		case corev1.ResourcePods:
			out.Pods = v
		default:
			out.Scalar = append(out.Scalar, Scalar{name, v})
		}
	}
	slices.SortFunc(out.Scalar, func(a, b Scalar) int { return strings.Compare(string(a.Name), string(b.Name)) })
	return out
}

// Get returns the amount of one resource.
func (r *Resource) Get(name corev1.ResourceName) int64 {
	switch name {
	case corev1.ResourceCPU:
		return r.MilliCPU
	case corev1.ResourceMemory:
		return r.Memory
	case corev1.ResourcePods:
		return r.Pods
	}
	for _, s := range r.Scalar {
		if s.Name == name {
			return s.Value
		}
	}
	return 0
}

func (r *Resource) addScalar(name corev1.ResourceName, v int64) {
	for i := range r.Scalar {
		if r.Scalar[i].Name == name {
			r.Scalar[i].Value += v
			return
		}
	}
	r.Scalar = append(r.Scalar, Scalar{name, v})
	slices.SortFunc(r.Scalar, func(a, b Scalar) int { return strings.Compare(string(a.Name), string(b.Name)) })
}

// Add adds o to r.
func (r *Resource) Add(o *Resource) {
	r.MilliCPU += o.MilliCPU
	r.Memory += o.Memory
	r.Pods += o.Pods
	for _, s := range o.Scalar {
		r.addScalar(s.Name, s.Value)
	}
}

// Sub subtracts o from r.
func (r *Resource) Sub(o *Resource) {
	r.MilliCPU -= o.MilliCPU
	r.Memory -= o.Memory
	r.Pods -= o.Pods
	for _, s := range o.Scalar {
		r.addScalar(s.Name, -s.Value)
	}
}

// Clone returns a copy that shares nothing with r.
func (r *Resource) Clone() Resource {
	c := *r
	c.Scalar = slices.Clone(r.Scalar)
	return c
}

// insufficient appends to out the resources req needs more of than
// allocatable - used leaves, with sched/fit's rule: every requested
// resource counts, and one the node does not offer has 0. The order is
// cpu, memory, pods, then the others by name.
func insufficient(req, allocatable, used *Resource, out []corev1.ResourceName) []corev1.ResourceName {
	if req.MilliCPU > 0 && allocatable.MilliCPU-used.MilliCPU < req.MilliCPU {
		out = append(out, corev1.ResourceCPU)
	}
	if req.Memory > 0 && allocatable.Memory-used.Memory < req.Memory {
		out = append(out, corev1.ResourceMemory)
	}
	if req.Pods > 0 && allocatable.Pods-used.Pods < req.Pods {
		out = append(out, corev1.ResourcePods)
	}
	for _, s := range req.Scalar {
		if s.Value > 0 && allocatable.Get(s.Name)-used.Get(s.Name) < s.Value {
			out = append(out, s.Name)
		}
	}
	return out
}
