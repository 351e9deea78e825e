package ctrl

import (
	"context"
	"time"

	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/klog/v2"

	"orch.dev/orch/api"
	"orch.dev/orch/fsm"
)

// Node condition reasons and messages (Kubernetes').
const (
	reasonNodeReady         = "NodeReady"
	reasonNodeStatusUnknown = "NodeStatusUnknown"
	messageNodeReady        = "Node is posting heartbeats."
	messageNoHeartbeats     = "Node stopped posting heartbeats."
)

// nodeLifecycle turns heartbeats (kept in the leader's memory only) into
// node state, and node taints into evictions:
//
//   - A node heard from within the grace period gets Ready=True (reason
//     NodeReady) unless the node itself reported Ready=False; one not heard
//     from for longer gets Ready=Unknown (NodeStatusUnknown). A new leader
//     starts with no heartbeats, so it marks nothing Unknown until it has
//     led for the grace period, and a new node gets the grace period from
//     its creation. Only these flips are written to Raft.
//   - Ready=Unknown means the taints node.kubernetes.io/unreachable
//     NoExecute and NoSchedule, Ready=False node.kubernetes.io/not-ready;
//     Ready=True neither. Every NoExecute taint carries timeAdded, stamped
//     here if missing, so eviction deadlines survive a leader change.
//   - Pods on a node with a NoExecute taint they do not tolerate are
//     deleted (gracefully) at once; with tolerationSeconds, once timeAdded
//     plus those seconds has passed (a reconcile is scheduled for that
//     moment). Admission gives pods agent.DefaultTolerationSeconds (5 s)
//     for unreachable and not-ready, so with the 4 s grace a dead node's
//     pods are deleted 9-10 s after its last heartbeat, and their
//     ReplicaSets, which ignore terminating pods, replace them at once.
//     The deleted pods stay terminating until their node confirms, or
//     until the node object is deleted.
//   - Pods bound to a node that no longer exists are deleted at once,
//     with grace 0: no node will ever confirm them.
//
// Heartbeats change without an event in the log, so they are checked every
// NodeMonitorPeriod (sweep); the check reads the heartbeat table only and
// queues just the nodes whose Ready condition must flip, so a cluster of
// healthy nodes costs a map lookup per node and period, not a reconcile.
type nodeLifecycle struct {
	c      Cluster
	rec    *recorder
	q      *queue
	grace  time.Duration
	period time.Duration
	start  time.Time // when this leader started; heartbeats are trusted after start + grace
}

// livenessTaintKeys are the taints this controller owns.
var livenessTaintKeys = map[string]bool{corev1.TaintNodeUnreachable: true, corev1.TaintNodeNotReady: true}

// nodeConditionTypes go Unknown with Ready when heartbeats stop.
var nodeConditionTypes = []corev1.NodeConditionType{corev1.NodeReady, corev1.NodeMemoryPressure, corev1.NodeDiskPressure, corev1.NodePIDPressure}

func newNodeLifecycleController(c Cluster, rec *recorder, opts Options) *controller {
	n := &nodeLifecycle{c: c, rec: rec, q: newQueue(), grace: opts.NodeMonitorGracePeriod, period: opts.NodeMonitorPeriod, start: time.Now()}
	return &controller{name: "nodelifecycle", kinds: []*api.Kind{api.Node, api.Pod}, queue: n.q,
		list: n.list, keysFor: n.keysFor, resync: n.sweep, resyncEvery: opts.NodeMonitorPeriod, reconcile: n.reconcile}
}

// liveness is what the heartbeat table says of a node at now.
type liveness struct {
	last  time.Time // the last heartbeat
	heard bool      // any heartbeat since this leader started
	fresh bool      // heard within the grace period
	// trusted: this leader could have heard the node for a whole grace
	// period (since it started leading, and since the node registered).
	// Silence means nothing before.
	trusted bool
	since   time.Time // when that period started
}

func (n *nodeLifecycle) liveness(node *corev1.Node, now time.Time) liveness {
	var l liveness
	l.last, l.heard = n.c.LastHeartbeat(node.Name)
	l.fresh = l.heard && now.Sub(l.last) <= n.grace
	l.since = n.start
	if created := node.CreationTimestamp.Time; created.After(l.since) {
		l.since = created
	}
	l.trusted = now.Sub(l.since) >= n.grace
	return l
}

// readyFlip says whether the node's Ready condition must change: to True
// (fresh heartbeats, condition missing or Unknown) or to Unknown (trusted
// silence, condition not Unknown yet).
func readyFlip(node *corev1.Node, l liveness) (toReady, toUnknown bool) {
	ready := nodeCondition(node, corev1.NodeReady)
	toReady = l.fresh && (ready == nil || ready.Status == corev1.ConditionUnknown)
	toUnknown = !l.fresh && l.trusted && (ready == nil || ready.Status != corev1.ConditionUnknown)
	return toReady, toUnknown
}

// sweep queues the nodes whose Ready condition must flip now, and asks for
// a reconcile at the exact moment a node's heartbeats will be too old when
// that comes before the next sweep.
func (n *nodeLifecycle) sweep(v *fsm.View, add func(string)) {
	now := time.Now()
	v.List(api.Node, "", func(r *fsm.Record) bool {
		node := r.Obj.(*corev1.Node)
		l := n.liveness(node, now)
		if toReady, toUnknown := readyFlip(node, l); toReady || toUnknown {
			add(r.Key)
			return true
		}
		if l.fresh {
			if stale := l.last.Add(n.grace).Sub(now); stale < n.period {
				n.q.AddAfter(r.Key, stale+50*time.Millisecond)
			}
		}
		return true
	})
}

// list adds every node, and every node name pods are bound to (the node
// may be gone).
func (n *nodeLifecycle) list(v *fsm.View, add func(string)) {
	v.List(api.Node, "", func(r *fsm.Record) bool {
		add(r.Key)
		return true
	})
	v.List(api.Pod, "", func(r *fsm.Record) bool {
		if node := r.Obj.(*corev1.Pod).Spec.NodeName; node != "" && v.Get(api.Node, "", node) == nil {
			add(node)
		}
		return true
	})
}

func (n *nodeLifecycle) keysFor(ev fsm.Event, v *fsm.View, add func(string)) {
	if ev.Record.Kind == api.Node {
		add(ev.Record.Key)
		return
	}
	if ev.Type == fsm.Deleted {
		return
	}
	name := ev.Record.Obj.(*corev1.Pod).Spec.NodeName
	if name == "" {
		return
	}
	if rec := v.Get(api.Node, "", name); rec == nil || hasNoExecute(rec.Obj.(*corev1.Node)) {
		add(name)
	}
}

func hasNoExecute(node *corev1.Node) bool {
	for _, t := range node.Spec.Taints {
		if t.Effect == corev1.TaintEffectNoExecute {
			return true
		}
	}
	return false
}

func (n *nodeLifecycle) reconcile(ctx context.Context, name string) error {
	v := n.c.View()
	rec := v.Get(api.Node, "", name)
	if rec == nil {
		var pods []*corev1.Pod
		v.PodsOnNode(name, func(r *fsm.Record) bool {
			pods = append(pods, r.Obj.(*corev1.Pod))
			return true
		})
		zero := int64(0)
		_, err := deletePods(ctx, n.c, pods, &zero)
		return err
	}
	now := time.Now()
	node, err := n.syncReady(ctx, rec.Obj.(*corev1.Node), now)
	if err != nil {
		return err
	}
	if node, err = n.syncTaints(ctx, node, now); err != nil {
		return err
	}
	return n.evict(ctx, v, node, now)
}

func nodeCondition(node *corev1.Node, t corev1.NodeConditionType) *corev1.NodeCondition {
	for i := range node.Status.Conditions {
		if node.Status.Conditions[i].Type == t {
			return &node.Status.Conditions[i]
		}
	}
	return nil
}

// syncReady flips the Ready condition from heartbeats and returns the
// node as stored afterwards.
func (n *nodeLifecycle) syncReady(ctx context.Context, node *corev1.Node, now time.Time) (*corev1.Node, error) {
	l := n.liveness(node, now)
	switch {
	case l.fresh:
		n.q.AddAfter(node.Name, l.last.Add(n.grace).Sub(now)+50*time.Millisecond) // the moment it would go stale
	case !l.trusted:
		n.q.AddAfter(node.Name, l.since.Add(n.grace).Sub(now)+50*time.Millisecond)
	}
	toReady, toUnknown := readyFlip(node, l)
	if !toReady && !toUnknown {
		return node, nil
	}
	stamp := metav1.NewTime(now.Truncate(time.Second))
	beat := stamp
	if l.heard {
		beat = metav1.NewTime(l.last.Truncate(time.Second))
	}
	next := node.DeepCopy()
	if toReady {
		setNodeCondition(next, corev1.NodeCondition{Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: reasonNodeReady,
			Message: messageNodeReady, LastHeartbeatTime: beat, LastTransitionTime: stamp})
		n.rec.event(api.Node, node, corev1.EventTypeNormal, nodeLifecycleComponent, "NodeReady", "Node %s status is now: NodeReady", node.Name)
	} else {
		for _, t := range nodeConditionTypes {
			c := nodeCondition(node, t)
			if t != corev1.NodeReady && (c == nil || c.Status == corev1.ConditionUnknown) {
				continue
			}
			msg := messageNoHeartbeats
			if t != corev1.NodeReady {
				msg = "Node stopped posting heartbeats; its " + string(t) + " is unknown."
			}
			lastBeat := beat
			if c != nil && !l.heard {
				lastBeat = c.LastHeartbeatTime
			}
			setNodeCondition(next, corev1.NodeCondition{Type: t, Status: corev1.ConditionUnknown, Reason: reasonNodeStatusUnknown,
				Message: msg, LastHeartbeatTime: lastBeat, LastTransitionTime: stamp})
		}
		n.rec.event(api.Node, node, corev1.EventTypeNormal, nodeLifecycleComponent, "NodeNotReady", "Node %s status is now: NodeNotReady", node.Name)
	}
	rec, err := n.c.Update(ctx, next, true)
	if err != nil {
		return nil, err
	}
	return rec.Obj.(*corev1.Node), nil
}

func setNodeCondition(node *corev1.Node, c corev1.NodeCondition) {
	for i := range node.Status.Conditions {
		if node.Status.Conditions[i].Type == c.Type {
			node.Status.Conditions[i] = c
			return
		}
	}
	node.Status.Conditions = append(node.Status.Conditions, c)
}

// syncTaints sets the liveness taints the Ready condition implies and
// stamps timeAdded on NoExecute taints that lack it.
func (n *nodeLifecycle) syncTaints(ctx context.Context, node *corev1.Node, now time.Time) (*corev1.Node, error) {
	var want string
	if ready := nodeCondition(node, corev1.NodeReady); ready != nil {
		switch ready.Status {
		case corev1.ConditionUnknown:
			want = corev1.TaintNodeUnreachable
		case corev1.ConditionFalse:
			want = corev1.TaintNodeNotReady
		}
	}
	stamp := metav1.NewTime(now.Truncate(time.Second))
	var taints []corev1.Taint
	have := map[corev1.TaintEffect]bool{}
	for _, t := range node.Spec.Taints {
		if livenessTaintKeys[t.Key] && t.Key != want {
			continue
		}
		if t.Key == want {
			have[t.Effect] = true
		}
		if t.Effect == corev1.TaintEffectNoExecute && t.TimeAdded == nil {
			t.TimeAdded = &stamp
		}
		taints = append(taints, t)
	}
	if want != "" {
		for _, e := range []corev1.TaintEffect{corev1.TaintEffectNoSchedule, corev1.TaintEffectNoExecute} {
			if !have[e] {
				taints = append(taints, corev1.Taint{Key: want, Effect: e, TimeAdded: &stamp})
			}
		}
	}
	if apiequality.Semantic.DeepEqual(taints, node.Spec.Taints) {
		return node, nil
	}
	next := node.DeepCopy()
	next.Spec.Taints = taints
	rec, err := n.c.Update(ctx, next, false)
	if err != nil {
		return nil, err
	}
	return rec.Obj.(*corev1.Node), nil
}

// evict deletes the pods on node whose tolerations of its NoExecute taints
// ran out, and schedules a reconcile for the next such deadline. Until
// this leader trusts its heartbeat table, the liveness taints evict
// nothing: the node may be back already.
func (n *nodeLifecycle) evict(ctx context.Context, v *fsm.View, node *corev1.Node, now time.Time) error {
	var taints []*corev1.Taint
	deferred := false
	for i := range node.Spec.Taints {
		t := &node.Spec.Taints[i]
		if t.Effect != corev1.TaintEffectNoExecute {
			continue
		}
		if livenessTaintKeys[t.Key] && now.Sub(n.start) < n.grace {
			deferred = true
			continue
		}
		taints = append(taints, t)
	}
	if deferred {
		n.q.AddAfter(node.Name, n.start.Add(n.grace).Sub(now)+50*time.Millisecond)
	}
	if len(taints) == 0 {
		return nil
	}
	var victims []*corev1.Pod
	var next time.Time
	v.PodsOnNode(node.Name, func(r *fsm.Record) bool {
		p := r.Obj.(*corev1.Pod)
		if !podActive(p) {
			return true
		}
		due, ok := evictionDue(p, taints)
		switch {
		case !ok:
		case !due.After(now):
			victims = append(victims, p)
		case next.IsZero() || due.Before(next):
			next = due
		}
		return true
	})
	if !next.IsZero() {
		n.q.AddAfter(node.Name, next.Sub(now)+10*time.Millisecond)
	}
	if len(victims) == 0 {
		return nil
	}
	deleted, err := deletePods(ctx, n.c, victims, nil)
	for _, p := range victims[:deleted] {
		n.rec.event(api.Pod, p, corev1.EventTypeNormal, nodeLifecycleComponent, "TaintManagerEviction", "Marking for deletion Pod %s/%s", p.Namespace, p.Name)
	}
	return err
}

// evictionDue is when pod must leave a node with these NoExecute taints:
// now for a taint it does not tolerate, timeAdded + the smallest
// tolerationSeconds of the tolerations that match it otherwise; ok is
// false when it tolerates them all forever.
func evictionDue(pod *corev1.Pod, taints []*corev1.Taint) (time.Time, bool) {
	var due time.Time
	found := false
	for _, t := range taints {
		tolerated, forever := false, false
		var seconds int64
		for i := range pod.Spec.Tolerations {
			tol := &pod.Spec.Tolerations[i]
			if !tol.ToleratesTaint(klog.Background(), t, false) {
				continue
			}
			if tol.TolerationSeconds == nil {
				forever = true
				continue
			}
			s := max(*tol.TolerationSeconds, 0)
			if !tolerated || s < seconds {
				seconds = s
			}
			tolerated = true
		}
		var at time.Time
		switch {
		case tolerated:
			added := time.Now() // syncTaints stamps every NoExecute taint; this is a fallback
			if t.TimeAdded != nil {
				added = t.TimeAdded.Time
			}
			at = added.Add(time.Duration(seconds) * time.Second)
		case forever:
			continue
		default:
			return time.Time{}, true // not tolerated: now
		}
		if !found || at.Before(due) {
			due, found = at, true
		}
	}
	return due, found
}
