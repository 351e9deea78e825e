package proxy

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// TestModelMatchesCompute: a model updated one Service at a time, in any
// order, with Services colliding on virtual servers and coming and going,
// always holds what Compute makes from scratch, problems included, and
// reports every key whose virtual server changed as touched.
func TestModelMatchesCompute(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	m := newModel()
	svcs := map[string]*corev1.Service{}
	epss := map[string]*corev1.Endpoints{}
	prev := RuleSet{}
	for step := range 2000 {
		name := fmt.Sprintf("s%d", r.IntN(12))
		switch r.IntN(4) {
		case 0:
			delete(svcs, name)
		case 1:
			var ips []string
			for range r.IntN(3) {
				ips = append(ips, fmt.Sprintf("10.244.0.%d", 1+r.IntN(5)))
			}
			epss[name] = eps(name, subset(ips, nil, eport("", "", 8080)))
		default:
			// Few addresses and ports, so Services collide often.
			ip := fmt.Sprintf("10.96.0.%d", 1+r.IntN(4))
			mut := func(s *corev1.Service) {
				if r.IntN(3) == 0 {
					s.Spec.Type = corev1.ServiceTypeNodePort
				}
			}
			ports := []corev1.ServicePort{port("", "", int32(80+r.IntN(2)), intstr.FromInt32(8080), int32(30000+r.IntN(3)))}
			if r.IntN(5) == 0 {
				ports = append(ports, ports[0]) // the same key twice in one Service
			}
			svcs[name] = svc(name, ip, mut, ports...)
		}
		touched := map[Key]bool{}
		m.update("ns/"+name, svcs[name], epss[name], touched)

		var list []*corev1.Service
		for _, s := range svcs {
			list = append(list, s)
		}
		var elist []*corev1.Endpoints
		for _, e := range epss {
			elist = append(elist, e)
		}
		want, wantProblems := computeReference(list, elist)
		if got, _ := Compute(list, elist); !got.Equal(want) {
			t.Fatalf("step %d: Compute\n%s\nreference\n%s", step, got, want)
		}
		if !m.desired.Equal(want) {
			t.Fatalf("step %d: model\n%s\nCompute\n%s", step, m.desired, want)
		}
		for k := range want {
			if m.desired[k].Name != want[k].Name {
				t.Fatalf("step %d: %s won by %s, Compute says %s", step, k, m.desired[k].Name, want[k].Name)
			}
		}
		if got, want := errStrings(m.problems()), errStrings(wantProblems); !slices.Equal(got, want) {
			t.Fatalf("step %d: problems\n%v\nwant\n%v", step, got, want)
		}
		for _, c := range Diff(prev, want) {
			if !touched[c.Key] {
				t.Fatalf("step %d: %s changed (%s) but was not reported touched", step, c.Key, c.Op)
			}
		}
		prev = want.Clone()
	}
}

// computeReference is Compute as a plain loop over the Services in
// namespace/name order, the first claim of a key winning (the definition
// the incremental model must agree with).
func computeReference(services []*corev1.Service, endpoints []*corev1.Endpoints) (RuleSet, []error) {
	eps := map[string]*corev1.Endpoints{}
	for _, e := range endpoints {
		eps[e.Namespace+"/"+e.Name] = e
	}
	svcs := slices.Clone(services)
	slices.SortFunc(svcs, func(a, b *corev1.Service) int {
		return strings.Compare(a.Namespace+"/"+a.Name, b.Namespace+"/"+b.Name)
	})
	rs := RuleSet{}
	var problems []error
	for _, s := range svcs {
		vss, errs := computeService(s, eps[s.Namespace+"/"+s.Name])
		problems = append(problems, errs...)
		for _, vs := range vss {
			if prev, ok := rs[vs.Key]; ok {
				problems = append(problems, fmt.Errorf("%s: %s: %w (%s)", vs.Name, vs.Key, ErrConflict, prev.Name))
				continue
			}
			rs[vs.Key] = vs
		}
	}
	return rs, problems
}

func errStrings(errs []error) []string {
	var out []string
	for _, e := range errs {
		out = append(out, e.Error())
	}
	return out
}
