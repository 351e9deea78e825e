package fsm

import (
	"errors"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"orch.dev/orch/api"
)

func TestDeletePreconditions(t *testing.T) {
	tests := []struct {
		name string
		del  Delete
		want error
	}{
		{"unconditional", Delete{}, nil},
		{"matching uid", Delete{UID: "uid-ns-p"}, nil},
		{"matching version", Delete{ResourceVersion: 2}, nil},
		{"matching both", Delete{UID: "uid-ns-p", ResourceVersion: 2}, nil},
		{"other uid", Delete{UID: "uid-x"}, ErrConflict},
		{"stale version", Delete{ResourceVersion: 1}, ErrConflict},
		{"other uid, matching version", Delete{UID: "uid-x", ResourceVersion: 2}, ErrConflict},
		{"not found", Delete{Name: "q"}, ErrNotFound},
		{"unknown kind", Delete{Kind: "Gadget"}, ErrBadCommand},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, _ := setupPod(t)
			d := tt.del
			d.Namespace = "ns"
			if d.Name == "" {
				d.Name = "p"
			}
			if d.Kind == "" {
				d.Kind = "Pod"
			}
			res := f.apply(&d)
			if tt.want != nil {
				wantErr(t, res, tt.want)
				if f.get(api.Pod, "ns", "p") == nil {
					t.Fatal("failed delete removed the pod")
				}
				wantEvents(t, f.events(2))
				return
			}
			if res.Err != nil || !res.Deleted {
				t.Fatalf("delete: %+v", res)
			}
			if r := res.Record; r.Version != 3 || r.Obj.GetResourceVersion() != "3" || r.Obj.(*corev1.Pod).Spec.Containers[0].Image != "busybox:1" {
				t.Fatalf("deleted record should be the last state at the deleting index: %s", r.JSON())
			}
			if f.get(api.Pod, "ns", "p") != nil {
				t.Fatal("pod still stored")
			}
			wantEvents(t, f.events(2), "DELETED pods ns/p @3")
		})
	}
}

func TestDeleteWithFinalizers(t *testing.T) {
	f := newTestFSM(t)
	f.mustApply(createCmd(t, namespace("ns")))
	p := pod("ns", "p", "busybox")
	p.Finalizers = []string{"orch.dev/cleanup"}
	f.mustApply(createCmd(t, p))

	when := time.Date(2024, 5, 2, 3, 4, 5, 600, time.UTC)
	res := f.mustApply(&Delete{Kind: "Pod", Namespace: "ns", Name: "p", DeletionTime: when.UnixNano()})
	if res.Deleted {
		t.Fatal("an object with finalizers was removed")
	}
	got := f.get(api.Pod, "ns", "p")
	ts := got.Obj.GetDeletionTimestamp()
	if got != res.Record || ts == nil || !ts.Time.Equal(when) || got.Version != 3 {
		t.Fatalf("marked pod: deletionTimestamp %v version %d", ts, got.Version)
	}

	// Deleting again changes nothing: the first deletion time stands.
	again := f.apply(&Delete{Kind: "Pod", Namespace: "ns", Name: "p", DeletionTime: when.Add(time.Hour).UnixNano()})
	if again.Err != nil || again.Deleted || again.Record != got {
		t.Fatalf("second delete: %+v", again)
	}
	// The mark is kept across later writes.
	p.Labels = map[string]string{"a": "b"}
	if r := f.mustApply(updateCmd(t, p)).Record; !r.Obj.GetDeletionTimestamp().Time.Equal(when) {
		t.Fatalf("update dropped the deletion mark: %s", r.JSON())
	}
	wantEvents(t, f.events(2), "MODIFIED pods ns/p @3", "MODIFIED pods ns/p @5")
}

func TestDeleteProtectedNamespace(t *testing.T) {
	for _, name := range []string{"default", "kube-system", "kube-public"} {
		t.Run(name, func(t *testing.T) {
			f := newTestFSM(t)
			f.mustApply(createCmd(t, namespace(name)))
			res := f.apply(&Delete{Kind: "Namespace", Name: name})
			wantErr(t, res, ErrForbidden)
			if f.get(api.Namespace, "", name) == nil {
				t.Fatal("protected namespace removed")
			}
			wantEvents(t, f.events(1))
		})
	}
}

func TestDeleteNamespaceRemovesContents(t *testing.T) {
	f := newTestFSM(t)
	f.mustApply(createCmd(t, namespace("a")))
	f.mustApply(createCmd(t, namespace("ab")))
	f.mustApply(createCmd(t, node("n1")))
	f.mustApply(createCmd(t, configMap("ab", "cm", nil)))
	stuck := pod("a", "p", "busybox")
	stuck.Finalizers = []string{"orch.dev/never"}
	f.mustApply(&Batch{Commands: []Command{
		createCmd(t, configMap("a", "cm2", nil)),
		createCmd(t, configMap("a", "cm1", nil)),
		createCmd(t, secret("a", "s", map[string][]byte{"k": []byte("v")})),
		createCmd(t, stuck),
		createCmd(t, deployment("a", "d", 1)),
	}})
	res := f.mustApply(&Delete{Kind: "Namespace", Name: "a"})
	if !res.Deleted || res.Record.Key != "a" || res.Record.Version != 6 {
		t.Fatalf("namespace delete: %+v", res)
	}
	// Children go first, in snapshot kind order and key order, all at the
	// namespace's index; namespace "ab" shares the prefix but not the contents.
	wantEvents(t, f.events(5), "DELETED configmaps a/cm1 @6", "DELETED configmaps a/cm2 @6", "DELETED secrets a/s @6",
		"DELETED pods a/p @6", "DELETED deployments a/d @6", "DELETED namespaces a @6")
	for _, k := range api.Kinds {
		if k.Namespaced {
			f.View().List(k, "a", func(r *Record) bool {
				t.Errorf("%s %s survived its namespace", k.Kind, r.Key)
				return true
			})
		}
	}
	if f.get(api.ConfigMap, "ab", "cm") == nil || f.get(api.Node, "", "n1") == nil || f.get(api.Namespace, "", "ab") == nil {
		t.Fatal("namespace delete removed objects outside it")
	}
	wantErr(t, f.apply(createCmd(t, configMap("a", "late", nil))), ErrNotFound)
}

func TestDeleteNamespaceWithFinalizer(t *testing.T) {
	f := newTestFSM(t)
	f.mustApply(createCmd(t, namespace("ns", "orch.dev/teardown")))
	f.mustApply(createCmd(t, configMap("ns", "cm", nil)))
	f.mustApply(&Delete{Kind: "Namespace", Name: "ns", DeletionTime: 1})
	wantErr(t, f.apply(createCmd(t, configMap("ns", "new", nil))), ErrForbidden)
	if f.get(api.ConfigMap, "ns", "cm") == nil {
		t.Fatal("a terminating namespace lost its contents before its finalizers ran")
	}
	// Existing contents may still be updated while the namespace terminates.
	f.mustApply(updateCmd(t, configMap("ns", "cm", map[string]string{"a": "b"})))
	// The last finalizer completes the deletion, contents included.
	n := f.get(api.Namespace, "", "ns").Copy()
	n.SetFinalizers(nil)
	if res := f.mustApply(updateCmd(t, n)); !res.Deleted {
		t.Fatalf("finalizer removal did not delete the namespace: %s", res.Record.JSON())
	}
	wantEvents(t, f.events(5), "DELETED configmaps ns/cm @6", "DELETED namespaces ns @6")
}

func TestDeleteOrphan(t *testing.T) {
	for _, orphan := range []bool{false, true} {
		f := newTestFSM(t)
		f.mustApply(createCmd(t, namespace("ns")))
		d, d2 := deployment("ns", "d", 1), deployment("ns", "d2", 1)
		rs1, rs2, rs3 := replicaSet("ns", "rs1", d), replicaSet("ns", "rs2", d2, d), replicaSet("ns", "rs3", d2)
		owned := pod("ns", "p", "busybox")
		owned.OwnerReferences = []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: "rs1", UID: rs1.UID}}
		f.mustApply(&Batch{Commands: []Command{createCmd(t, d), createCmd(t, d2), createCmd(t, rs1),
			createCmd(t, rs2), createCmd(t, rs3), createCmd(t, owned)}})

		res := f.mustApply(&Delete{Kind: "Deployment", Namespace: "ns", Name: "d", Orphan: orphan})
		if !res.Deleted {
			t.Fatalf("orphan=%v: deployment not deleted", orphan)
		}
		refs := func(name string) []string {
			var out []string
			for _, r := range f.get(api.ReplicaSet, "ns", name).Obj.GetOwnerReferences() {
				out = append(out, r.Name)
			}
			return out
		}
		var n int
		f.View().Owned(api.ReplicaSet, string(d.UID), func(*Record) bool { n++; return true })
		if !orphan {
			// The FSM does not cascade: dependents are the garbage
			// collector's business.
			if len(refs("rs1")) != 1 || len(refs("rs2")) != 2 || n != 2 {
				t.Fatalf("delete without orphan changed dependents: rs1 %v rs2 %v", refs("rs1"), refs("rs2"))
			}
			wantEvents(t, f.events(2), "DELETED deployments ns/d @3")
			continue
		}
		if len(refs("rs1")) != 0 || len(refs("rs2")) != 1 || refs("rs2")[0] != "d2" || len(refs("rs3")) != 1 || n != 0 {
			t.Fatalf("orphaned owner refs: rs1 %v rs2 %v rs3 %v (still owned: %d)", refs("rs1"), refs("rs2"), refs("rs3"), n)
		}
		if f.get(api.Pod, "ns", "p").Version != 2 {
			t.Fatal("orphaning touched a grandchild")
		}
		f.View().Owned(api.ReplicaSet, string(d2.UID), func(*Record) bool { n++; return true })
		if n != 2 {
			t.Fatalf("owner index after orphaning: %d objects owned by d2, want 2", n)
		}
		wantEvents(t, f.events(2), "MODIFIED replicasets ns/rs1 @3", "MODIFIED replicasets ns/rs2 @3", "DELETED deployments ns/d @3")
	}
}

func TestBatch(t *testing.T) {
	f := newTestFSM(t)
	res := f.apply(&Batch{Commands: []Command{
		createCmd(t, namespace("ns")),
		createCmd(t, configMap("ns", "a", nil)),
		createCmd(t, configMap("ns", "a", nil)),
		updateCmd(t, configMap("ns", "missing", nil)),
		&Delete{Kind: "ConfigMap", Namespace: "ns", Name: "a"},
		createCmd(t, configMap("ns", "c", nil)),
		createCmd(t, configMap("elsewhere", "d", nil)),
		updateCmd(t, configMap("ns", "c", map[string]string{"k": "v"})),
	}})
	if res.Err != nil || res.Record != nil || len(res.Batch) != 8 {
		t.Fatalf("batch result %+v", res)
	}
	want := []error{nil, nil, ErrAlreadyExists, ErrNotFound, nil, nil, ErrNotFound, nil}
	for i, sub := range res.Batch {
		if want[i] == nil && sub.Err != nil || want[i] != nil && !errors.Is(sub.Err, want[i]) {
			t.Errorf("batch command %d: error %v, want %v", i, sub.Err, want[i])
		}
		if sub.Err == nil && sub.Record.Version != 1 {
			t.Errorf("batch command %d: version %d, want the entry's index 1", i, sub.Record.Version)
		}
	}
	if !res.Batch[4].Deleted {
		t.Error("batch delete not reported as deleted")
	}
	if c := f.get(api.ConfigMap, "ns", "c"); c == nil || c.Obj.(*corev1.ConfigMap).Data["k"] != "v" {
		t.Fatal("later batch command did not see the earlier one's object")
	}
	wantEvents(t, f.events(0), "ADDED namespaces ns @1", "ADDED configmaps ns/a @1", "DELETED configmaps ns/a @1",
		"ADDED configmaps ns/c @1", "MODIFIED configmaps ns/c @1")

	// A malformed batch applies nothing at all.
	bad := append(Encode(&Batch{Commands: []Command{createCmd(t, configMap("ns", "x", nil))}}), 0x52, 0x01, 0x01)
	wantErr(t, f.applyBytes(bad), ErrBadCommand)
	if f.get(api.ConfigMap, "ns", "x") != nil {
		t.Fatal("part of a malformed batch was applied")
	}
}

// TestDeploymentStatusRoundTrip makes sure apps kinds go through the same
// paths: status subresource and generation.
func TestDeploymentStatusRoundTrip(t *testing.T) {
	f := newTestFSM(t)
	f.mustApply(createCmd(t, namespace("ns")))
	d := deployment("ns", "web", 2)
	f.mustApply(createCmd(t, d))
	d.Status = appsv1.DeploymentStatus{ObservedGeneration: 1, Replicas: 2, ReadyReplicas: 2}
	r := f.mustApply(statusCmd(t, d)).Record.Obj.(*appsv1.Deployment)
	if r.Status.ReadyReplicas != 2 || r.Generation != 1 {
		t.Fatalf("deployment status %+v generation %d", r.Status, r.Generation)
	}
	three := int32(3)
	d.Spec.Replicas = &three
	d.Status = appsv1.DeploymentStatus{}
	r = f.mustApply(updateCmd(t, d)).Record.Obj.(*appsv1.Deployment)
	if *r.Spec.Replicas != 3 || r.Generation != 2 || r.Status.ReadyReplicas != 2 {
		t.Fatalf("scaled deployment: replicas %d generation %d status %+v", *r.Spec.Replicas, r.Generation, r.Status)
	}
}
