package e2e

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/sets"

	"orch.dev/orch/api"
	"orch.dev/orch/api/client"
	"orch.dev/orch/internal/testcluster"
)

// writers creates ConfigMaps from several goroutines until stopped and
// records which creates were acknowledged and which failed.
type writers struct {
	mu      sync.Mutex
	acked   sets.Set[string]
	failed  []error
	count   atomic.Int64
	maxGap  time.Duration // longest time between two acknowledged writes
	lastAck time.Time
	wg      sync.WaitGroup
	cancel  context.CancelFunc
}

func startWriters(cl *client.Client, n int, prefix string) *writers {
	ctx, cancel := context.WithCancel(context.Background())
	w := &writers{acked: sets.New[string](), cancel: cancel, lastAck: time.Now()}
	for g := range n {
		w.wg.Add(1)
		go func() {
			defer w.wg.Done()
			for i := 0; ctx.Err() == nil; i++ {
				name := fmt.Sprintf("%s-%d-%d", prefix, g, i)
				cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"}, Data: map[string]string{"i": fmt.Sprint(i)}}
				api.ConfigMap.SetTypeMeta(cm)
				_, err := cl.Create(context.Background(), cm)
				w.mu.Lock()
				if err != nil {
					w.failed = append(w.failed, fmt.Errorf("%s: %w", name, err))
				} else {
					w.acked.Insert(name)
					now := time.Now()
					w.maxGap = max(w.maxGap, now.Sub(w.lastAck))
					w.lastAck = now
				}
				w.mu.Unlock()
				w.count.Add(1)
			}
		}()
	}
	return w
}

// waitFor waits until at least n more writes were attempted.
func (w *writers) waitFor(t *testing.T, n int64) {
	t.Helper()
	target := w.count.Load() + n
	deadline := time.Now().Add(60 * time.Second)
	for w.count.Load() < target {
		if time.Now().After(deadline) {
			t.Fatalf("writers made no progress: %d of %d", w.count.Load(), target)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (w *writers) stop() (acked sets.Set[string], failed []error) {
	w.cancel()
	w.wg.Wait()
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.acked, w.failed
}

// assertEverywhere checks that every acknowledged name is held by every
// running server, reading each server's own state once it has applied
// the leader's latest index.
func assertEverywhere(t *testing.T, c *testcluster.Cluster, acked sets.Set[string]) {
	t.Helper()
	ctx := context.Background()
	list, err := c.Client().List(ctx, api.ConfigMap, "default", client.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range c.Servers {
		if !s.Running() {
			continue
		}
		got, err := c.Client(s.URL()).ListAll(ctx, api.ConfigMap, "default", client.ListOptions{ResourceVersion: list.ResourceVersion})
		if err != nil {
			t.Fatalf("%s: %v", s.Name, err)
		}
		names := sets.New[string]()
		for _, o := range got.Items {
			names.Insert(o.GetName())
		}
		if missing := acked.Difference(names); missing.Len() > 0 {
			t.Errorf("%s lost %d acknowledged writes (it holds %d configmaps at version %s), e.g. %v", s.Name, missing.Len(), len(got.Items), list.ResourceVersion, sets.List(missing)[:min(5, missing.Len())])
		}
	}
}
