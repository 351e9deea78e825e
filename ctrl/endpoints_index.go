package ctrl

import (
	"sort"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
)

// serviceSelectors indexes Services by one pair of their selector, so that
// finding the Services that select a pod costs a lookup per pod label plus a
// match per candidate, instead of a match against every Service of the
// namespace. Each Service is filed under its selector's first key (in key
// order) and that key's value: a pod it selects carries that pair. Services
// without a selector are not filed (the controller leaves them alone).
//
// The endpoints controller's follow goroutine is the only user: list
// rebuilds it from a view, keysFor updates it from Service events, so it
// needs no lock.
type serviceSelectors struct {
	byPair map[selectorPair]map[string]labels.Selector // service key -> its selector
	pairOf map[string]selectorPair                     // service key -> where it is filed
}

// selectorPair is one label key=value within one namespace.
type selectorPair struct{ namespace, key, value string }

func newServiceSelectors() *serviceSelectors {
	return &serviceSelectors{byPair: map[selectorPair]map[string]labels.Selector{}, pairOf: map[string]selectorPair{}}
}

// set files (or refiles) the Service; nil or a Service without a selector
// removes key.
func (s *serviceSelectors) set(key string, svc *corev1.Service) {
	s.remove(key)
	if svc == nil || len(svc.Spec.Selector) == 0 {
		return
	}
	keys := make([]string, 0, len(svc.Spec.Selector))
	for k := range svc.Spec.Selector {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	p := selectorPair{svc.Namespace, keys[0], svc.Spec.Selector[keys[0]]}
	m := s.byPair[p]
	if m == nil {
		m = map[string]labels.Selector{}
		s.byPair[p] = m
	}
	m[key] = labels.SelectorFromSet(svc.Spec.Selector)
	s.pairOf[key] = p
}

func (s *serviceSelectors) remove(key string) {
	p, ok := s.pairOf[key]
	if !ok {
		return
	}
	delete(s.pairOf, key)
	if m := s.byPair[p]; m != nil {
		delete(m, key)
		if len(m) == 0 {
			delete(s.byPair, p)
		}
	}
}

// selecting adds the key of every Service in namespace whose selector
// matches ls.
func (s *serviceSelectors) selecting(namespace string, ls labels.Set, add func(string)) {
	for k, v := range ls {
		for key, sel := range s.byPair[selectorPair{namespace, k, v}] {
			if sel.Matches(ls) {
				add(key)
			}
		}
	}
}
