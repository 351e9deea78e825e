package ctrl

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"orch.dev/orch/api"
	"orch.dev/orch/fsm"
)

// countingCreates is a Cluster whose CreateMany records how many calls
// overlap and fails the calls that hold a pod named in fail.
type countingCreates struct {
	Cluster
	mu              sync.Mutex
	calls, inFlight int
	maxInFlight     int
	firstAlone      bool
	created         int
	fail            string
	delay           time.Duration
}

func (c *countingCreates) CreateMany(_ context.Context, objs []api.Object) ([]*fsm.Result, error) {
	c.mu.Lock()
	c.calls++
	c.inFlight++
	c.maxInFlight = max(c.maxInFlight, c.inFlight)
	if c.calls == 1 {
		c.firstAlone = c.inFlight == 1
	}
	c.mu.Unlock()
	time.Sleep(c.delay)
	out := make([]*fsm.Result, len(objs))
	for i, o := range objs {
		out[i] = &fsm.Result{}
		if o.GetName() == c.fail {
			out[i].Err = errors.New("refused")
		}
	}
	c.mu.Lock()
	c.inFlight--
	for _, r := range out {
		if r.Err == nil {
			c.created++
		}
	}
	c.mu.Unlock()
	return out, nil
}

func numberedPod(i int) *corev1.Pod {
	return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("p-%05d", i), Namespace: "default"}}
}

// A large create sends its first batch alone, then keeps up to
// createParallel batches in flight; after a batch fails it starts no more.
func TestCreatePodsInParallel(t *testing.T) {
	c := &countingCreates{delay: 20 * time.Millisecond}
	n, err := createPods(context.Background(), c, 10*createBatch+1, numberedPod)
	if err != nil || n != 10*createBatch+1 || c.created != n {
		t.Fatalf("created %d (the cluster saw %d), err %v; want %d", n, c.created, err, 10*createBatch+1)
	}
	if !c.firstAlone || c.maxInFlight != createParallel || c.calls != 11 {
		t.Errorf("first batch alone %v, at most %d in flight, %d calls; want true, %d, 11", c.firstAlone, c.maxInFlight, c.calls, createParallel)
	}

	c = &countingCreates{delay: 20 * time.Millisecond, fail: numberedPod(3*createBatch + 7).Name}
	n, err = createPods(context.Background(), c, 20*createBatch, numberedPod)
	if err == nil || n != c.created {
		t.Fatalf("created %d (the cluster saw %d), err %v; want an error and the count", n, c.created, err)
	}
	if c.calls > 4+createParallel-1 {
		t.Errorf("%d calls after the fourth failed; want no new batch after it", c.calls)
	}
}

// A pod change that only moves a ReplicaSet's status counts queues it
// after ten times its last reconcile's cost; one that changes what it must
// create or delete queues it at once.
func TestReplicaSetStatusChangesWait(t *testing.T) {
	r := &replicaSets{q: newQueue(), cost: map[string]time.Duration{"default/web": 20 * time.Millisecond}}
	defer r.q.close()
	ctrl := true
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "web-1", Namespace: "default", Labels: map[string]string{"app": "web"},
		OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: "web", UID: "rs-uid", Controller: &ctrl}}}}
	ready := pod.DeepCopy()
	ready.Spec.NodeName = "n1"
	ready.Status.Phase = corev1.PodRunning
	deleting := ready.DeepCopy()
	deleting.DeletionTimestamp = &metav1.Time{Time: time.Now()}
	event := func(prev, cur *corev1.Pod) fsm.Event {
		return fsm.Event{Type: fsm.Modified, Record: &fsm.Record{Kind: api.Pod, Obj: cur}, Prev: &fsm.Record{Kind: api.Pod, Obj: prev}}
	}
	var now []string
	add := func(key string) { now = append(now, key) }

	r.keysFor(event(pod, ready), nil, add)
	if len(now) != 0 {
		t.Fatalf("a status-only change queued %v at once", now)
	}
	start := time.Now()
	key, _ := r.q.get()
	if waited := time.Since(start); key != "default/web" || waited < 150*time.Millisecond {
		t.Fatalf("got %q after %v; want default/web after about 200ms", key, waited)
	}
	r.q.done(key)

	r.keysFor(event(ready, deleting), nil, add)
	if len(now) != 1 || now[0] != "default/web" {
		t.Fatalf("a pod going terminating queued %v at once; want [default/web]", now)
	}

	// The ReplicaSet's own status write waits too; a new spec does not.
	rs := newReplicaSet("web", 3)
	rs.Generation = 1
	counted := rs.DeepCopy()
	counted.Status.ReadyReplicas = 2
	scaled := counted.DeepCopy()
	scaled.Generation = 2
	rsEvent := func(prev, cur *appsv1.ReplicaSet) fsm.Event {
		return fsm.Event{Type: fsm.Modified, Record: &fsm.Record{Kind: api.ReplicaSet, Key: "default/web", Obj: cur},
			Prev: &fsm.Record{Kind: api.ReplicaSet, Key: "default/web", Obj: prev}}
	}
	now = nil
	r.keysFor(rsEvent(rs, counted), nil, add)
	if len(now) != 0 {
		t.Fatalf("a status write queued %v at once", now)
	}
	r.keysFor(rsEvent(counted, scaled), nil, add)
	if len(now) != 1 {
		t.Fatalf("a new spec queued %v at once; want [default/web]", now)
	}
}
