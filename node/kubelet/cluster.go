package kubelet

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"

	"orch.dev/orch/api"
	"orch.dev/orch/api/client"
)

// Cluster is what the kubelet needs from the control plane. All reads may
// be stale (served by any server).
type Cluster interface {
	// ListPods returns the pods bound to node and the resourceVersion of
	// the state they were read from. With minRV != "" the answer comes
	// from a state at least that new.
	ListPods(ctx context.Context, node, minRV string) ([]*corev1.Pod, string, error)
	// WatchPods calls fn for every change to the pods bound to node after
	// resourceVersion rv, until ctx ends or the stream breaks (it returns
	// the reason). When the servers no longer hold the history after rv it
	// returns an error for which apierrors.IsResourceExpired or IsGone holds.
	WatchPods(ctx context.Context, node, rv string, fn func(WatchEvent)) error
	GetConfigMap(ctx context.Context, namespace, name string) (*corev1.ConfigMap, error)
	GetSecret(ctx context.Context, namespace, name string) (*corev1.Secret, error)
	// UpdatePodStatus writes pod.Status through the status subresource,
	// unconditionally but only to the pod with pod.UID.
	UpdatePodStatus(ctx context.Context, pod *corev1.Pod) error
	// ConfirmPodDeletion deletes the pod with grace 0 (its containers have
	// stopped), only if it still has this uid.
	ConfirmPodDeletion(ctx context.Context, namespace, name, uid string) error
}

// WatchEvent is one change seen by WatchPods. Bookmarks carry only RV.
type WatchEvent struct {
	Type string // ADDED, MODIFIED, DELETED or BOOKMARK
	Pod  *corev1.Pod
	RV   string
}

// Event types of WatchEvent.
const (
	EventAdded    = "ADDED"
	EventModified = "MODIFIED"
	EventDeleted  = "DELETED"
	EventBookmark = "BOOKMARK"
)

// ClientCluster is the Cluster behind the Go client. Client returns the
// client to use for each call, so the worker can replace it when gossip
// announces other servers.
type ClientCluster struct {
	Client func() *client.Client
}

var _ Cluster = ClientCluster{}

func nodeSelector(node string) string {
	return fields.OneTermEqualSelector("spec.nodeName", node).String()
}

// ListPods implements Cluster.
func (c ClientCluster) ListPods(ctx context.Context, node, minRV string) ([]*corev1.Pod, string, error) {
	list, err := c.Client().ListAll(ctx, api.Pod, "", client.ListOptions{FieldSelector: nodeSelector(node), Stale: true, ResourceVersion: minRV})
	if err != nil {
		return nil, "", err
	}
	pods := make([]*corev1.Pod, 0, len(list.Items))
	for _, o := range list.Items {
		pods = append(pods, o.(*corev1.Pod))
	}
	return pods, list.ResourceVersion, nil
}

// WatchPods implements Cluster.
func (c ClientCluster) WatchPods(ctx context.Context, node, rv string, fn func(WatchEvent)) error {
	q := url.Values{}
	q.Set("watch", "true")
	q.Set("allowWatchBookmarks", "true")
	q.Set("fieldSelector", nodeSelector(node))
	q.Set("stale", "true")
	q.Set("resourceVersion", rv)
	resp, err := c.Client().Do(ctx, client.Request{Method: http.MethodGet, Path: api.Pod.Path(""), Query: q, Stream: true})
	if err != nil {
		return err
	}
	defer resp.Stream.Close()
	sc := bufio.NewScanner(resp.Stream)
	sc.Buffer(make([]byte, 64<<10), 8<<20)
	for sc.Scan() {
		var we struct {
			Type   string          `json:"type"`
			Object json.RawMessage `json:"object"`
		}
		if err := json.Unmarshal(sc.Bytes(), &we); err != nil {
			return err
		}
		switch we.Type {
		case "ERROR":
			var st metav1.Status
			json.Unmarshal(we.Object, &st)
			return &apierrors.StatusError{ErrStatus: st}
		case EventBookmark:
			var m struct {
				Metadata metav1.ObjectMeta `json:"metadata"`
			}
			json.Unmarshal(we.Object, &m)
			fn(WatchEvent{Type: EventBookmark, RV: m.Metadata.ResourceVersion})
			continue
		}
		pod := &corev1.Pod{}
		if err := json.Unmarshal(we.Object, pod); err != nil {
			return fmt.Errorf("watch event: %w", err)
		}
		fn(WatchEvent{Type: we.Type, Pod: pod, RV: pod.ResourceVersion})
	}
	if err := sc.Err(); err != nil {
		return err
	}
	return errors.New("watch stream ended")
}

// GetConfigMap implements Cluster.
func (c ClientCluster) GetConfigMap(ctx context.Context, namespace, name string) (*corev1.ConfigMap, error) {
	o, err := c.Client().Get(ctx, api.ConfigMap, namespace, name, true)
	if err != nil {
		return nil, err
	}
	return o.(*corev1.ConfigMap), nil
}

// GetSecret implements Cluster.
func (c ClientCluster) GetSecret(ctx context.Context, namespace, name string) (*corev1.Secret, error) {
	o, err := c.Client().Get(ctx, api.Secret, namespace, name, true)
	if err != nil {
		return nil, err
	}
	return o.(*corev1.Secret), nil
}

// UpdatePodStatus implements Cluster.
func (c ClientCluster) UpdatePodStatus(ctx context.Context, pod *corev1.Pod) error {
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: pod.Name, Namespace: pod.Namespace, UID: pod.UID}, Status: pod.Status}
	api.Pod.SetTypeMeta(p)
	_, err := c.Client().UpdateStatus(ctx, p)
	return err
}

// ConfirmPodDeletion implements Cluster.
func (c ClientCluster) ConfirmPodDeletion(ctx context.Context, namespace, name, uid string) error {
	zero := int64(0)
	return c.Client().Delete(ctx, api.Pod, namespace, name, client.DeleteOptions{UID: uid, Grace: &zero})
}

// parseRV reads a resourceVersion; 0 when empty or malformed.
func parseRV(s string) uint64 {
	n, _ := strconv.ParseUint(s, 10, 64)
	return n
}
