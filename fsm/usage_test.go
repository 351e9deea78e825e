package fsm

import (
	"bytes"
	"fmt"
	"io"
	"maps"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/types"
	"pgregory.net/rapid"

	"orch.dev/orch/api"
)

// checkUsage fails unless the incrementally kept usage equals the usage
// summed from the pods.
func checkUsage(t testing.TB, f *FSM) {
	t.Helper()
	if want := usageOf(f.View().txn); !maps.EqualFunc(f.usage, want, equalResources) {
		t.Fatalf("node usage kept incrementally\n%v\ndiffers from the usage of the pods\n%v", f.usage, want)
	}
}

// rapidTB lets the package's test helpers (which take a testing.TB) fail a
// rapid check, so that rapid can shrink the failing case.
type rapidTB struct {
	testing.TB // the enclosing test, for the rest of the interface
	rt         *rapid.T
}

func (r rapidTB) Helper()                   {}
func (r rapidTB) Fatal(args ...any)         { r.rt.Fatal(args...) }
func (r rapidTB) Fatalf(f string, a ...any) { r.rt.Fatalf(f, a...) }
func (r rapidTB) Error(args ...any)         { r.rt.Error(args...) }
func (r rapidTB) Errorf(f string, a ...any) { r.rt.Errorf(f, a...) }
func (r rapidTB) FailNow()                  { r.rt.FailNow() }
func (r rapidTB) Logf(f string, a ...any)   { r.rt.Logf(f, a...) }

var usageNodes = []string{"n1", "n2", "n3"}

func usagePod(t *rapid.T, ns, name string, serial int) *corev1.Pod {
	p := pod(ns, name, "img")
	p.UID = types.UID(fmt.Sprintf("uid-%d", serial))
	req := corev1.ResourceList{}
	if rapid.Bool().Draw(t, "cpu") {
		req[corev1.ResourceCPU] = *resource.NewMilliQuantity(int64(rapid.IntRange(0, 300).Draw(t, "millicpu")), resource.DecimalSI)
	}
	if rapid.Bool().Draw(t, "memory") {
		req[corev1.ResourceMemory] = *resource.NewQuantity(int64(rapid.IntRange(0, 1<<30).Draw(t, "bytes")), resource.BinarySI)
	}
	if rapid.IntRange(0, 3).Draw(t, "gpu") == 0 {
		req["nvidia.com/gpu"] = *resource.NewQuantity(1, resource.DecimalSI)
	}
	p.Spec.Containers[0].Resources.Requests = req
	if rapid.IntRange(0, 3).Draw(t, "init") == 0 {
		p.Spec.InitContainers = []corev1.Container{{Name: "init", Image: "img", Resources: corev1.ResourceRequirements{
			Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("500m")}}}}
	}
	if rapid.IntRange(0, 3).Draw(t, "prebound") == 0 {
		p.Spec.NodeName = rapid.SampledFrom(usageNodes).Draw(t, "node")
	}
	return p
}

// The usage table always equals the usage summed from the pods, whatever
// the writes: creates (some already bound), bindings, phase changes,
// graceful and immediate deletions, evictions, nodes and namespaces coming
// and going, and spec changes the API would refuse but the log may hold.
// A snapshot restore rebuilds the same table.
func TestUsageFollowsPods(tt *testing.T) {
	rapid.Check(tt, func(rt *rapid.T) {
		t := rapidTB{tt, rt}
		f := newTestFSM(t)
		for _, ns := range []string{"ns", "tmp"} {
			f.mustApply(createCmd(t, namespace(ns)))
		}
		for _, n := range usageNodes {
			f.mustApply(createCmd(t, readyNode(n, "2", "4Gi", 5)))
		}
		serial := 0
		names := []string{"a", "b", "c", "d", "e", "f"}
		pick := func() (string, string) {
			return rapid.SampledFrom([]string{"ns", "ns", "tmp"}).Draw(rt, "ns"), rapid.SampledFrom(names).Draw(rt, "pod")
		}
		steps := rapid.IntRange(1, 60).Draw(rt, "steps")
		for range steps {
			switch rapid.IntRange(0, 9).Draw(rt, "op") {
			case 0, 1:
				ns, name := pick()
				serial++
				f.apply(createCmd(t, usagePod(rt, ns, name, serial)))
			case 2, 3:
				b := &Bind{Time: epoch.UnixNano()}
				for i := rapid.IntRange(1, 4).Draw(rt, "bindings"); i > 0; i-- {
					ns, name := pick()
					b.Bindings = append(b.Bindings, Binding{Namespace: ns, Name: name, Node: rapid.SampledFrom(usageNodes).Draw(rt, "to")})
				}
				f.apply(b)
			case 4:
				ns, name := pick()
				if rec := f.get(api.Pod, ns, name); rec != nil {
					p := rec.Copy().(*corev1.Pod)
					p.Status.Phase = rapid.SampledFrom([]corev1.PodPhase{corev1.PodRunning, corev1.PodSucceeded, corev1.PodFailed}).Draw(rt, "phase")
					f.apply(statusCmd(t, p))
				}
			case 5:
				ns, name := pick()
				del := &Delete{Kind: "Pod", Namespace: ns, Name: name, DeletionTime: epoch.UnixNano()}
				if rapid.Bool().Draw(rt, "now") {
					zero := int64(0)
					del.Grace = &zero
				}
				f.apply(del)
			case 6:
				ns, name := pick()
				f.apply(&Evict{Namespace: ns, Name: name, DeletionTime: epoch.UnixNano()})
			case 7:
				ns, name := pick()
				if rec := f.get(api.Pod, ns, name); rec != nil {
					p := rec.Copy().(*corev1.Pod)
					p.Spec.Containers[0].Resources.Requests = corev1.ResourceList{
						corev1.ResourceCPU: *resource.NewMilliQuantity(int64(rapid.IntRange(0, 900).Draw(rt, "resize")), resource.DecimalSI)}
					f.apply(updateCmd(t, p))
				}
			case 8:
				n := rapid.SampledFrom(usageNodes).Draw(rt, "node")
				if f.get(api.Node, "", n) != nil {
					f.apply(&Delete{Kind: "Node", Name: n})
				} else {
					f.apply(createCmd(t, readyNode(n, "2", "4Gi", 5)))
				}
			case 9:
				if f.get(api.Namespace, "", "tmp") != nil {
					f.apply(&Delete{Kind: "Namespace", Name: "tmp"})
				} else {
					f.apply(createCmd(t, namespace("tmp")))
				}
			}
			checkUsage(t, f.FSM)
		}
		var buf bytes.Buffer
		if err := WriteSnapshot(&buf, f.View()); err != nil {
			t.Fatal(err)
		}
		g := New(Config{})
		if err := g.Restore(io.NopCloser(&buf)); err != nil {
			t.Fatal(err)
		}
		if !maps.EqualFunc(g.usage, f.usage, equalResources) {
			t.Fatalf("usage after restore\n%v\nwant\n%v", g.usage, f.usage)
		}
	})
}

// A binding is checked against what the node's pods take, counting the
// pods bound earlier in the same entry and forgetting pods that finished
// or were deleted.
func TestBindCountsUsage(t *testing.T) {
	f := newTestFSM(t)
	f.mustApply(createCmd(t, namespace("ns")))
	f.mustApply(createCmd(t, readyNode("n1", "1", "1Gi", 10)))
	for _, name := range []string{"a", "b", "c", "d"} {
		f.mustApply(createCmd(t, podWith(name, "400m")))
	}
	res := f.mustApplyBatchResults(bindOf("a@n1", "b@n1", "c@n1"))
	if res.Batch[0].Err != nil || res.Batch[1].Err != nil {
		t.Fatalf("first two bindings: %v, %v", res.Batch[0].Err, res.Batch[1].Err)
	}
	wantErr(t, res.Batch[2], ErrDoesNotFit)
	if got := f.usage["n1"][corev1.ResourceCPU]; got != 800 {
		t.Fatalf("n1 uses %d millicores, want 800", got)
	}

	// a finishes: its room is free again.
	a := f.get(api.Pod, "ns", "a").Copy().(*corev1.Pod)
	a.Status.Phase = corev1.PodSucceeded
	f.mustApply(statusCmd(t, a))
	res = f.mustApplyBatchResults(bindOf("c@n1", "d@n1"))
	if res.Batch[0].Err != nil {
		t.Fatalf("binding c after a finished: %v", res.Batch[0].Err)
	}
	wantErr(t, res.Batch[1], ErrDoesNotFit)

	// b is deleted at once: d fits.
	zero := int64(0)
	f.mustApply(&Delete{Kind: "Pod", Namespace: "ns", Name: "b", Grace: &zero})
	if res := f.mustApplyBatchResults(bindOf("d@n1")); res.Batch[0].Err != nil {
		t.Fatalf("binding d after b was deleted: %v", res.Batch[0].Err)
	}
	checkUsage(t, f.FSM)
}
