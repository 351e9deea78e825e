package kubelet

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
)

// fakeCluster is an in-memory API for the kubelet: pods with versions and
// a watch history, ConfigMaps and Secrets, graceful deletion as the FSM
// does it, and a switch that makes it unreachable.
type fakeCluster struct {
	mu      sync.Mutex
	rv      uint64
	pods    map[string]*corev1.Pod
	cms     map[string]*corev1.ConfigMap
	secrets map[string]*corev1.Secret
	history []WatchEvent
	base    uint64 // history before this version is gone (410)
	down    bool
	changed chan struct{} // closed on every change
	writes  map[types.UID][]corev1.PodStatus
	gate    chan struct{} // when set, status writes wait for it
	uids    int
}

var errDown = errors.New("connect: connection refused")

func newFakeCluster() *fakeCluster {
	return &fakeCluster{rv: 10, pods: map[string]*corev1.Pod{}, cms: map[string]*corev1.ConfigMap{}, secrets: map[string]*corev1.Secret{},
		changed: make(chan struct{}), writes: map[types.UID][]corev1.PodStatus{}}
}

func (c *fakeCluster) notify() {
	close(c.changed)
	c.changed = make(chan struct{})
}

func (c *fakeCluster) event(t string, p *corev1.Pod) {
	c.history = append(c.history, WatchEvent{Type: t, Pod: p.DeepCopy(), RV: p.ResourceVersion})
	c.notify()
}

func (c *fakeCluster) setDown(down bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.down = down
	c.notify()
}

// compact drops the watch history (resumes get 410 Gone).
func (c *fakeCluster) compact() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.base = c.rv
	c.history = nil
}

func (c *fakeCluster) create(p *corev1.Pod) *corev1.Pod {
	c.mu.Lock()
	defer c.mu.Unlock()
	p = p.DeepCopy()
	c.rv++
	c.uids++
	if p.Namespace == "" {
		p.Namespace = "default"
	}
	if p.Spec.NodeName == "" {
		p.Spec.NodeName = "n1"
	}
	if p.Spec.RestartPolicy == "" {
		p.Spec.RestartPolicy = corev1.RestartPolicyAlways
	}
	if p.Spec.TerminationGracePeriodSeconds == nil {
		g := int64(30)
		p.Spec.TerminationGracePeriodSeconds = &g
	}
	p.UID = types.UID(fmt.Sprintf("uid-%s-%d", p.Name, c.uids))
	p.ResourceVersion = strconv.FormatUint(c.rv, 10)
	p.CreationTimestamp = metav1.Now()
	p.Status.Phase = corev1.PodPending
	p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodScheduled, Status: corev1.ConditionTrue}}
	c.pods[p.Namespace+"/"+p.Name] = p
	c.event(EventAdded, p)
	return p.DeepCopy()
}

// delete deletes a pod as the API does: gracefully (deletionTimestamp)
// while it runs, at once when it has finished.
func (c *fakeCluster) delete(ns, name string, grace *int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	p := c.pods[ns+"/"+name]
	if p == nil {
		return
	}
	c.rv++
	g := *p.Spec.TerminationGracePeriodSeconds
	if grace != nil {
		g = *grace
	}
	if g == 0 || p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
		delete(c.pods, ns+"/"+name)
		p.ResourceVersion = strconv.FormatUint(c.rv, 10)
		c.event(EventDeleted, p)
		return
	}
	ts := metav1.NewTime(time.Now().Add(time.Duration(g) * time.Second))
	p.DeletionTimestamp, p.DeletionGracePeriodSeconds = &ts, &g
	p.ResourceVersion = strconv.FormatUint(c.rv, 10)
	c.event(EventModified, p)
}

func (c *fakeCluster) get(ns, name string) *corev1.Pod {
	c.mu.Lock()
	defer c.mu.Unlock()
	if p := c.pods[ns+"/"+name]; p != nil {
		return p.DeepCopy()
	}
	return nil
}

func (c *fakeCluster) statusWrites(uid types.UID) []corev1.PodStatus {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]corev1.PodStatus(nil), c.writes[uid]...)
}

func (c *fakeCluster) ListPods(ctx context.Context, node, minRV string) ([]*corev1.Pod, string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.down {
		return nil, "", errDown
	}
	var out []*corev1.Pod
	for _, p := range c.pods {
		if p.Spec.NodeName == node {
			out = append(out, p.DeepCopy())
		}
	}
	return out, strconv.FormatUint(c.rv, 10), nil
}

func (c *fakeCluster) WatchPods(ctx context.Context, node, rv string, fn func(WatchEvent)) error {
	from, _ := strconv.ParseUint(rv, 10, 64)
	for {
		c.mu.Lock()
		if c.down {
			c.mu.Unlock()
			return errDown
		}
		if from < c.base {
			c.mu.Unlock()
			return apierrors.NewResourceExpired("too old resource version")
		}
		var evs []WatchEvent
		for _, e := range c.history {
			if parseRV(e.RV) > from && e.Pod.Spec.NodeName == node {
				evs = append(evs, e)
			}
		}
		if len(c.history) > 0 {
			from = max(from, parseRV(c.history[len(c.history)-1].RV))
		}
		changed := c.changed
		c.mu.Unlock()
		for _, e := range evs {
			fn(WatchEvent{Type: e.Type, Pod: e.Pod.DeepCopy(), RV: e.RV})
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-changed:
		}
	}
}

var (
	grConfigMap = schema.GroupResource{Resource: "configmaps"}
	grSecret    = schema.GroupResource{Resource: "secrets"}
	grPod       = schema.GroupResource{Resource: "pods"}
)

func (c *fakeCluster) GetConfigMap(ctx context.Context, ns, name string) (*corev1.ConfigMap, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.down {
		return nil, errDown
	}
	if cm := c.cms[ns+"/"+name]; cm != nil {
		return cm.DeepCopy(), nil
	}
	return nil, apierrors.NewNotFound(grConfigMap, name)
}

func (c *fakeCluster) GetSecret(ctx context.Context, ns, name string) (*corev1.Secret, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.down {
		return nil, errDown
	}
	if s := c.secrets[ns+"/"+name]; s != nil {
		return s.DeepCopy(), nil
	}
	return nil, apierrors.NewNotFound(grSecret, name)
}

func (c *fakeCluster) UpdatePodStatus(ctx context.Context, pod *corev1.Pod) error {
	c.mu.Lock()
	gate := c.gate
	c.mu.Unlock()
	if gate != nil {
		select {
		case <-gate:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.down {
		return errDown
	}
	p := c.pods[pod.Namespace+"/"+pod.Name]
	if p == nil {
		return apierrors.NewNotFound(grPod, pod.Name)
	}
	if p.UID != pod.UID {
		return apierrors.NewConflict(grPod, pod.Name, errors.New("uid mismatch"))
	}
	c.writes[p.UID] = append(c.writes[p.UID], *pod.Status.DeepCopy())
	c.rv++
	p.Status = *pod.Status.DeepCopy()
	p.ResourceVersion = strconv.FormatUint(c.rv, 10)
	c.event(EventModified, p)
	return nil
}

func (c *fakeCluster) ConfirmPodDeletion(ctx context.Context, ns, name, uid string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.down {
		return errDown
	}
	p := c.pods[ns+"/"+name]
	if p == nil {
		return apierrors.NewNotFound(grPod, name)
	}
	if string(p.UID) != uid {
		return apierrors.NewConflict(grPod, name, errors.New("uid mismatch"))
	}
	delete(c.pods, ns+"/"+name)
	c.rv++
	p.ResourceVersion = strconv.FormatUint(c.rv, 10)
	c.event(EventDeleted, p)
	return nil
}
