package ctrl

import (
	"slices"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"orch.dev/orch/api"
	"orch.dev/orch/fsm"
)

// heartbeatTable is a Cluster that only answers LastHeartbeat.
type heartbeatTable struct {
	Cluster
	last map[string]time.Time
}

func (h heartbeatTable) LastHeartbeat(node string) (time.Time, bool) {
	t, ok := h.last[node]
	return t, ok
}

// The periodic check queues exactly the nodes whose Ready condition must
// flip, and for a node whose heartbeats go stale before the next check,
// a reconcile at that moment; healthy nodes cost no reconcile.
func TestNodeSweepQueuesOnlyFlips(t *testing.T) {
	now := time.Now()
	const grace, period = 4 * time.Second, time.Second
	f := fsm.New(fsm.Config{})
	var index uint64
	addNode := func(name string, ready corev1.ConditionStatus, created time.Time) {
		n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, CreationTimestamp: metav1.NewTime(created)}}
		if ready != "" {
			n.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: ready}}
		}
		api.Node.SetTypeMeta(n)
		b, err := n.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		index++
		if res := f.Apply(&raft.Log{Index: index, Type: raft.LogCommand, Data: fsm.Encode(&fsm.Create{Kind: "Node", Object: b})}).(*fsm.Result); res.Err != nil {
			t.Fatal(res.Err)
		}
	}
	old := now.Add(-time.Hour)
	beats := map[string]time.Time{}
	addNode("healthy", corev1.ConditionTrue, old)
	beats["healthy"] = now
	addNode("back", corev1.ConditionUnknown, old)
	beats["back"] = now
	addNode("silent", corev1.ConditionTrue, old)
	beats["silent"] = now.Add(-10 * time.Second)
	addNode("still-silent", corev1.ConditionUnknown, old)
	addNode("never-heard", corev1.ConditionTrue, old)
	addNode("going-stale", corev1.ConditionTrue, old)
	beats["going-stale"] = now.Add(-grace + 300*time.Millisecond)
	addNode("registering", "", now) // within its grace period

	n := &nodeLifecycle{c: heartbeatTable{last: beats}, q: newQueue(), grace: grace, period: period, start: old}
	defer n.q.close()
	var queued []string
	n.sweep(f.View(), func(key string) { queued = append(queued, key) })
	slices.Sort(queued)
	if want := []string{"back", "never-heard", "silent"}; !slices.Equal(queued, want) {
		t.Fatalf("queued %v, want %v", queued, want)
	}
	n.q.mu.Lock()
	_, timer := n.q.timers["going-stale"]
	timers := len(n.q.timers)
	n.q.mu.Unlock()
	if !timer || timers != 1 {
		t.Fatalf("timers for %d nodes (going-stale: %v); want one, for going-stale", timers, timer)
	}
}
