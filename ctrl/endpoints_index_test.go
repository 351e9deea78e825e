package ctrl

import (
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
)

func selectorService(ns, name string, sel map[string]string) *corev1.Service {
	return &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Spec: corev1.ServiceSpec{Selector: sel}}
}

// The index finds exactly the Services whose whole selector matches, in the
// pod's namespace only, and follows updates and deletes.
func TestServiceSelectorsIndex(t *testing.T) {
	idx := newServiceSelectors()
	idx.set("a/web", selectorService("a", "web", map[string]string{"app": "web"}))
	idx.set("a/web-canary", selectorService("a", "web-canary", map[string]string{"app": "web", "track": "canary"}))
	idx.set("a/all", selectorService("a", "all", map[string]string{"tier": "x"}))
	idx.set("a/none", selectorService("a", "none", nil))
	idx.set("b/web", selectorService("b", "web", map[string]string{"app": "web"}))
	find := func(ns string, ls map[string]string) []string {
		var out []string
		idx.selecting(ns, labels.Set(ls), func(k string) { out = append(out, k) })
		slices.Sort(out)
		return out
	}
	check := func(ns string, ls map[string]string, want ...string) {
		t.Helper()
		if got := find(ns, ls); !slices.Equal(got, want) {
			t.Errorf("pod %s %v: services %v, want %v", ns, ls, got, want)
		}
	}
	check("a", map[string]string{"app": "web"}, "a/web")
	check("a", map[string]string{"app": "web", "track": "canary", "tier": "x"}, "a/all", "a/web", "a/web-canary")
	check("a", map[string]string{"track": "canary"})
	check("b", map[string]string{"app": "web", "tier": "x"}, "b/web")
	check("c", map[string]string{"app": "web"})

	// A changed selector is refiled; a deleted or selector-less one goes.
	idx.set("a/web", selectorService("a", "web", map[string]string{"app": "web2"}))
	idx.set("a/all", selectorService("a", "all", nil))
	idx.remove("a/web-canary")
	check("a", map[string]string{"app": "web", "track": "canary", "tier": "x"})
	check("a", map[string]string{"app": "web2"}, "a/web")
	if len(idx.pairOf) != 2 || len(idx.byPair) != 2 {
		t.Errorf("index holds %d services under %d pairs, want 2 and 2", len(idx.pairOf), len(idx.byPair))
	}
}
