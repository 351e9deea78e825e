package worker

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"time"

	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"orch.dev/orch/api"
	"orch.dev/orch/api/client"
)

// nodeLabels are the labels the worker sets on its Node (configured ones
// win over the well-known ones).
func (w *Worker) nodeLabels() map[string]string {
	l := map[string]string{corev1.LabelHostname: w.cfg.Name, corev1.LabelOSStable: w.machine.info.OperatingSystem,
		corev1.LabelArchStable: w.machine.info.Architecture}
	maps.Copy(l, w.cfg.Labels)
	return l
}

// nodeStatus is the part of the Node's status the worker owns.
func (w *Worker) nodeStatus(st *corev1.NodeStatus) {
	c := w.capacity()
	st.Capacity, st.Allocatable = c, c.DeepCopy()
	st.Addresses = []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: w.cfg.Advertise}, {Type: corev1.NodeHostName, Address: w.cfg.Name}}
	st.NodeInfo = w.machine.info
	st.DaemonEndpoints.KubeletEndpoint.Port = int32(w.cfg.APIPort)
}

// register creates the worker's Node, or brings an existing one up to
// date (labels added, capacity, addresses and node info replaced; taints,
// cordoning and conditions, which others own, kept). It returns the Node.
func (w *Worker) register(ctx context.Context) (*corev1.Node, error) {
	cl := w.servers.client()
	if cl == nil {
		return nil, errors.New("no API server known yet")
	}
	for attempt := 0; ; attempt++ {
		obj, err := cl.Get(ctx, api.Node, "", w.cfg.Name, false)
		if apierrors.IsNotFound(err) {
			n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: w.cfg.Name, Labels: w.nodeLabels()},
				Spec: corev1.NodeSpec{Taints: w.cfg.Taints}}
			w.nodeStatus(&n.Status)
			api.Node.SetTypeMeta(n)
			created, err := cl.Create(ctx, n)
			if apierrors.IsAlreadyExists(err) && attempt < 3 {
				continue
			}
			if err != nil {
				return nil, fmt.Errorf("registering node %s: %w", w.cfg.Name, err)
			}
			w.log.Info("node registered", "podCIDR", created.(*corev1.Node).Spec.PodCIDR)
			return created.(*corev1.Node), nil
		}
		if err != nil {
			return nil, fmt.Errorf("reading node %s: %w", w.cfg.Name, err)
		}
		node := obj.(*corev1.Node)
		if node.Labels[simulatedLabel] == "true" {
			return nil, fmt.Errorf("node %s is a simulated node (label %s): choose another --name", w.cfg.Name, simulatedLabel)
		}
		next := node.DeepCopy()
		if next.Labels == nil {
			next.Labels = map[string]string{}
		}
		maps.Copy(next.Labels, w.nodeLabels())
		if !maps.Equal(next.Labels, node.Labels) {
			updated, err := cl.Update(ctx, next)
			if apierrors.IsConflict(err) && attempt < 5 {
				continue
			}
			if err != nil {
				return nil, fmt.Errorf("updating node %s: %w", w.cfg.Name, err)
			}
			next = updated.(*corev1.Node).DeepCopy()
		}
		w.nodeStatus(&next.Status)
		if !apiequality.Semantic.DeepEqual(next.Status, node.Status) {
			updated, err := cl.UpdateStatus(ctx, next)
			if apierrors.IsConflict(err) && attempt < 5 {
				continue
			}
			if err != nil {
				return nil, fmt.Errorf("updating the status of node %s: %w", w.cfg.Name, err)
			}
			next = updated.(*corev1.Node)
		}
		return next, nil
	}
}

const simulatedLabel = "orch.dev/simulated"

// registerLoop keeps the Node registered: it recreates it if someone
// deleted it, and reports a pod CIDR change (which needs a restart).
func (w *Worker) registerLoop(ctx context.Context, podCIDR string) {
	delay := time.Second
	for {
		n, err := w.register(ctx)
		switch {
		case ctx.Err() != nil:
			return
		case err != nil:
			w.log.Warn("cannot register the node yet", "err", err)
			delay = min(2*delay, 30*time.Second)
		default:
			if n.Spec.PodCIDR != podCIDR {
				w.log.Error("the node's pod CIDR changed; restart the worker to use it", "running", podCIDR, "node", n.Spec.PodCIDR)
			}
			delay = w.cfg.RegisterInterval
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(delay):
		}
	}
}

// heartbeatLoop tells the leader every HeartbeatInterval that this node
// lives. Heartbeats are not written to Raft; the leader keeps them in
// memory and the node lifecycle controller turns their absence into
// Ready=Unknown.
func (w *Worker) heartbeatLoop(ctx context.Context) {
	body := []byte(fmt.Sprintf(`{"nodes":[%q]}`, w.cfg.Name))
	t := time.NewTicker(w.cfg.HeartbeatInterval)
	defer t.Stop()
	failing := false
	for {
		if cl := w.servers.heartbeatClient(); cl != nil {
			hctx, cancel := context.WithTimeout(ctx, 2*w.cfg.HeartbeatInterval)
			_, err := cl.Do(hctx, client.Request{Method: http.MethodPost, Path: "/v1/heartbeats", Body: body})
			cancel()
			switch {
			case err != nil && ctx.Err() == nil && !failing:
				w.log.Warn("heartbeat failed", "err", err)
				failing = true
			case err == nil && failing:
				w.log.Info("heartbeats reach the leader again")
				failing = false
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
