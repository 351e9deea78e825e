package agent

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	corev1 "k8s.io/api/core/v1"
	schedulingv1 "k8s.io/api/scheduling/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"orch.dev/orch/api"
	"orch.dev/orch/fsm"
	"orch.dev/orch/internal/logging"
)

func (a *Agent) hclog(name string) hclog.Logger { return logging.Hclog(a.logger, name) }

// monitorLeadership starts the leader loop when this server becomes leader
// and stops it the moment leadership is lost.
func (a *Agent) monitorLeadership() {
	var stopLeading func()
	for {
		select {
		case isLeader := <-a.notifyCh:
			a.wakeLeaderWaiters()
			switch {
			case isLeader && stopLeading == nil:
				stopLeading = a.startLeading()
			case !isLeader && stopLeading != nil:
				stopLeading()
				stopLeading = nil
			}
		case <-a.stop:
			if stopLeading != nil {
				stopLeading()
			}
			return
		}
	}
}

// startLeading runs the leader loop; the returned function cancels it and
// waits until every leader-only component has returned.
func (a *Agent) startLeading() (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		a.leaderLoop(ctx)
	}()
	return func() {
		cancel()
		<-done
	}
}

func (a *Agent) setLeaderReady(ready bool) {
	a.leaderMu.Lock()
	a.leaderReady = ready
	close(a.leaderWake)
	a.leaderWake = make(chan struct{})
	a.leaderMu.Unlock()
}

// leaderLoop runs while this server leads: it waits until every entry of
// earlier terms is applied (the barrier), then starts the leader-only work.
func (a *Agent) leaderLoop(ctx context.Context) {
	a.logger.Info("became leader")
	for {
		err := a.raft.Barrier(a.cfg.LeaderWait).Error()
		if err == nil {
			break
		}
		a.logger.Warn("leader barrier failed", "err", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(100 * time.Millisecond):
		}
	}
	a.setLeaderReady(true)
	defer a.setLeaderReady(false)
	a.ensureSystemObjects(ctx)

	a.pilot.Start(ctx)
	defer func() { <-a.pilot.Stop() }()

	var wg sync.WaitGroup
	for _, f := range a.leaderFuncs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			f(ctx, a)
		}()
	}
	a.reconcileServersLoop(ctx)
	wg.Wait()
	a.logger.Info("leadership lost")
}

// systemObjects exist in every cluster, as in Kubernetes: the system
// namespaces and the built-in priority classes.
func systemObjects() []api.Object {
	var out []api.Object
	for _, name := range []string{"default", "kube-system", "kube-public"} {
		ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}
		api.Namespace.SetTypeMeta(ns)
		out = append(out, ns)
	}
	for name, value := range api.SystemPriorityClasses {
		pc := &schedulingv1.PriorityClass{ObjectMeta: metav1.ObjectMeta{Name: name}, Value: value,
			Description: "Used for system critical pods that must not be moved from their current node."}
		api.PriorityClass.SetTypeMeta(pc)
		out = append(out, pc)
	}
	return out
}

// ensureSystemObjects creates the system objects that do not exist yet.
func (a *Agent) ensureSystemObjects(ctx context.Context) {
	for _, obj := range systemObjects() {
		k, _ := kindOf(obj)
		for ctx.Err() == nil {
			if a.fsm.View().Get(k, "", obj.GetName()) != nil {
				break
			}
			_, err := a.Create(ctx, obj.DeepCopyObject().(api.Object))
			if err == nil || errors.Is(err, fsm.ErrAlreadyExists) {
				break
			}
			a.logger.Warn("creating system object", "kind", k.Kind, "name", obj.GetName(), "err", err)
			select {
			case <-ctx.Done():
			case <-time.After(200 * time.Millisecond):
			}
		}
	}
}

// reconcileServersLoop adds server members that gossip knows but Raft does
// not as non-voters; autopilot promotes them to voters once they are caught
// up and stable.
func (a *Agent) reconcileServersLoop(ctx context.Context) {
	t := time.NewTicker(5 * time.Second)
	defer t.Stop()
	for {
		a.reconcileServers()
		select {
		case <-ctx.Done():
			return
		case <-a.gossip.Changed():
		case <-t.C:
		}
	}
}

func (a *Agent) reconcileServers() {
	f := a.raft.GetConfiguration()
	if f.Error() != nil {
		return
	}
	known := map[raft.ServerID]raft.ServerAddress{}
	for _, s := range f.Configuration().Servers {
		known[s.ID] = s.Address
	}
	for _, m := range a.gossip.Members() {
		if m.Role != RoleServer || m.Status != StatusAlive || m.meta.Raft == "" {
			continue
		}
		id, addr := raft.ServerID(m.Name), raft.ServerAddress(m.meta.Raft)
		if cur, ok := known[id]; ok && cur == addr {
			continue
		}
		a.logger.Info("adding server to raft as non-voter", "server", m.Name, "address", addr)
		if err := a.raft.AddNonvoter(id, addr, 0, 10*time.Second).Error(); err != nil {
			a.logger.Warn("adding server failed", "server", m.Name, "err", err)
		}
	}
}
