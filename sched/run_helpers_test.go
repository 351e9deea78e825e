package sched

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	schedulingv1 "k8s.io/api/scheduling/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"orch.dev/orch/agent"
	"orch.dev/orch/api"
	"orch.dev/orch/fsm"
	"orch.dev/orch/internal/inproc"
)

// runCluster is in-process servers (real Raft over loopback) whose leader
// runs the scheduler, and nothing else: no controller, no kubelet.
type runCluster struct {
	*inproc.Cluster
	t   *testing.T
	ctx context.Context

	mu   sync.Mutex
	errs []error // what Run returned other than nil
}

// startRunCluster starts servers whose leader runs Run(ctx, wrap(agent),
// opts) after its barrier; wrap may be nil.
func startRunCluster(t *testing.T, servers int, opts Options, wrap func(*agent.Agent) Cluster, configure ...func(*agent.Config)) *runCluster {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	rc := &runCluster{t: t, ctx: ctx}
	var cfg func(*agent.Config)
	if len(configure) > 0 {
		cfg = configure[0]
	}
	rc.Cluster = inproc.Start(t, inproc.Options{Servers: servers, Configure: cfg, Setup: func(a *agent.Agent) {
		a.OnLeader(func(ctx context.Context, a *agent.Agent) {
			var c Cluster = a
			if wrap != nil {
				c = wrap(a)
			}
			if err := Run(ctx, c, opts); err != nil {
				rc.mu.Lock()
				rc.errs = append(rc.errs, err)
				rc.mu.Unlock()
			}
		})
	}})
	t.Cleanup(func() {
		rc.mu.Lock()
		defer rc.mu.Unlock()
		for _, err := range rc.errs {
			t.Errorf("scheduler returned %v", err)
		}
	})
	t.Cleanup(rc.shutdown) // before inproc's own cleanup, which then has nothing left to do
	return rc
}

// shutdown stops the servers one by one, as inproc does, but does not wait
// forever for one: hashicorp/raft's Shutdown can hang when a replication
// pipeline to a peer whose Raft has stopped (while its transport is still
// open) fills up; the stuck server is then left behind, and said so.
func (rc *runCluster) shutdown() {
	for i, a := range rc.Agents {
		done := make(chan struct{})
		go func() {
			defer close(done)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			a.Shutdown(ctx)
		}()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			rc.t.Logf("s%d: shutdown still blocked in Raft after 30s; leaving it behind", i+1)
		}
	}
}

// leader waits for a ready leader.
func (rc *runCluster) leader() *agent.Agent {
	rc.t.Helper()
	var l *agent.Agent
	rc.WaitFor(20*time.Second, "a ready leader", func() bool {
		l = rc.Leader()
		return l != nil
	})
	return l
}

// create creates objects in one Raft entry on the leader, again on the
// next leader if leadership moves meanwhile (an object the first attempt
// created is then AlreadyExists).
func (rc *runCluster) create(objs ...api.Object) {
	rc.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		res, err := rc.leader().CreateMany(rc.ctx, objs)
		if err == nil {
			for i, r := range res {
				if r.Err != nil && !errors.Is(r.Err, fsm.ErrAlreadyExists) {
					rc.t.Fatalf("create %s: %v", objs[i].GetName(), r.Err)
				}
			}
			return
		}
		if time.Now().After(deadline) {
			rc.t.Fatalf("create: %v", err)
		}
	}
}

// pod reads a pod from the leader's state (nil when absent).
func (rc *runCluster) pod(ns, name string) *corev1.Pod {
	if r := rc.leader().View().Get(api.Pod, ns, name); r != nil {
		return r.Obj.(*corev1.Pod)
	}
	return nil
}

// waitPod waits until the pod satisfies cond, and returns it.
func (rc *runCluster) waitPod(ns, name, what string, cond func(*corev1.Pod) bool) *corev1.Pod {
	rc.t.Helper()
	var p *corev1.Pod
	rc.WaitFor(20*time.Second, ns+"/"+name+" "+what, func() bool {
		p = rc.pod(ns, name)
		return p != nil && cond(p)
	})
	return p
}

func bound(p *corev1.Pod) bool { return p.Spec.NodeName != "" }

// apiNode is a Ready node as the API takes it.
func apiNode(name, cpu, mem string, pods int64, taints ...corev1.Taint) *corev1.Node {
	n := node(name, cpu, mem, pods, nil, taints...)
	api.Node.SetTypeMeta(n)
	return n
}

// apiPod is a pod as the API takes it (its priority comes from its class).
func apiPod(ns, name, cpu, mem, class string) *corev1.Pod {
	p := pod(ns, name, cpu, mem, 0)
	p.UID, p.Spec.Priority, p.Spec.PriorityClassName = "", nil, class
	api.Pod.SetTypeMeta(p)
	return p
}

func priorityClass(name string, value int32) *schedulingv1.PriorityClass {
	pc := &schedulingv1.PriorityClass{ObjectMeta: metav1.ObjectMeta{Name: name}, Value: value}
	api.PriorityClass.SetTypeMeta(pc)
	return pc
}

func quantity(s string) resource.Quantity { return resource.MustParse(s) }

// events lists the Events about a pod, from the leader's state.
func (rc *runCluster) events(p *corev1.Pod) []*corev1.Event {
	var out []*corev1.Event
	rc.leader().View().List(api.Event, p.Namespace, func(r *fsm.Record) bool {
		if e := r.Obj.(*corev1.Event); e.InvolvedObject.UID == p.UID {
			out = append(out, e)
		}
		return true
	})
	return out
}

// countingCluster counts the Bind entries the scheduler proposes.
type countingCluster struct {
	*agent.Agent
	mu    sync.Mutex
	binds []int // bindings per entry
}

func (c *countingCluster) Propose(ctx context.Context, cmd fsm.Command) (*fsm.Result, error) {
	if b, ok := cmd.(*fsm.Bind); ok {
		c.mu.Lock()
		c.binds = append(c.binds, len(b.Bindings))
		c.mu.Unlock()
	}
	return c.Agent.Propose(ctx, cmd)
}

func (c *countingCluster) entries() []int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]int(nil), c.binds...)
}

// logsContain reports whether a server logged s.
func (rc *runCluster) logsContain(s string) bool {
	for _, l := range rc.Logs {
		if strings.Contains(l.String(), s) {
			return true
		}
	}
	return false
}

// showPending logs up to n pods that are not bound, with why.
func (rc *runCluster) showPending(t *testing.T, n int) {
	rc.leader().View().List(api.Pod, "", func(r *fsm.Record) bool {
		p := r.Obj.(*corev1.Pod)
		if bound(p) {
			return true
		}
		msg := "no PodScheduled condition"
		if c := podScheduledCondition(p); c != nil {
			msg = c.Message
		}
		t.Logf("pending %s/%s: %s", p.Namespace, p.Name, msg)
		n--
		return n > 0
	})
}
