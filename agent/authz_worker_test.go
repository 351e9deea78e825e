package agent

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"orch.dev/orch/api"
	"orch.dev/orch/api/client"
	"orch.dev/orch/internal/pki"
	"orch.dev/orch/node/kubelet"
)

// workerClient is a Go client that reaches a's API as worker node: its
// requests carry a verified worker certificate, as the TLS listener would
// pass them on, through the same handler chain.
func workerClient(t *testing.T, a *Agent, node string) *client.Client {
	t.Helper()
	now := time.Now()
	ca, err := pki.NewCA(pki.CAOptions{Now: now})
	if err != nil {
		t.Fatal(err)
	}
	key, _ := pki.NewKey()
	cert, err := ca.IssueNode(key.Public(), pki.RoleWorker, pki.NodeRequest{Name: node}, pki.IssueOptions{Now: now})
	if err != nil {
		t.Fatal(err)
	}
	cs := &tls.ConnectionState{HandshakeComplete: true, VerifiedChains: [][]*x509.Certificate{{cert, ca.Cert}}}
	h := a.httpServer.Handler
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.TLS = cs
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	cl, err := client.New(client.Config{Servers: []string{srv.URL}, RetryFor: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return cl
}

func wantForbidden(t *testing.T, what string, err error) {
	t.Helper()
	if !apierrors.IsForbidden(err) {
		t.Fatalf("%s: %v, want 403", what, err)
	}
}

// What a worker does through the API today (node/worker registration and
// heartbeats, node/kubelet's ClientCluster, the Follow loops of proxy,
// node/dns and node/routes) works with a worker identity against the real
// authoriser; what it must not do is refused.
func TestWorkerIdentityCanDoWhatAWorkerNeeds(t *testing.T) {
	c, a := securedCluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cl := workerClient(t, a, "n1")

	// node/worker register.go: get, create, update its Node and status.
	o, err := cl.Get(ctx, api.Node, "", "n1", false)
	if err != nil {
		t.Fatalf("get own Node: %v", err)
	}
	n := o.(*corev1.Node)
	n.Labels = map[string]string{"zone": "a"}
	if o, err = cl.Update(ctx, n); err != nil {
		t.Fatalf("update own Node: %v", err)
	}
	n = o.(*corev1.Node)
	n.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue}}
	if _, err := cl.UpdateStatus(ctx, n); err != nil {
		t.Fatalf("update own Node status: %v", err)
	}
	n3 := workerClient(t, a, "n3")
	if _, err := n3.Get(ctx, api.Node, "", "n3", false); !apierrors.IsNotFound(err) {
		t.Fatalf("get a missing own Node: %v", err)
	}
	node3 := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n3"}}
	api.Node.SetTypeMeta(node3)
	if _, err := n3.Create(ctx, node3); err != nil {
		t.Fatalf("register own Node: %v", err)
	}
	for _, hb := range []struct {
		nodes string
		code  int
	}{{`{"nodes":["n1"]}`, http.StatusNoContent}, {`{"nodes":["n1","n2"]}`, http.StatusForbidden}} {
		_, err := cl.Do(ctx, client.Request{Method: http.MethodPost, Path: "/v1/heartbeats", Body: []byte(hb.nodes)})
		if hb.code == http.StatusForbidden {
			wantForbidden(t, "heartbeat for another node", err)
		} else if err != nil {
			t.Fatalf("heartbeat: %v", err)
		}
	}

	// node/kubelet: its pods, their ConfigMaps and Secrets, pod status,
	// confirmed deletions.
	kc := kubelet.ClientCluster{Client: func() *client.Client { return cl }}
	pods, rv, err := kc.ListPods(ctx, "n1", "")
	if err != nil || len(pods) != 1 || pods[0].Name != "p1" {
		t.Fatalf("list own pods: %v %v", pods, err)
	}
	events := make(chan kubelet.WatchEvent, 16)
	wctx, wcancel := context.WithCancel(ctx)
	defer wcancel()
	go kc.WatchPods(wctx, "n1", rv, func(e kubelet.WatchEvent) { events <- e })
	if _, err := kc.GetConfigMap(ctx, "default", "cm-used"); err != nil {
		t.Fatalf("get a used ConfigMap: %v", err)
	}
	s, err := kc.GetSecret(ctx, "default", "sec-env")
	if err != nil || string(s.Data["k"]) != "v" {
		t.Fatalf("get a used Secret: %v %v", s, err)
	}
	p1 := pods[0].DeepCopy()
	p1.Status.Phase = corev1.PodRunning
	if err := kc.UpdatePodStatus(ctx, p1); err != nil {
		t.Fatalf("update own pod status: %v", err)
	}
	c.waitFor("the watch to report the status", func() bool {
		select {
		case e := <-events:
			return e.Type == kubelet.EventModified && e.Pod.Name == "p1" && e.Pod.Status.Phase == corev1.PodRunning
		default:
			return false
		}
	})

	// proxy, node/dns, node/routes: follow Services, Endpoints, Nodes.
	for _, k := range []*api.Kind{api.Service, api.Endpoints, api.Node, api.Namespace} {
		synced := make(chan int, 1)
		fctx, fcancel := context.WithCancel(ctx)
		go client.Follow(fctx, cl, k, nil, func(objs []api.Object) {
			select {
			case synced <- len(objs):
			default:
			}
		}, func(client.Event) {})
		select {
		case n := <-synced:
			if k == api.Node && n != 3 {
				t.Fatalf("following Nodes: %d, want 3", n)
			}
		case <-ctx.Done():
			t.Fatalf("following %s: no list", k.Resource)
		}
		fcancel()
	}
	ev := &corev1.Event{ObjectMeta: metav1.ObjectMeta{Name: "e1", Namespace: "default"},
		InvolvedObject: corev1.ObjectReference{Kind: "Pod", Namespace: "default", Name: "p1"}, Reason: "Started"}
	api.Event.SetTypeMeta(ev)
	if _, err := cl.Create(ctx, ev); err != nil {
		t.Fatalf("create an Event: %v", err)
	}

	// Refused: another node's pods, Node, Secrets; pods without the node
	// selector; registering as another node.
	p2 := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p2", Namespace: "default"}, Status: corev1.PodStatus{Phase: corev1.PodFailed}}
	wantForbidden(t, "update another node's pod status", kc.UpdatePodStatus(ctx, p2))
	wantForbidden(t, "delete another node's pod", kc.ConfirmPodDeletion(ctx, "default", "p2", ""))
	_, _, err = kc.ListPods(ctx, "n2", "")
	wantForbidden(t, "list another node's pods", err)
	_, err = cl.ListAll(ctx, api.Pod, "", client.ListOptions{})
	wantForbidden(t, "list all pods", err)
	_, err = kc.GetSecret(ctx, "default", "sec-other")
	wantForbidden(t, "get another node's Secret", err)
	o, err = cl.Get(ctx, api.Node, "", "n2", false)
	if err != nil {
		t.Fatal(err)
	}
	other := o.(*corev1.Node)
	other.Spec.Unschedulable = true
	_, err = cl.Update(ctx, other)
	wantForbidden(t, "update another Node", err)
	_, err = cl.UpdateStatus(ctx, other)
	wantForbidden(t, "update another Node's status", err)
	node4 := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n4"}}
	api.Node.SetTypeMeta(node4)
	_, err = n3.Create(ctx, node4)
	wantForbidden(t, "register as another node", err)
	if got := a.fsm.View().Get(api.Node, "", "n2").Obj.(*corev1.Node); got.Spec.Unschedulable {
		t.Fatal("a refused update changed n2")
	}

	// Last: the kubelet confirms its own pod's deletion.
	if err := kc.ConfirmPodDeletion(ctx, "default", "p1", string(pods[0].UID)); err != nil {
		t.Fatalf("confirm own pod deletion: %v", err)
	}
	c.waitFor("p1 to go", func() bool { return a.fsm.View().Get(api.Pod, "default", "p1") == nil })
	c.waitFor("the refused Node update in the audit log", func() bool {
		return hasAudit(auditLines(t, a), func(e AuditEntry) bool {
			return e.User == "n1" && e.Role == "worker" && e.Resource == "nodes" && e.Name == "n2" && e.Code == http.StatusForbidden
		})
	})
}
