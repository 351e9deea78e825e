package sched

import (
	"context"
	"log/slog"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"orch.dev/orch/api"
	"orch.dev/orch/fsm"
)

// loopHarness is the scheduling loop's state (cache and queue) fed from a
// bare FSM, with the loop's steps driven by hand: no Raft, no goroutines.
type loopHarness struct {
	t     *testing.T
	f     *memFSM
	r     *runner
	index uint64
}

func newLoopHarness(t *testing.T, objs ...api.Object) *loopHarness {
	f := newMemFSM(t)
	f.create(t, api.Namespace, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "default"}})
	for _, o := range objs {
		k, _ := api.KindByName(kindName(o))
		f.create(t, k, o)
	}
	view := f.f.View()
	h := &loopHarness{t: t, f: f, index: view.Index(),
		r: &runner{log: slog.New(slog.DiscardHandler), cache: newCache(view)}}
	return h
}

func kindName(o api.Object) string {
	switch o.(type) {
	case *corev1.Node:
		return "Node"
	case *corev1.Pod:
		return "Pod"
	}
	return ""
}

// catchUp applies the FSM's new changes to the cache, as Run does.
func (h *loopHarness) catchUp() {
	evs, _, err := h.f.f.History().Since(h.index, nil)
	if err != nil {
		h.t.Fatal(err)
	}
	for _, e := range evs {
		h.r.cache.apply(e)
		h.index = e.Index()
	}
	h.r.cache.queue.Move(h.r.cache.takeChanges(), t0)
}

// plan pops and schedules what is queued and assumes the bindings, as a
// cycle does before proposing them.
func (h *loopHarness) plan() []fsm.Binding {
	plan := Schedule(h.r.cache.snap, h.r.cache.queue.Pop(100), Options{Seed: 1})
	for _, b := range plan.Bindings {
		h.r.cache.assume(b.Namespace+"/"+b.Name, b.Node)
	}
	return plan.Bindings
}

func (h *loopHarness) bind(bs []fsm.Binding) *fsm.Result {
	return h.f.apply(h.t, &fsm.Bind{Bindings: bs, Time: 1})
}

// A refused binding is undone in the scheduler's account of the node and
// retried after a backoff; an accepted one leaves the queue.
func TestRefusedBindingIsRetried(t *testing.T) {
	h := newLoopHarness(t, node("n1", "2", "4Gi", 10, nil), pod("default", "a", "1", "", 0), pod("default", "b", "1", "", 0))
	bs := h.plan()
	if len(bs) != 2 {
		t.Fatalf("planned %v", bs)
	}
	// Another writer takes the node's cpu before the entry applies.
	f := h.f.f.View().Get(api.Node, "", "n1").Obj.(*corev1.Node).DeepCopy()
	f.Status.Allocatable[corev1.ResourceCPU] = quantity("1")
	b, _ := f.Marshal()
	h.f.apply(t, &fsm.Update{Kind: api.Node.Kind, Object: b, Status: true})
	res := h.bind(bs)
	if res.Batch[0].Err != nil || res.Batch[1].Err == nil {
		t.Fatalf("bind results %v, %v: want the second refused", res.Batch[0].Err, res.Batch[1].Err)
	}
	h.r.handle(context.Background(), &inflight{bindings: bs, res: res})
	h.catchUp()
	refused := bs[1].Namespace + "/" + bs[1].Name
	n := h.r.cache.snap.Node("n1")
	if len(n.Pods) != 1 || n.Requested.MilliCPU != 1000 {
		t.Errorf("n1 accounts %d pods, %dm cpu: the refused binding is still assumed", len(n.Pods), n.Requested.MilliCPU)
	}
	if !h.r.cache.queue.Has(refused) || h.r.cache.queue.Has(bs[0].Namespace+"/"+bs[0].Name) {
		t.Errorf("queue: refused pod known %v, bound pod known %v", h.r.cache.queue.Has(refused), h.r.cache.queue.Has(bs[0].Namespace+"/"+bs[0].Name))
	}
	if h.r.cache.queue.Flush(time.Now().Add(time.Hour)); h.r.cache.queue.Len() != 1 {
		t.Errorf("the refused pod is not retried after its backoff")
	}
}

// The outcome of a binding is about the pod it was made for: when that pod
// was deleted and another of the same name created meanwhile, the new one
// stays queued.
func TestBindingOutcomeOfAReplacedPod(t *testing.T) {
	h := newLoopHarness(t, node("n1", "2", "4Gi", 10, nil), pod("default", "p", "1", "", 0))
	bs := h.plan()
	res := h.bind(bs)
	h.f.apply(t, &fsm.Delete{Kind: api.Pod.Kind, Namespace: "default", Name: "p", Grace: new(int64(0))})
	again := pod("default", "p", "1", "", 0)
	again.UID = "uid-2"
	h.f.create(t, api.Pod, again)
	h.catchUp() // the loop sees the new pod before the old binding's answer
	h.r.handle(context.Background(), &inflight{bindings: bs, res: res})
	if !h.r.cache.queue.Has("default/p") || h.r.cache.queue.Len() != 1 {
		t.Fatalf("the new default/p left the queue (known %v, active %d)", h.r.cache.queue.Has("default/p"), h.r.cache.queue.Len())
	}
	if got := h.plan(); len(got) != 1 || got[0].UID != "uid-2" {
		t.Errorf("planned %v, want the new pod", got)
	}
}
