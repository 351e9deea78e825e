// Package sim is `orchd simulate`: N simulated worker nodes in one process,
// for benchmarks, tests and capacity planning. The nodes register, send
// heartbeats, and report every pod bound to them Running and Ready without
// running anything; they confirm pod deletions at once. Every simulated node
// carries the label orch.dev/simulated=true, so it is never mistaken for a
// real worker.
package sim

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"orch.dev/orch/api"
	"orch.dev/orch/api/client"
)

// SimulatedLabel marks simulated nodes.
const SimulatedLabel = "orch.dev/simulated"

// Config describes the simulated nodes.
type Config struct {
	Prefix   string // node names: Prefix + index
	Nodes    int
	CPU      resource.Quantity
	Memory   resource.Quantity
	Pods     int64
	GPUs     int64
	Labels   map[string]string
	Interval time.Duration // heartbeat interval (default 1s)
	// Workers bounds the concurrent pod status updates (default 64).
	Workers int
	Logger  *slog.Logger
}

// Simulator runs the simulated nodes against the API.
type Simulator struct {
	cfg   Config
	cl    *client.Client
	nodes map[string]string // name -> InternalIP
	log   *slog.Logger

	reported atomic.Int64 // pods reported Running
	podIPs   atomic.Int64 // pod IPs handed out
}

// New prepares a simulator that talks to the API through cl.
func New(cfg Config, cl *client.Client) (*Simulator, error) {
	if cfg.Nodes <= 0 {
		return nil, errors.New("--nodes: must be at least 1")
	}
	if cfg.Interval == 0 {
		cfg.Interval = time.Second
	}
	if cfg.Workers == 0 {
		cfg.Workers = 64
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Simulator{cfg: cfg, cl: cl, nodes: map[string]string{}, log: cfg.Logger}
	for i := range cfg.Nodes {
		s.nodes[s.nodeName(i)] = fakeIP(18, i)
	}
	return s, nil
}

func (s *Simulator) nodeName(i int) string { return fmt.Sprintf("%s%d", s.cfg.Prefix, i) }

// Reported is how many pods the simulator has reported Running.
func (s *Simulator) Reported() int64 { return s.reported.Load() }

func (s *Simulator) node(i int) *corev1.Node {
	name := s.nodeName(i)
	labels := map[string]string{SimulatedLabel: "true", corev1.LabelHostname: name, corev1.LabelOSStable: "linux"}
	for k, v := range s.cfg.Labels {
		labels[k] = v
	}
	capacity := corev1.ResourceList{corev1.ResourceCPU: s.cfg.CPU, corev1.ResourceMemory: s.cfg.Memory,
		corev1.ResourcePods: *resource.NewQuantity(s.cfg.Pods, resource.DecimalSI)}
	if s.cfg.GPUs > 0 {
		capacity["nvidia.com/gpu"] = *resource.NewQuantity(s.cfg.GPUs, resource.DecimalSI)
	}
	n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels},
		Status: corev1.NodeStatus{Capacity: capacity, Allocatable: capacity,
			Addresses: []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: fakeIP(18, i)}, {Type: corev1.NodeHostName, Address: name}},
			NodeInfo:  corev1.NodeSystemInfo{KubeletVersion: "orch-simulated", OperatingSystem: "linux", Architecture: "amd64"}}}
	api.Node.SetTypeMeta(n)
	return n
}

// fakeIP gives node or pod i an address in the benchmarking range
// 198.18.0.0/15 (nodes in 198.18/16, pods in 198.19/16, wrapping after
// 65,536); no traffic is ever sent to it.
func fakeIP(second byte, i int) string {
	return net.IPv4(198, second, byte(i>>8), byte(i)).String()
}

// Register creates the nodes that do not exist yet.
func (s *Simulator) Register(ctx context.Context) error {
	sem := make(chan struct{}, s.cfg.Workers)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var firstErr error
	for i := range s.cfg.Nodes {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			if _, err := s.cl.Create(ctx, s.node(i)); err != nil && !apierrors.IsAlreadyExists(err) {
				mu.Lock()
				if firstErr == nil {
					firstErr = fmt.Errorf("registering node %s: %w", s.nodeName(i), err)
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return firstErr
}

// Deregister deletes the simulated nodes (a clean `orchd simulate` exit).
func (s *Simulator) Deregister(ctx context.Context) {
	for name := range s.nodes {
		s.cl.Delete(ctx, api.Node, "", name, client.DeleteOptions{})
	}
}

// heartbeat reports every node alive, in one request.
func (s *Simulator) heartbeat(ctx context.Context) error {
	names := make([]string, 0, len(s.nodes))
	for n := range s.nodes {
		names = append(names, n)
	}
	body := fmt.Sprintf(`{"nodes":%s}`, jsonList(names))
	_, err := s.cl.Do(ctx, client.Request{Method: http.MethodPost, Path: "/v1/heartbeats", Body: []byte(body)})
	return err
}

func jsonList(names []string) string {
	b := []byte{'['}
	for i, n := range names {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, '"')
		b = append(b, n...)
		b = append(b, '"')
	}
	return string(append(b, ']'))
}

// Run heartbeats and plays the kubelet for the simulated nodes until ctx ends.
func (s *Simulator) Run(ctx context.Context) error {
	// Only bound pods concern a node: pending ones (a third of all pod
	// events in a scale-up) are left out by the server.
	w, err := s.cl.Watch(ctx, api.Pod, "", client.ListOptions{Stale: true, FieldSelector: "spec.nodeName!="})
	if err != nil {
		return err
	}
	defer w.Stop()
	work := make(chan *corev1.Pod, 4096)
	var wg sync.WaitGroup
	for range s.cfg.Workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for p := range work {
				s.handle(ctx, p)
			}
		}()
	}
	defer func() {
		close(work)
		wg.Wait()
	}()
	tick := time.NewTicker(s.cfg.Interval)
	defer tick.Stop()
	if err := s.heartbeat(ctx); err != nil {
		s.log.Warn("heartbeat failed", "err", err)
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
			if err := s.heartbeat(ctx); err != nil && ctx.Err() == nil {
				s.log.Warn("heartbeat failed", "err", err)
			}
		case e, ok := <-w.Events():
			if !ok {
				return fmt.Errorf("pod watch ended: %v", w.Err())
			}
			p := e.Object.(*corev1.Pod)
			if e.Type == client.Deleted || s.nodes[p.Spec.NodeName] == "" {
				continue
			}
			if p.DeletionTimestamp != nil || p.Status.Phase == corev1.PodPending {
				select {
				case work <- p:
				case <-ctx.Done():
					return nil
				}
			}
		}
	}
}

// handle confirms a deletion, or reports a newly bound pod Running and Ready.
func (s *Simulator) handle(ctx context.Context, p *corev1.Pod) {
	if p.DeletionTimestamp != nil {
		zero := int64(0)
		if err := s.cl.Delete(ctx, api.Pod, p.Namespace, p.Name, client.DeleteOptions{UID: string(p.UID), Grace: &zero}); err != nil && !apierrors.IsNotFound(err) && ctx.Err() == nil {
			s.log.Warn("confirming pod deletion", "pod", p.Namespace+"/"+p.Name, "err", err)
		}
		return
	}
	next := p.DeepCopy()
	now := metav1.Now()
	next.Status.Phase = corev1.PodRunning
	next.Status.StartTime = &now
	next.Status.PodIP = fakeIP(19, int(s.podIPs.Add(1)-1))
	next.Status.HostIP = s.nodes[p.Spec.NodeName]
	for _, t := range []corev1.PodConditionType{corev1.PodInitialized, corev1.ContainersReady, corev1.PodReady} {
		setCondition(&next.Status, corev1.PodCondition{Type: t, Status: corev1.ConditionTrue, LastTransitionTime: now})
	}
	next.Status.ContainerStatuses = nil
	for _, c := range p.Spec.Containers {
		next.Status.ContainerStatuses = append(next.Status.ContainerStatuses, corev1.ContainerStatus{Name: c.Name, Image: c.Image,
			Ready: true, Started: ptr(true), State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: now}}})
	}
	if _, err := s.cl.UpdateStatus(ctx, next); err != nil {
		if !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) && ctx.Err() == nil {
			s.log.Warn("reporting pod status", "pod", p.Namespace+"/"+p.Name, "err", err)
		}
		return
	}
	s.reported.Add(1)
}

func setCondition(st *corev1.PodStatus, c corev1.PodCondition) {
	for i := range st.Conditions {
		if st.Conditions[i].Type == c.Type {
			st.Conditions[i] = c
			return
		}
	}
	st.Conditions = append(st.Conditions, c)
}

func ptr[T any](v T) *T { return &v }
