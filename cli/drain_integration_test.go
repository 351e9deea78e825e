package cli

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"orch.dev/orch/api"
	"orch.dev/orch/api/client"
)

// fakeCluster plays the parts of the cluster the drain tests need besides
// the API server: the node agents (which confirm a graceful deletion once
// the pod has stopped) and the ReplicaSet controller (which replaces an
// evicted pod on another node). It also checks the disruption budget from
// the outside: the fewest Ready pods of the "shop" deployment ever seen.
type fakeCluster struct {
	t     *testing.T
	cl    *client.Client
	rsRef metav1.OwnerReference
	gate  chan struct{} // closed by the test to let the first replacement start

	mu           sync.Mutex
	available    map[string]bool // shop pods: name -> available
	minAvailable int
	evicted      []string // terminating pods, in the order seen
	done         chan struct{}
}

func (f *fakeCluster) countAvailable() int {
	n := 0
	for _, ok := range f.available {
		if ok {
			n++
		}
	}
	return n
}

func podIsAvailable(p *corev1.Pod) bool {
	c, ok := findCondition(p, corev1.PodReady)
	return ok && c.Status == corev1.ConditionTrue && p.Spec.NodeName != "" && p.DeletionTimestamp == nil
}

func findCondition(p *corev1.Pod, t corev1.PodConditionType) (corev1.PodCondition, bool) {
	for _, c := range p.Status.Conditions {
		if c.Type == t {
			return c, true
		}
	}
	return corev1.PodCondition{}, false
}

// start watches namespace ns from its current state on.
func (f *fakeCluster) start(ctx context.Context, ns string) {
	list, err := f.cl.ListAll(ctx, api.Pod, ns, client.ListOptions{})
	if err != nil {
		f.t.Fatal(err)
	}
	f.available = map[string]bool{}
	for _, o := range list.Items {
		if p := o.(*corev1.Pod); strings.HasPrefix(p.Name, "shop-") {
			f.available[p.Name] = podIsAvailable(p)
		}
	}
	f.minAvailable = f.countAvailable()
	w, err := f.cl.Watch(ctx, api.Pod, ns, client.ListOptions{ResourceVersion: list.ResourceVersion})
	if err != nil {
		f.t.Fatal(err)
	}
	f.done = make(chan struct{})
	go func() {
		defer close(f.done)
		defer w.Stop()
		handled, first := map[string]bool{}, true
		for ev := range w.Events() {
			p := ev.Object.(*corev1.Pod)
			f.mu.Lock()
			if strings.HasPrefix(p.Name, "shop-") {
				if ev.Type == client.Deleted {
					delete(f.available, p.Name)
				} else {
					f.available[p.Name] = podIsAvailable(p)
				}
				f.minAvailable = min(f.minAvailable, f.countAvailable())
			}
			act := ev.Type != client.Deleted && p.DeletionTimestamp != nil && !handled[p.Name]
			if act {
				f.evicted = append(f.evicted, p.Name)
			}
			f.mu.Unlock()
			if !act {
				continue
			}
			handled[p.Name] = true
			if first && p.Spec.NodeName == "n1" {
				first = false
				select { // hold the replacement until drain has met a 429
				case <-f.gate:
				case <-ctx.Done():
					return
				}
			}
			if ref := metav1.GetControllerOf(p); ref != nil && ref.UID == f.rsRef.UID && p.Spec.NodeName != "n2" {
				if err := runningPod(f.t, f.cl, ns, p.Name+"-r", "n2", &f.rsRef); err != nil && ctx.Err() == nil {
					f.t.Errorf("replacing %s: %v", p.Name, err)
				}
			}
			zero := int64(0) // the node has stopped the pod
			if err := f.cl.Delete(ctx, api.Pod, ns, p.Name, client.DeleteOptions{Grace: &zero, UID: string(p.UID)}); err != nil && ctx.Err() == nil {
				f.t.Errorf("confirming the deletion of %s: %v", p.Name, err)
			}
		}
	}()
}

func podsOn(t *testing.T, cl *client.Client, node string) []string {
	t.Helper()
	list, err := cl.ListAll(context.Background(), api.Pod, "", client.ListOptions{FieldSelector: "spec.nodeName=" + node})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, o := range list.Items {
		names = append(names, o.GetName())
	}
	return names
}

// TestDrain drains nodes of hand-bound pods through the eviction API.
func TestDrain(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a server")
	}
	saved := evictionRetry
	evictionRetry = 20 * time.Millisecond
	t.Cleanup(func() { evictionRetry = saved })
	srv, cl := opsServer(t)
	mustNamespace(t, cl, "shop")
	for _, n := range []string{"n1", "n2", "n3", "n4", "n5"} {
		readyNode(t, cl, n)
	}
	// A deployment of 3 that may lose 1, its pods all on n1, and a
	// DaemonSet's pod there too.
	dep := mustCreate(t, cl, api.Deployment, opsDeployment("shop", "shop", "shop:1", 3, 1))
	rs := mustCreate(t, cl, api.ReplicaSet, opsReplicaSet(dep, "1111", "1", dep.Spec.Template, 3))
	rsRef := controllerRef("ReplicaSet", rs)
	for _, n := range []string{"shop-a", "shop-b", "shop-c"} {
		mustRunningPod(t, cl, "shop", n, "n1", &rsRef)
	}
	dsRef := metav1.OwnerReference{APIVersion: "apps/v1", Kind: "DaemonSet", Name: "agent", UID: "6f1e0c2a-0000-4000-8000-000000000001", Controller: ptrBool(true)}
	mustRunningPod(t, cl, "shop", "agent-n1", "n1", &dsRef)

	ctx, cancel := context.WithCancel(context.Background())
	f := &fakeCluster{t: t, cl: cl, rsRef: rsRef, gate: make(chan struct{})}
	f.start(ctx, "shop")
	t.Cleanup(func() {
		cancel()
		<-f.done
	})

	t.Run("evicts one at a time within the budget", func(t *testing.T) {
		b := startCLI(t, srv, "drain", "n1", "--timeout", "1m")
		// All three are asked for at once; the server lets one go and
		// refuses the others until a replacement is Ready.
		b.waitOutput(t, "error when evicting pods/")
		close(f.gate)
		if code := b.wait(t, 30*time.Second); code != 0 {
			t.Fatalf("drain: exit %d\nstdout:\n%s\nstderr:\n%s", code, b.out.String(), b.err.String())
		}
		out, errs := b.out.String(), b.err.String()
		t.Logf("orchctl drain n1\nstdout:\n%sstderr:\n%s", out, errs)
		if !strings.HasPrefix(out, "node/n1 cordoned\n") || !strings.HasSuffix(out, "node/n1 drained\n") {
			t.Errorf("drain stdout:\n%s", out)
		}
		for _, p := range []string{"shop-a", "shop-b", "shop-c"} {
			if strings.Count(out, "evicting pod shop/"+p+"\n") != 1 || strings.Count(out, "pod/"+p+" evicted\n") != 1 {
				t.Errorf("drain stdout does not report %s evicted once:\n%s", p, out)
			}
			if n := strings.Count(errs, `error when evicting pods/"`+p+`" -n "shop"`); n > 1 {
				t.Errorf("the refusal for %s is reported %d times", p, n)
			}
		}
		if strings.Contains(out, "agent-n1") || !strings.Contains(errs, "Warning: ignoring DaemonSet-managed Pods: shop/agent-n1\n") {
			t.Errorf("the DaemonSet pod is not left alone with a warning:\nstdout:\n%s\nstderr:\n%s", out, errs)
		}
		if !strings.Contains(errs, `(will retry after 20ms): Cannot evict pod shop/shop-`) ||
			!strings.Contains(errs, "deployment shop needs 2 of its 3 replicas available (maxUnavailable 1) and has 2") {
			t.Errorf("drain stderr lacks the server's refusal:\n%s", errs)
		}
		f.mu.Lock()
		minAvail, evicted := f.minAvailable, strings.Join(f.evicted, " ")
		f.mu.Unlock()
		if minAvail != 2 {
			t.Errorf("fewest available shop pods during the drain: %d, want 2 (replicas 3 - maxUnavailable 1)", minAvail)
		}
		if len(strings.Fields(evicted)) != 3 {
			t.Errorf("pods evicted: %s", evicted)
		}
		if got := strings.Join(podsOn(t, cl, "n1"), " "); got != "agent-n1" {
			t.Errorf("pods left on n1: %s", got)
		}
		if n := mustGet[*corev1.Node](t, cl, api.Node, "", "n1"); !n.Spec.Unschedulable {
			t.Errorf("n1 is not cordoned")
		}
		if r := runCLI(t, srv, "", "drain", "n1"); r.code != 0 || r.stdout != "node/n1 already cordoned\nnode/n1 drained\n" {
			t.Errorf("draining a drained node: %+v", r)
		}
	})

	t.Run("refuses pods without a controller unless forced", func(t *testing.T) {
		mustRunningPod(t, cl, "shop", "bare", "n3", nil)
		mustRunningPod(t, cl, "shop", "shop-z", "n3", &rsRef)
		mustFail(t, srv, "", `error: unable to drain node "n3" due to error: cannot delete Pods declare no controller (use --force to override): shop/bare`,
			"drain", "n3")
		if p := mustGet[*corev1.Pod](t, cl, api.Pod, "shop", "shop-z"); p.DeletionTimestamp != nil {
			t.Errorf("a refused drain evicted shop-z")
		}
		if n := mustGet[*corev1.Node](t, cl, api.Node, "", "n3"); !n.Spec.Unschedulable {
			t.Errorf("a refused drain did not leave n3 cordoned")
		}
		r := runCLI(t, srv, "", "drain", "n3", "--force", "--timeout", "1m")
		if r.code != 0 || !strings.HasSuffix(r.stdout, "node/n3 drained\n") || !strings.Contains(r.stdout, "pod/bare evicted\n") ||
			r.stderr != "Warning: deleting Pods that declare no controller: shop/bare\n" {
			t.Errorf("drain --force: %+v", r)
		}
		if left := podsOn(t, cl, "n3"); len(left) != 0 {
			t.Errorf("pods left on n3: %v", left)
		}
	})

	t.Run("grace period 0 deletes at once", func(t *testing.T) {
		mustRunningPod(t, cl, "shop", "quick", "n5", &rsRef)
		r := runCLI(t, srv, "", "drain", "n5", "--grace-period", "0", "--timeout", "1m")
		if r.code != 0 || r.stdout != "node/n5 cordoned\nevicting pod shop/quick\npod/quick evicted\nnode/n5 drained\n" || r.stderr != "" {
			t.Errorf("drain --grace-period 0: %+v", r)
		}
	})

	t.Run("times out when the budget never allows", func(t *testing.T) {
		solo := mustCreate(t, cl, api.Deployment, opsDeployment("shop", "solo", "solo:1", 1, 0))
		soloRS := mustCreate(t, cl, api.ReplicaSet, opsReplicaSet(solo, "2222", "1", solo.Spec.Template, 1))
		ref := controllerRef("ReplicaSet", soloRS)
		mustRunningPod(t, cl, "shop", "solo-a", "n4", &ref)
		r := runCLI(t, srv, "", "drain", "n4", "--timeout", "300ms")
		want := "error: unable to drain node \"n4\" due to error: error when evicting pods/\"solo-a\" -n \"shop\": global timeout reached: 300ms\n"
		if r.code != 1 || !strings.HasSuffix(r.stderr, want) || strings.Count(r.stderr, "(will retry after 20ms)") != 1 ||
			r.stdout != "node/n4 cordoned\nevicting pod shop/solo-a\n" {
			t.Errorf("drain that cannot finish: %+v", r)
		}
		if p := mustGet[*corev1.Pod](t, cl, api.Pod, "shop", "solo-a"); p.DeletionTimestamp != nil {
			t.Errorf("solo-a was evicted against its budget")
		}
		mustFail(t, srv, "", `nodes "n404" not found`, "drain", "n404")
		mustFail(t, srv, "", "drain takes exactly one NODE", "drain")
	})
}
