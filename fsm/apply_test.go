package fsm

import (
	"context"
	"errors"
	"testing"

	"github.com/hashicorp/raft"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"orch.dev/orch/api"
)

func TestCreate(t *testing.T) {
	f := newTestFSM(t)
	res := f.mustApply(createCmd(t, namespace("ns")))
	if r := res.Record; r.Version != 1 || r.Obj.GetResourceVersion() != "1" || r.Obj.GetGeneration() != 1 || r.Key != "ns" {
		t.Fatalf("namespace record: version %d rv %q generation %d key %q", r.Version, r.Obj.GetResourceVersion(), r.Obj.GetGeneration(), r.Key)
	}

	// The writer's resourceVersion and generation are replaced; kinds
	// without a spec have no generation.
	cm := configMap("ns", "a", map[string]string{"k": "v"})
	cm.ResourceVersion = "99"
	res = f.mustApply(createCmd(t, cm))
	if r := res.Record; r.Version != 2 || r.Obj.GetResourceVersion() != "2" || r.Obj.GetGeneration() != 0 || r.Key != "ns/a" {
		t.Fatalf("configmap record: version %d rv %q generation %d key %q", r.Version, r.Obj.GetResourceVersion(), r.Obj.GetGeneration(), r.Key)
	}
	p := pod("ns", "p", "busybox")
	p.Generation = 7
	if r := f.mustApply(createCmd(t, p)).Record; r.Obj.GetGeneration() != 1 || r.Version != 3 {
		t.Fatalf("pod generation %d version %d, want 1 and 3", r.Obj.GetGeneration(), r.Version)
	}
	if r := f.mustApply(createCmd(t, node("n1"))).Record; r.Key != "n1" || r.Obj.GetGeneration() != 1 {
		t.Fatalf("node key %q generation %d", r.Key, r.Obj.GetGeneration())
	}

	got := f.get(api.ConfigMap, "ns", "a")
	if got == nil || got.Obj.(*corev1.ConfigMap).Data["k"] != "v" || got.Obj.GetUID() != "uid-ns-a" {
		t.Fatalf("stored configmap %+v", got)
	}
	if got.Obj.GetObjectKind().GroupVersionKind().Kind != "ConfigMap" {
		t.Fatalf("stored object has no TypeMeta: %s", got.JSON())
	}
	wantEvents(t, f.events(0), "ADDED namespaces ns @1", "ADDED configmaps ns/a @2", "ADDED pods ns/p @3", "ADDED nodes n1 @4")
	if f.AppliedIndex() != 4 || f.View().Index() != 4 {
		t.Fatalf("applied %d view %d, want 4", f.AppliedIndex(), f.View().Index())
	}
}

func TestCreateErrors(t *testing.T) {
	terminating := namespace("dying", "orch.dev/test")
	tests := []struct {
		name    string
		cmd     func(t *testing.T) Command
		want    error
		errKind *api.Kind // ObjectError fields, for object errors
		errNS   string
		errName string
	}{
		{"already exists", func(t *testing.T) Command {
			return createCmd(t, configMap("ns", "a", map[string]string{"other": "data"}))
		}, ErrAlreadyExists, api.ConfigMap, "ns", "a"},
		{"namespace already exists", func(t *testing.T) Command { return createCmd(t, namespace("ns")) },
			ErrAlreadyExists, api.Namespace, "", "ns"},
		{"namespace missing", func(t *testing.T) Command { return createCmd(t, configMap("nope", "a", nil)) },
			ErrNotFound, api.Namespace, "", "nope"},
		{"namespace terminating", func(t *testing.T) Command { return createCmd(t, pod("dying", "p", "busybox")) },
			ErrForbidden, api.Pod, "dying", "p"},
		{"unknown kind", func(t *testing.T) Command {
			return &Create{Kind: "CronJob", Object: marshal(t, configMap("ns", "a", nil))}
		}, ErrBadCommand, nil, "", ""},
		{"garbage object", func(t *testing.T) Command { return &Create{Kind: "ConfigMap", Object: []byte{0xff, 0xff}} },
			ErrBadCommand, nil, "", ""},
		{"no name", func(t *testing.T) Command { return createCmd(t, configMap("ns", "", nil)) },
			ErrBadCommand, nil, "", ""},
		{"namespaced kind without namespace", func(t *testing.T) Command { return createCmd(t, configMap("", "a", nil)) },
			ErrBadCommand, nil, "", ""},
		{"cluster kind with namespace", func(t *testing.T) Command {
			n := node("n1")
			n.Namespace = "ns"
			return createCmd(t, n)
		}, ErrBadCommand, nil, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newTestFSM(t)
			f.mustApply(createCmd(t, namespace("ns")))
			f.mustApply(createCmd(t, configMap("ns", "a", map[string]string{"k": "v"})))
			f.mustApply(createCmd(t, terminating))
			f.mustApply(&Delete{Kind: "Namespace", Name: "dying", DeletionTime: 1})
			before, last := dump(f.View()), f.index
			res := f.apply(tt.cmd(t))
			wantErr(t, res, tt.want)
			if res.Record != nil || res.Deleted {
				t.Fatalf("failed create returned record %v deleted %v", res.Record, res.Deleted)
			}
			var oe *ObjectError
			if tt.errKind != nil {
				if !errors.As(res.Err, &oe) || oe.Kind != tt.errKind || oe.Namespace != tt.errNS || oe.Name != tt.errName {
					t.Fatalf("error %#v, want ObjectError about %s %s/%s", res.Err, tt.errKind.Kind, tt.errNS, tt.errName)
				}
			}
			if len(f.events(last)) != 0 {
				t.Fatalf("failed create emitted events %v", describe(f.events(last)))
			}
			if after := dump(f.View()); after[len("index 5"):] != before[len("index 4"):] || f.View().Index() != 5 {
				t.Fatalf("failed create changed state:\n%s\n%s", before, after)
			}
		})
	}
}

// setupPod returns an FSM holding namespace ns (index 1) and pod ns/p
// (index 2, generation 1, phase Pending), and a copy of the pod without
// its resourceVersion, for unconditional updates.
func setupPod(t *testing.T) (*testFSM, *corev1.Pod) {
	f := newTestFSM(t)
	f.mustApply(createCmd(t, namespace("ns")))
	f.mustApply(createCmd(t, pod("ns", "p", "busybox:1")))
	p := f.get(api.Pod, "ns", "p").Copy().(*corev1.Pod)
	p.ResourceVersion = ""
	return f, p
}

func TestUpdatePreconditions(t *testing.T) {
	tests := []struct {
		name, rv, uid string
		want          error
	}{
		{"unconditional", "", "", nil},
		{"current version", "2", "", nil},
		{"stale version", "1", "", ErrConflict},
		{"version from the future", "3", "", ErrConflict},
		{"matching uid", "", "uid-ns-p", nil},
		{"matching uid and version", "2", "uid-ns-p", nil},
		{"other uid", "", "uid-of-an-older-p", ErrConflict},
		{"other uid, current version", "2", "uid-of-an-older-p", ErrConflict},
		{"malformed version", "two", "", ErrBadCommand},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, p := setupPod(t)
			p.ResourceVersion, p.UID = tt.rv, types.UID(tt.uid)
			p.Spec.Containers[0].Image = "busybox:2"
			res := f.apply(updateCmd(t, p))
			if tt.want != nil {
				wantErr(t, res, tt.want)
				if got := f.get(api.Pod, "ns", "p"); got.Version != 2 {
					t.Fatalf("failed update changed the pod to version %d", got.Version)
				}
				wantEvents(t, f.events(2))
				return
			}
			if res.Err != nil {
				t.Fatal(res.Err)
			}
			got := f.get(api.Pod, "ns", "p")
			if got != res.Record || got.Version != 3 || got.Obj.GetResourceVersion() != "3" || got.Obj.GetUID() != "uid-ns-p" {
				t.Fatalf("updated pod: version %d rv %q uid %q", got.Version, got.Obj.GetResourceVersion(), got.Obj.GetUID())
			}
			if img := got.Obj.(*corev1.Pod).Spec.Containers[0].Image; img != "busybox:2" {
				t.Fatalf("image %q", img)
			}
			wantEvents(t, f.events(2), "MODIFIED pods ns/p @3")
		})
	}
}

func TestUpdateNotFound(t *testing.T) {
	f, _ := setupPod(t)
	res := f.apply(updateCmd(t, pod("ns", "q", "busybox")))
	wantErr(t, res, ErrNotFound)
	var oe *ObjectError
	if !errors.As(res.Err, &oe) || oe.Kind != api.Pod || oe.Name != "q" {
		t.Fatalf("error %#v", res.Err)
	}
	wantErr(t, f.apply(&Update{Kind: "Pod", Object: []byte{0x0a, 0xff}}), ErrBadCommand)
	wantErr(t, f.apply(&Update{Kind: "Widget", Object: marshal(t, pod("ns", "p", "x"))}), ErrBadCommand)
	wantEvents(t, f.events(2))
}

func TestUpdateStatusSubresource(t *testing.T) {
	f, p := setupPod(t)
	p.Labels = map[string]string{"ignored": "true"}
	p.Spec.Containers[0].Image = "ignored"
	p.Status = corev1.PodStatus{Phase: corev1.PodRunning, PodIP: "10.244.0.5"}
	res := f.mustApply(statusCmd(t, p))
	got := res.Record.Obj.(*corev1.Pod)
	if got.Status.Phase != corev1.PodRunning || got.Status.PodIP != "10.244.0.5" {
		t.Fatalf("status not written: %+v", got.Status)
	}
	if got.Labels != nil || got.Spec.Containers[0].Image != "busybox:1" {
		t.Fatalf("status update changed more than status: %s", res.Record.JSON())
	}
	if got.Generation != 1 || res.Record.Version != 3 {
		t.Fatalf("generation %d version %d, want 1 and 3", got.Generation, res.Record.Version)
	}

	// The same status again is a no-op.
	again := f.apply(statusCmd(t, p))
	if again.Err != nil || again.Record != res.Record {
		t.Fatalf("repeated status update: %+v", again)
	}
	// Preconditions apply to status writes too.
	p.ResourceVersion = "2"
	p.Status.Phase = corev1.PodFailed
	wantErr(t, f.apply(statusCmd(t, p)), ErrConflict)
	// Kinds without status have no status subresource.
	f.mustApply(createCmd(t, configMap("ns", "cm", nil)))
	wantErr(t, f.apply(statusCmd(t, configMap("ns", "cm", map[string]string{"a": "b"}))), ErrNotFound)
	wantEvents(t, f.events(2), "MODIFIED pods ns/p @3", "ADDED configmaps ns/cm @6")
}

func TestUpdateMainResource(t *testing.T) {
	f, p := setupPod(t)
	f.mustApply(statusCmd(t, &corev1.Pod{ObjectMeta: meta("ns", "p"), Status: corev1.PodStatus{Phase: corev1.PodRunning}}))

	// A write to the main resource keeps the stored status and the
	// server-owned metadata; a label change leaves the generation alone.
	p.Labels = map[string]string{"new": "label"}
	p.Status = corev1.PodStatus{Phase: corev1.PodFailed}
	p.UID = ""
	p.CreationTimestamp = metav1.Unix(0, 0)
	deleting := metav1.Unix(5, 0)
	p.DeletionTimestamp = &deleting
	p.Generation = 40
	res := f.mustApply(updateCmd(t, p))
	got := res.Record.Obj.(*corev1.Pod)
	if got.Labels["new"] != "label" || got.Status.Phase != corev1.PodRunning {
		t.Fatalf("main update: labels %v phase %q", got.Labels, got.Status.Phase)
	}
	if got.Generation != 1 || got.UID != "uid-ns-p" || !got.CreationTimestamp.Equal(&epoch) || got.DeletionTimestamp != nil {
		t.Fatalf("server-owned metadata changed: %s", res.Record.JSON())
	}

	// A spec change bumps the generation, once per change.
	p.Spec.Containers[0].Image = "busybox:2"
	if g := f.mustApply(updateCmd(t, p)).Record.Obj.GetGeneration(); g != 2 {
		t.Fatalf("generation after spec change %d, want 2", g)
	}
	p.Annotations = map[string]string{"a": "b"}
	if g := f.mustApply(updateCmd(t, p)).Record.Obj.GetGeneration(); g != 2 {
		t.Fatalf("generation after metadata change %d, want 2", g)
	}
	p.Spec.Containers[0].Image = "busybox:3"
	if g := f.mustApply(updateCmd(t, p)).Record.Obj.GetGeneration(); g != 3 {
		t.Fatalf("generation after second spec change %d, want 3", g)
	}

	// Kinds without a spec are replaced whole and keep generation 0.
	f.mustApply(createCmd(t, configMap("ns", "cm", map[string]string{"a": "1", "b": "2"})))
	r := f.mustApply(updateCmd(t, configMap("ns", "cm", map[string]string{"c": "3"}))).Record
	if d := r.Obj.(*corev1.ConfigMap).Data; len(d) != 1 || d["c"] != "3" || r.Obj.GetGeneration() != 0 {
		t.Fatalf("configmap after update %s", r.JSON())
	}
	wantEvents(t, f.events(2), "MODIFIED pods ns/p @3", "MODIFIED pods ns/p @4", "MODIFIED pods ns/p @5",
		"MODIFIED pods ns/p @6", "MODIFIED pods ns/p @7", "ADDED configmaps ns/cm @8", "MODIFIED configmaps ns/cm @9")
}

func TestUpdateNoOp(t *testing.T) {
	f, p := setupPod(t)
	old := f.get(api.Pod, "ns", "p")
	for _, rv := range []string{"2", ""} {
		p.ResourceVersion = rv
		res := f.apply(updateCmd(t, p))
		if res.Err != nil || res.Record != old || res.Deleted {
			t.Fatalf("no-op update (rv %q) = %+v, want the stored record", rv, res)
		}
	}
	// Status on the main resource is ignored, so this changes nothing either.
	p.Status.Phase = corev1.PodSucceeded
	if res := f.apply(updateCmd(t, p)); res.Record != old {
		t.Fatalf("update differing only in status created a version: %s", res.Record.JSON())
	}
	if f.get(api.Pod, "ns", "p") != old || f.AppliedIndex() != 5 {
		t.Fatalf("no-op update changed the state (applied %d)", f.AppliedIndex())
	}
	wantEvents(t, f.events(2))
}

func TestUpdateRemovingLastFinalizerDeletes(t *testing.T) {
	f := newTestFSM(t)
	f.mustApply(createCmd(t, namespace("ns")))
	cm := configMap("ns", "cm", map[string]string{"k": "v"})
	cm.Finalizers = []string{"orch.dev/a", "orch.dev/b"}
	f.mustApply(createCmd(t, cm))

	// Removing a finalizer before deletion is an ordinary update.
	cm.Finalizers = []string{"orch.dev/a"}
	if res := f.mustApply(updateCmd(t, cm)); res.Deleted || f.get(api.ConfigMap, "ns", "cm") == nil {
		t.Fatal("finalizer removal before deletion deleted the object")
	}
	cm.Finalizers = []string{"orch.dev/a", "orch.dev/b"}
	f.mustApply(updateCmd(t, cm))
	f.mustApply(&Delete{Kind: "ConfigMap", Namespace: "ns", Name: "cm", DeletionTime: 1e18})

	cm.Finalizers = []string{"orch.dev/b"}
	res := f.mustApply(updateCmd(t, cm))
	if res.Deleted || res.Record.Obj.GetDeletionTimestamp() == nil {
		t.Fatalf("removing one of two finalizers: deleted=%v %s", res.Deleted, res.Record.JSON())
	}
	cm.Finalizers = nil
	res = f.mustApply(updateCmd(t, cm))
	if !res.Deleted || res.Record.Version != 7 || res.Record.Obj.GetResourceVersion() != "7" {
		t.Fatalf("removing the last finalizer: deleted=%v version %d", res.Deleted, res.Record.Version)
	}
	if f.get(api.ConfigMap, "ns", "cm") != nil {
		t.Fatal("object still stored after its last finalizer was removed")
	}
	if fin := res.Record.Obj.GetFinalizers(); len(fin) != 0 {
		t.Fatalf("the deleted object's last state still lists finalizers %v", fin)
	}
	wantEvents(t, f.events(0), "ADDED namespaces ns @1", "ADDED configmaps ns/cm @2", "MODIFIED configmaps ns/cm @3",
		"MODIFIED configmaps ns/cm @4", "MODIFIED configmaps ns/cm @5", "MODIFIED configmaps ns/cm @6", "DELETED configmaps ns/cm @7")
}

func TestApplyBatch(t *testing.T) {
	f := newTestFSM(t)
	ns := Encode(createCmd(t, namespace("ns")))
	cm := Encode(createCmd(t, configMap("ns", "a", nil)))
	logs := []*raft.Log{
		{Index: 5, Type: raft.LogCommand, Data: ns},
		{Index: 6, Type: raft.LogConfiguration, Data: []byte("not a command")},
		{Index: 7, Type: raft.LogCommand, Data: cm},
		{Index: 8, Type: raft.LogCommand, Data: cm},
	}
	results := f.ApplyBatch(logs)
	if len(results) != 4 || results[1] != nil {
		t.Fatalf("results %v", results)
	}
	if r := results[0].(*Result); r.Err != nil || r.Record.Version != 5 {
		t.Fatalf("result 0: %+v", r)
	}
	if r := results[2].(*Result); r.Err != nil || r.Record.Version != 7 {
		t.Fatalf("result 2: %+v", r)
	}
	wantErr(t, results[3].(*Result), ErrAlreadyExists)
	if f.AppliedIndex() != 8 || f.View().Index() != 8 {
		t.Fatalf("applied %d view %d, want 8", f.AppliedIndex(), f.View().Index())
	}
	wantEvents(t, f.events(0), "ADDED namespaces ns @5", "ADDED configmaps ns/a @7")
	if len(f.ApplyBatch(nil)) != 0 || f.AppliedIndex() != 8 {
		t.Fatal("empty ApplyBatch changed the applied index")
	}
}

func TestWaitApplied(t *testing.T) {
	f := newTestFSM(t)
	done := make(chan error, 1)
	go func() { done <- f.WaitApplied(context.Background(), 3) }()
	for i := 0; i < 3; i++ {
		f.mustApply(createCmd(t, namespace(string(rune('a'+i)))))
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if err := f.WaitApplied(context.Background(), 2); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := f.WaitApplied(ctx, 4); !errors.Is(err, context.Canceled) {
		t.Fatalf("WaitApplied past the applied index with a cancelled context: %v", err)
	}
}

// The commands of one entry see each other's writes, although the applier
// reads rows from the state before the entry plus what the entry wrote
// (not through the write transaction): a second create of a name fails, a
// retried request ID answers with the first, a name deleted earlier in the
// entry can be created again, and an update sees the entry's create.
func TestCommandsOfOneEntrySeeEachOther(t *testing.T) {
	f := newTestFSM(t)
	f.mustApply(createCmd(t, namespace("ns")))
	f.mustApply(createCmd(t, configMap("ns", "old", nil)))
	retried := createCmd(t, configMap("ns", "r", nil))
	retried.RequestID = "req-1"
	updated := configMap("ns", "a", map[string]string{"k": "v2"})
	res := f.apply(&Batch{Commands: []Command{
		createCmd(t, configMap("ns", "a", map[string]string{"k": "v1"})),
		createCmd(t, configMap("ns", "a", nil)),
		retried,
		retried,
		&Delete{Kind: "ConfigMap", Namespace: "ns", Name: "old"},
		createCmd(t, configMap("ns", "old", map[string]string{"k": "again"})),
		updateCmd(t, updated),
	}})
	if res.Err != nil || len(res.Batch) != 7 {
		t.Fatalf("batch: %v (%d results)", res.Err, len(res.Batch))
	}
	r := res.Batch
	if r[0].Err != nil || !errors.Is(r[1].Err, ErrAlreadyExists) {
		t.Fatalf("two creates of one name: %v, %v", r[0].Err, r[1].Err)
	}
	if r[2].Err != nil || r[3].Duplicate == nil || r[3].Record.Version != r[2].Record.Version {
		t.Fatalf("retried request ID in the same entry: %+v, %+v", r[2], r[3])
	}
	if r[4].Err != nil || r[5].Err != nil || r[6].Err != nil {
		t.Fatalf("delete, create again, update: %v, %v, %v", r[4].Err, r[5].Err, r[6].Err)
	}
	if got := f.get(api.ConfigMap, "ns", "old").Obj.(*corev1.ConfigMap).Data["k"]; got != "again" {
		t.Fatalf("re-created object holds %q", got)
	}
	if got := f.get(api.ConfigMap, "ns", "a").Obj.(*corev1.ConfigMap).Data["k"]; got != "v2" {
		t.Fatalf("updated object holds %q", got)
	}
}
