package fsm

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"orch.dev/orch/api"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// epoch is the fixed creationTimestamp of test objects: tests and golden
// files must not depend on the clock.
var epoch = metav1.NewTime(time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC))

func meta(ns, name string) metav1.ObjectMeta {
	return metav1.ObjectMeta{
		Namespace:         ns,
		Name:              name,
		UID:               types.UID("uid-" + ns + "-" + name),
		CreationTimestamp: epoch,
	}
}

func namespace(name string, finalizers ...string) *corev1.Namespace {
	n := &corev1.Namespace{ObjectMeta: meta("", name)}
	n.Finalizers = finalizers
	n.Status.Phase = corev1.NamespaceActive
	return n
}

func configMap(ns, name string, data map[string]string) *corev1.ConfigMap {
	return &corev1.ConfigMap{ObjectMeta: meta(ns, name), Data: data}
}

func secret(ns, name string, data map[string][]byte) *corev1.Secret {
	return &corev1.Secret{ObjectMeta: meta(ns, name), Type: corev1.SecretTypeOpaque, Data: data}
}

func pod(ns, name, image string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: meta(ns, name),
		Spec: corev1.PodSpec{
			Containers:    []corev1.Container{{Name: "app", Image: image}},
			RestartPolicy: corev1.RestartPolicyAlways,
		},
		Status: corev1.PodStatus{Phase: corev1.PodPending},
	}
}

func deployment(ns, name string, replicas int32) *appsv1.Deployment {
	labels := map[string]string{"app": name}
	return &appsv1.Deployment{
		ObjectMeta: meta(ns, name),
		Spec: appsv1.DeploymentSpec{
			Replicas: &replicas,
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "nginx:1.27"}}},
			},
		},
	}
}

func replicaSet(ns, name string, owners ...metav1.Object) *appsv1.ReplicaSet {
	rs := &appsv1.ReplicaSet{ObjectMeta: meta(ns, name)}
	for _, o := range owners {
		rs.OwnerReferences = append(rs.OwnerReferences, metav1.OwnerReference{
			APIVersion: "apps/v1", Kind: "Deployment", Name: o.GetName(), UID: o.GetUID(),
		})
	}
	return rs
}

func node(name string) *corev1.Node {
	return &corev1.Node{ObjectMeta: meta("", name), Spec: corev1.NodeSpec{PodCIDR: "10.244.1.0/24"}}
}

// kindOf finds the registered kind of a typed object.
func kindOf(t testing.TB, obj api.Object) *api.Kind {
	t.Helper()
	for _, k := range api.Kinds {
		if fmt.Sprintf("%T", k.New()) == fmt.Sprintf("%T", obj) {
			return k
		}
	}
	t.Fatalf("no kind for %T", obj)
	return nil
}

func marshal(t testing.TB, obj api.Object) []byte {
	t.Helper()
	b, err := obj.Marshal()
	if err != nil {
		t.Fatalf("marshal %T: %v", obj, err)
	}
	return b
}

func createCmd(t testing.TB, obj api.Object) *Create {
	return &Create{Kind: kindOf(t, obj).Kind, Object: marshal(t, obj)}
}

func updateCmd(t testing.TB, obj api.Object) *Update {
	return &Update{Kind: kindOf(t, obj).Kind, Object: marshal(t, obj)}
}

func statusCmd(t testing.TB, obj api.Object) *Update {
	return &Update{Kind: kindOf(t, obj).Kind, Object: marshal(t, obj), Status: true}
}

// haltRecorder stands in for Config.Halt so that a command from the future
// is observable instead of a panic.
type haltRecorder struct {
	mu   sync.Mutex
	errs []error
}

func (h *haltRecorder) halt(err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.errs = append(h.errs, err)
}

func (h *haltRecorder) calls() []error {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]error(nil), h.errs...)
}

// testFSM wraps an FSM with a log index counter.
type testFSM struct {
	*FSM
	t     testing.TB
	index uint64
	halts *haltRecorder
}

func newTestFSM(t testing.TB) *testFSM {
	h := &haltRecorder{}
	return &testFSM{FSM: New(Config{Halt: h.halt}), t: t, halts: h}
}

// apply applies cmd as the next log entry and returns its result.
func (f *testFSM) apply(cmd Command) *Result {
	f.t.Helper()
	return f.applyBytes(Encode(cmd))
}

func (f *testFSM) applyBytes(data []byte) *Result {
	f.t.Helper()
	f.index++
	out := f.Apply(&raft.Log{Index: f.index, Type: raft.LogCommand, Data: data})
	res, ok := out.(*Result)
	if !ok || res == nil {
		f.t.Fatalf("Apply returned %T %v, want *Result", out, out)
	}
	return res
}

// mustApply applies cmd and fails the test on an error result.
func (f *testFSM) mustApply(cmd Command) *Result {
	f.t.Helper()
	res := f.apply(cmd)
	if res.Err != nil {
		f.t.Fatalf("apply %T at %d: %v", cmd, f.index, res.Err)
	}
	for i, sub := range res.Batch {
		if sub.Err != nil {
			f.t.Fatalf("apply batch command %d at %d: %v", i, f.index, sub.Err)
		}
	}
	return res
}

func (f *testFSM) get(k *api.Kind, ns, name string) *Record {
	return f.View().Get(k, ns, name)
}

// events returns the history after index.
func (f *testFSM) events(after uint64) []Event {
	f.t.Helper()
	evs, _, err := f.History().Since(after, nil)
	if err != nil {
		f.t.Fatalf("History().Since(%d): %v", after, err)
	}
	return evs
}

// describe renders events compactly: "ADDED configmaps a/b @3".
func describe(evs []Event) []string {
	out := make([]string, len(evs))
	for i, e := range evs {
		out[i] = fmt.Sprintf("%s %s %s @%d", e.Type, e.Record.Kind.Resource, e.Record.Key, e.Index())
	}
	return out
}

func wantEvents(t testing.TB, got []Event, want ...string) {
	t.Helper()
	g := describe(got)
	if strings.Join(g, "\n") != strings.Join(want, "\n") {
		t.Fatalf("events:\n  %s\nwant:\n  %s", strings.Join(g, "\n  "), strings.Join(want, "\n  "))
	}
}

func wantErr(t testing.TB, res *Result, sentinel error) {
	t.Helper()
	if !errors.Is(res.Err, sentinel) {
		t.Fatalf("result error = %v, want %v", res.Err, sentinel)
	}
}

// dump renders the complete state of a view (index, every record of every
// kind in key order with its version and JSON, every remembered request ID)
// for comparisons.
func dump(v *View) string {
	var b strings.Builder
	fmt.Fprintf(&b, "index %d\n", v.Index())
	for _, k := range api.Kinds {
		v.List(k, "", func(r *Record) bool {
			fmt.Fprintf(&b, "%s %s v%d %s\n", k.Kind, r.Key, r.Version, r.JSON())
			return true
		})
	}
	it, err := v.txn.Get(tableRequests, indexID)
	if err != nil {
		panic(err)
	}
	for raw := it.Next(); raw != nil; raw = it.Next() {
		fmt.Fprintf(&b, "request %+v\n", *raw.(*Request))
	}
	return b.String()
}

func snapshotBytes(t testing.TB, v *View) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := WriteSnapshot(&buf, v); err != nil {
		t.Fatalf("WriteSnapshot: %v", err)
	}
	return buf.Bytes()
}

// golden compares got with testdata/name, rewriting it under -update.
func golden(t testing.TB, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./fsm -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		at := 0
		for at < len(got) && at < len(want) && got[at] == want[at] {
			at++
		}
		t.Fatalf("%s changed: %d bytes, want %d; first difference at byte %d: %x, want %x.\n"+
			"A change to the encoding breaks logs and snapshots written by older servers; if it is intended, "+
			"add a new version instead and regenerate with go test ./fsm -update",
			path, len(got), len(want), at, got[at:min(at+16, len(got))], want[at:min(at+16, len(want))])
	}
}
