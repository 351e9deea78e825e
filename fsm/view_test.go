package fsm

import (
	"reflect"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"orch.dev/orch/api"
)

func viewFixture(t *testing.T) *testFSM {
	f := newTestFSM(t)
	var cmds []Command
	for _, ns := range []string{"a", "ab", "b", "c"} {
		cmds = append(cmds, createCmd(t, namespace(ns)))
	}
	for _, key := range [][2]string{{"a", "x"}, {"a", "y"}, {"ab", "x"}, {"b", "x"}, {"b", "y"}, {"b", "z"}, {"c", "x"}} {
		cmds = append(cmds, createCmd(t, configMap(key[0], key[1], nil)))
	}
	bound := pod("b", "bound", "busybox")
	bound.Spec.NodeName = "n1"
	cmds = append(cmds, createCmd(t, bound), createCmd(t, pod("b", "pending", "busybox")), createCmd(t, node("n1")))
	f.mustApply(&Batch{Commands: cmds})
	return f
}

func keys(visit func(func(*Record) bool)) []string {
	var out []string
	visit(func(r *Record) bool { out = append(out, r.Key); return true })
	return out
}

func TestViewList(t *testing.T) {
	v := viewFixture(t).View()
	tests := []struct {
		name  string
		visit func(func(*Record) bool)
		want  []string
	}{
		{"all namespaces", func(fn func(*Record) bool) { v.List(api.ConfigMap, "", fn) }, []string{"a/x", "a/y", "ab/x", "b/x", "b/y", "b/z", "c/x"}},
		{"one namespace", func(fn func(*Record) bool) { v.List(api.ConfigMap, "b", fn) }, []string{"b/x", "b/y", "b/z"}},
		{"namespace prefix is not a namespace", func(fn func(*Record) bool) { v.List(api.ConfigMap, "a", fn) }, []string{"a/x", "a/y"}},
		{"cluster scoped", func(fn func(*Record) bool) { v.List(api.Namespace, "", fn) }, []string{"a", "ab", "b", "c"}},
		{"cluster scoped page", func(fn func(*Record) bool) { v.ListFrom(api.Namespace, "", "ab", fn) }, []string{"b", "c"}},
		{"page after a key", func(fn func(*Record) bool) { v.ListFrom(api.ConfigMap, "b", "b/x", fn) }, []string{"b/y", "b/z"}},
		{"page after the last key", func(fn func(*Record) bool) { v.ListFrom(api.ConfigMap, "b", "b/z", fn) }, nil},
		{"page across namespaces", func(fn func(*Record) bool) { v.ListFrom(api.ConfigMap, "", "a/y", fn) }, []string{"ab/x", "b/x", "b/y", "b/z", "c/x"}},
		{"page within a namespace prefix", func(fn func(*Record) bool) { v.ListFrom(api.ConfigMap, "a", "a/x", fn) }, []string{"a/y"}},
		{"page from another namespace's key", func(fn func(*Record) bool) { v.ListFrom(api.ConfigMap, "b", "a/y", fn) }, []string{"b/x", "b/y", "b/z"}},
		{"page from a later namespace's key", func(fn func(*Record) bool) { v.ListFrom(api.ConfigMap, "b", "c/x", fn) }, nil},
		{"first page of a namespace", func(fn func(*Record) bool) { v.ListFrom(api.ConfigMap, "b", "", fn) }, []string{"b/x", "b/y", "b/z"}},
		{"pods on a node", func(fn func(*Record) bool) { v.PodsOnNode("n1", fn) }, []string{"b/bound"}},
		{"unbound pods", func(fn func(*Record) bool) { v.PodsOnNode("", fn) }, []string{"b/pending"}},
		{"pods on an unknown node", func(fn func(*Record) bool) { v.PodsOnNode("n2", fn) }, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := keys(tt.visit); !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("got %v, want %v", got, tt.want)
			}
		})
	}
	var n int
	v.List(api.ConfigMap, "", func(*Record) bool { n++; return n < 2 })
	if n != 2 {
		t.Fatalf("List kept going after fn returned false (%d calls)", n)
	}
	if v.Count(api.ConfigMap) != 7 || v.Count(api.Pod) != 2 || v.Count(api.Secret) != 0 {
		t.Fatalf("counts %d %d %d", v.Count(api.ConfigMap), v.Count(api.Pod), v.Count(api.Secret))
	}
}

// TestViewIsASnapshot: a view keeps seeing the state it was taken at.
func TestViewIsASnapshot(t *testing.T) {
	f := viewFixture(t)
	v := f.View()
	f.mustApply(&Delete{Kind: "Namespace", Name: "b"})
	if v.Count(api.ConfigMap) != 7 || v.Index() != 1 || v.Get(api.ConfigMap, "b", "x") == nil {
		t.Fatal("an earlier view saw a later change")
	}
	if f.View().Count(api.ConfigMap) != 4 || f.View().Index() != 2 {
		t.Fatal("a new view misses a change")
	}
}

func TestParseRV(t *testing.T) {
	for s, want := range map[string]uint64{"": 0, "0": 0, "42": 42, "18446744073709551615": 1<<64 - 1} {
		if got, err := ParseRV(s); err != nil || got != want {
			t.Errorf("ParseRV(%q) = %d, %v", s, got, err)
		}
	}
	for _, s := range []string{"-1", "1.0", "abc", "18446744073709551616", " 1"} {
		if _, err := ParseRV(s); err == nil {
			t.Errorf("ParseRV(%q) accepted", s)
		}
	}
}

// Orphans lists the objects without a controller of one namespace, and
// follows adoption and release.
func TestViewOrphans(t *testing.T) {
	f := newTestFSM(t)
	for _, ns := range []string{"a", "ab"} {
		f.mustApply(createCmd(t, namespace(ns)))
	}
	ctrl := true
	owned := func(p *corev1.Pod) *corev1.Pod {
		p.OwnerReferences = []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: "rs", UID: "rs-uid", Controller: &ctrl}}
		return p
	}
	notController := pod("a", "referenced", "img")
	notController.OwnerReferences = []metav1.OwnerReference{{APIVersion: "v1", Kind: "ConfigMap", Name: "cm", UID: "cm-uid"}}
	for _, p := range []*corev1.Pod{pod("a", "x", "img"), owned(pod("a", "y", "img")), notController, pod("ab", "x", "img"), owned(pod("ab", "y", "img"))} {
		f.mustApply(createCmd(t, p))
	}
	orphans := func(k *api.Kind, ns string) []string {
		return keys(func(fn func(*Record) bool) { f.View().Orphans(k, ns, fn) })
	}
	if got, want := orphans(api.Pod, "a"), []string{"a/referenced", "a/x"}; !reflect.DeepEqual(got, want) {
		t.Errorf("orphan pods of a: %v, want %v", got, want)
	}
	// Adopted: no longer an orphan. Released: an orphan again.
	f.mustApply(updateCmd(t, owned(f.get(api.Pod, "a", "x").Copy().(*corev1.Pod))))
	released := f.get(api.Pod, "ab", "y").Copy().(*corev1.Pod)
	released.OwnerReferences = nil
	f.mustApply(updateCmd(t, released))
	if got, want := orphans(api.Pod, "a"), []string{"a/referenced"}; !reflect.DeepEqual(got, want) {
		t.Errorf("orphan pods of a after adoption: %v, want %v", got, want)
	}
	if got, want := orphans(api.Pod, "ab"), []string{"ab/x", "ab/y"}; !reflect.DeepEqual(got, want) {
		t.Errorf("orphan pods of ab after release: %v, want %v", got, want)
	}
	// Kinds without the index give the same answer, by listing.
	f.mustApply(createCmd(t, configMap("a", "cm", nil)))
	if got, want := orphans(api.ConfigMap, "a"), []string{"a/cm"}; !reflect.DeepEqual(got, want) {
		t.Errorf("orphan config maps of a: %v, want %v", got, want)
	}
}
