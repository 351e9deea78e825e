package ctrl

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

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
