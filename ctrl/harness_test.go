package ctrl

import (
	"context"
	"encoding/json"
	"hash/fnv"
	"net/http"
	"sort"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"orch.dev/orch/agent"
	"orch.dev/orch/api"
	"orch.dev/orch/api/client"
	"orch.dev/orch/fsm"
	"orch.dev/orch/internal/inproc"
	"orch.dev/orch/sched/fit"
)

// testCluster is in-process servers running the controllers, a client,
// and a fake kubelet + binder standing in for the scheduler and workers.
type testCluster struct {
	*inproc.Cluster
	t       *testing.T
	ctx     context.Context
	cl      *client.Client
	kubelet *fakeKubelet
}

type clusterOptions struct {
	servers   int
	opts      Options
	configure func(*agent.Config)
	noKubelet bool
	// wrap, when set, is what the controllers see of their agent: the
	// place to inject faults into their writes.
	wrap func(*agent.Agent) Cluster
}

func startCluster(t *testing.T, o clusterOptions) *testCluster {
	t.Helper()
	if o.opts.NodeMonitorGracePeriod == 0 {
		// Only the node lifecycle tests want nodes to go Unknown; a slow
		// heartbeat under the race detector must not evict pods elsewhere.
		o.opts.NodeMonitorGracePeriod = time.Minute
	}
	c := inproc.Start(t, inproc.Options{Servers: o.servers, Configure: o.configure, Setup: func(a *agent.Agent) {
		a.OnLeader(func(ctx context.Context, a *agent.Agent) {
			var cl Cluster = a
			if o.wrap != nil {
				cl = o.wrap(a)
			}
			Run(ctx, cl, o.opts)
		})
	}})
	ctx, cancel := context.WithCancel(context.Background())
	tc := &testCluster{Cluster: c, t: t, ctx: ctx, cl: c.Client()}
	tc.kubelet = newFakeKubelet(tc)
	var wg sync.WaitGroup
	if !o.noKubelet {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tc.kubelet.run(ctx)
		}()
	}
	t.Cleanup(func() {
		cancel()
		wg.Wait()
	})
	return tc
}

// view is the state of the current leader (waiting for one).
func (tc *testCluster) view() *fsm.View {
	tc.t.Helper()
	var l *agent.Agent
	tc.waitUntil(20*time.Second, "a leader", func() (bool, string) {
		l = tc.Leader()
		return l != nil, "no ready leader"
	})
	return l.View()
}

// sub is tc for a subtest: failures go to t, which may run in parallel
// with its siblings on the same cluster.
func (tc *testCluster) sub(t *testing.T) *testCluster {
	c := *tc
	c.t = t
	return &c
}

func (tc *testCluster) create(obj api.Object) api.Object {
	tc.t.Helper()
	out, err := tc.cl.Create(tc.ctx, obj)
	if err != nil {
		tc.t.Fatalf("create %s: %v", obj.GetName(), err)
	}
	return out
}

// update applies change to the latest version of an object, retrying
// conflicts with the controllers' own writes.
func (tc *testCluster) update(k *api.Kind, ns, name string, change func(api.Object)) {
	tc.t.Helper()
	for range 50 {
		obj, err := tc.cl.Get(tc.ctx, k, ns, name, false)
		if err != nil {
			tc.t.Fatal(err)
		}
		change(obj)
		if _, err = tc.cl.Update(tc.ctx, obj); err == nil {
			return
		}
		if !isConflict(err) {
			tc.t.Fatalf("update %s %s: %v", k.Kind, name, err)
		}
	}
	tc.t.Fatalf("update %s %s: too many conflicts", k.Kind, name)
}

func isConflict(err error) bool {
	se, ok := err.(interface{ Status() metav1.Status })
	return ok && se.Status().Code == http.StatusConflict
}

func (tc *testCluster) transferLeader() {
	tc.t.Helper()
	if _, err := tc.cl.Do(tc.ctx, client.Request{Method: http.MethodPost, Path: "/v1/operator/raft/transfer-leader"}); err != nil {
		tc.t.Fatalf("transfer leadership: %v", err)
	}
}

// get reads an object from the leader's state (nil if absent).
func (tc *testCluster) get(k *api.Kind, ns, name string) api.Object {
	if r := tc.view().Get(k, ns, name); r != nil {
		return r.Obj
	}
	return nil
}

func (tc *testCluster) podsOwnedBy(uid string) []*corev1.Pod {
	var out []*corev1.Pod
	tc.view().Owned(api.Pod, uid, func(r *fsm.Record) bool {
		out = append(out, r.Obj.(*corev1.Pod))
		return true
	})
	return out
}

// Object builders.

func labelsOf(app string) map[string]string { return map[string]string{"app": app} }

func template(app, image string) corev1.PodTemplateSpec {
	return corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labelsOf(app)},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: image}}}}
}

func newDeployment(name string, replicas int32, image string) *appsv1.Deployment {
	d := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"},
		Spec: appsv1.DeploymentSpec{Replicas: &replicas, Selector: &metav1.LabelSelector{MatchLabels: labelsOf(name)},
			Template: template(name, image)}}
	api.Deployment.SetTypeMeta(d)
	return d
}

func rollingUpdate(d *appsv1.Deployment, surge, unavailable int) *appsv1.Deployment {
	s, u := intstr.FromInt(surge), intstr.FromInt(unavailable)
	d.Spec.Strategy = appsv1.DeploymentStrategy{Type: appsv1.RollingUpdateDeploymentStrategyType,
		RollingUpdate: &appsv1.RollingUpdateDeployment{MaxSurge: &s, MaxUnavailable: &u}}
	return d
}

func newReplicaSet(name string, replicas int32) *appsv1.ReplicaSet {
	rs := &appsv1.ReplicaSet{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"},
		Spec: appsv1.ReplicaSetSpec{Replicas: &replicas, Selector: &metav1.LabelSelector{MatchLabels: labelsOf(name)},
			Template: template(name, "img:1")}}
	api.ReplicaSet.SetTypeMeta(rs)
	return rs
}

func newNode(name string, labels map[string]string) *corev1.Node {
	capacity := corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("64"), corev1.ResourceMemory: resource.MustParse("256Gi"),
		corev1.ResourcePods: resource.MustParse("10000")}
	n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels},
		Status: corev1.NodeStatus{Capacity: capacity, Allocatable: capacity,
			Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: "KubeletReady"}}}}
	api.Node.SetTypeMeta(n)
	return n
}

// fakeKubelet plays the scheduler and every node's kubelet: it binds
// pending pods to Ready nodes that fit them (least loaded first), reports
// pods bound to live nodes Running and Ready, confirms graceful deletions
// on live nodes with a zero-grace delete, and heartbeats live nodes. A
// node that is not live does nothing: it is dead or cut off.
type fakeKubelet struct {
	tc *testCluster

	mu         sync.Mutex
	alive      map[string]bool
	lastBeat   map[string]time.Time // last heartbeat sent per node
	readyAfter time.Duration        // Running, then Ready this much later
	neverReady func(*corev1.Pod) bool

	shards []chan string
}

func newFakeKubelet(tc *testCluster) *fakeKubelet {
	k := &fakeKubelet{tc: tc, alive: map[string]bool{}, lastBeat: map[string]time.Time{}}
	for range 8 {
		k.shards = append(k.shards, make(chan string, 4096))
	}
	return k
}

// addNode registers a Ready node and brings it to life.
func (k *fakeKubelet) addNode(name string, labels map[string]string) {
	k.tc.create(newNode(name, labels))
	k.setAlive(name, true)
}

func (k *fakeKubelet) setAlive(name string, alive bool) {
	k.mu.Lock()
	k.alive[name] = alive
	k.mu.Unlock()
	if alive {
		k.beat(k.tc.ctx)
		k.rescan()
	}
}

func (k *fakeKubelet) isAlive(name string) bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.alive[name]
}

func (k *fakeKubelet) lastHeartbeat(name string) time.Time {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.lastBeat[name]
}

func (k *fakeKubelet) setReadiness(after time.Duration, never func(*corev1.Pod) bool) {
	k.mu.Lock()
	k.readyAfter, k.neverReady = after, never
	k.mu.Unlock()
}

func (k *fakeKubelet) run(ctx context.Context) {
	var wg sync.WaitGroup
	for _, ch := range k.shards {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-ctx.Done():
					return
				case key := <-ch:
					k.handle(ctx, key)
				}
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		k.watch(ctx)
	}()
	t := time.NewTicker(200 * time.Millisecond)
	defer t.Stop()
	for {
		k.beat(ctx)
		k.rescan()
		select {
		case <-ctx.Done():
			wg.Wait()
			return
		case <-t.C:
		}
	}
}

func (k *fakeKubelet) beat(ctx context.Context) {
	k.mu.Lock()
	var nodes []string
	for n, ok := range k.alive {
		if ok {
			nodes = append(nodes, n)
		}
	}
	k.mu.Unlock()
	if len(nodes) == 0 {
		return
	}
	body, _ := json.Marshal(agent.HeartbeatRequest{Nodes: nodes})
	sent := time.Now()
	if _, err := k.tc.cl.Do(ctx, client.Request{Method: http.MethodPost, Path: "/v1/heartbeats", Body: body}); err != nil {
		return
	}
	k.mu.Lock()
	for _, n := range nodes {
		if k.alive[n] {
			k.lastBeat[n] = sent
		}
	}
	k.mu.Unlock()
}

// watch turns pod changes into work; rescan catches what a watch cannot
// (a node coming back to life, a pod that fitted nowhere until now).
func (k *fakeKubelet) watch(ctx context.Context) {
	for ctx.Err() == nil {
		w, err := k.tc.cl.Watch(ctx, api.Pod, "", client.ListOptions{Stale: true})
		if err != nil {
			continue
		}
		for ev := range w.Events() {
			if ev.Type != client.Deleted {
				k.enqueue(ev.Object.GetNamespace() + "/" + ev.Object.GetName())
			}
		}
		w.Stop()
	}
}

func (k *fakeKubelet) rescan() {
	l := k.tc.Leader()
	if l == nil {
		return
	}
	l.View().List(api.Pod, "", func(r *fsm.Record) bool {
		p := r.Obj.(*corev1.Pod)
		if p.Spec.NodeName == "" || (k.isAlive(p.Spec.NodeName) && (p.DeletionTimestamp != nil || !podReady(p))) {
			k.enqueue(r.Key)
		}
		return true
	})
}

func (k *fakeKubelet) enqueue(key string) {
	h := fnv.New32a()
	h.Write([]byte(key))
	select {
	case k.shards[int(h.Sum32())%len(k.shards)] <- key:
	default: // full: the next rescan brings it back
	}
}

// handle does what the pod needs next, from the leader's current state.
func (k *fakeKubelet) handle(ctx context.Context, key string) {
	l := k.tc.Leader()
	if l == nil {
		return
	}
	v := l.View()
	ns, name := splitKey(key)
	r := v.Get(api.Pod, ns, name)
	if r == nil {
		return
	}
	p := r.Obj.(*corev1.Pod)
	cl := k.tc.cl
	switch {
	case p.Spec.NodeName == "":
		if p.DeletionTimestamp != nil {
			return
		}
		node := pickNode(v, p)
		if node == "" {
			return
		}
		body, _ := json.Marshal(corev1.Binding{ObjectMeta: metav1.ObjectMeta{Name: p.Name, UID: p.UID},
			Target: corev1.ObjectReference{Kind: "Node", Name: node}})
		cl.Do(ctx, client.Request{Method: http.MethodPost, Path: api.Pod.ObjectPath(ns, name) + "/binding", Body: body})
	case !k.isAlive(p.Spec.NodeName):
	case p.DeletionTimestamp != nil:
		zero := int64(0)
		cl.Delete(ctx, api.Pod, ns, name, client.DeleteOptions{UID: string(p.UID), Grace: &zero})
	case p.Status.Phase == corev1.PodPending || !podReady(p):
		k.mu.Lock()
		after, never := k.readyAfter, k.neverReady
		k.mu.Unlock()
		next := p.DeepCopy()
		now := metav1.Now()
		ready := corev1.ConditionTrue
		switch {
		case never != nil && never(p):
			ready = corev1.ConditionFalse
		case after > 0 && p.Status.StartTime == nil:
			ready = corev1.ConditionFalse
			time.AfterFunc(after, func() { k.enqueue(key) })
		case after > 0 && time.Since(p.Status.StartTime.Time) < after:
			return // a timer brings it back
		}
		next.Status.Phase = corev1.PodRunning
		if next.Status.StartTime == nil {
			next.Status.StartTime = &now
		}
		for _, t := range []corev1.PodConditionType{corev1.PodInitialized, corev1.ContainersReady, corev1.PodReady} {
			setPodCondition(next, corev1.PodCondition{Type: t, Status: ready, LastTransitionTime: now})
		}
		cl.UpdateStatus(ctx, next)
	}
}

func setPodCondition(p *corev1.Pod, c corev1.PodCondition) {
	for i := range p.Status.Conditions {
		if p.Status.Conditions[i].Type == c.Type {
			if p.Status.Conditions[i].Status != c.Status {
				p.Status.Conditions[i] = c
			}
			return
		}
	}
	p.Status.Conditions = append(p.Status.Conditions, c)
}

// pickNode is the least loaded Ready node the pod fits, or "".
func pickNode(v *fsm.View, p *corev1.Pod) string {
	type cand struct {
		name string
		pods int
	}
	var cands []cand
	v.List(api.Node, "", func(r *fsm.Record) bool {
		n := r.Obj.(*corev1.Node)
		if !fit.Ready(n) || fit.Cordoned(p, n) || !fit.MatchesNodeSelector(p, n) {
			return true
		}
		if _, bad := fit.UntoleratedTaint(p, n); bad {
			return true
		}
		c := cand{name: n.Name}
		v.PodsOnNode(n.Name, func(*fsm.Record) bool { c.pods++; return true })
		cands = append(cands, c)
		return true
	})
	if len(cands) == 0 {
		return ""
	}
	sort.Slice(cands, func(i, j int) bool {
		if cands[i].pods != cands[j].pods {
			return cands[i].pods < cands[j].pods
		}
		return cands[i].name < cands[j].name
	})
	return cands[0].name
}
