package agent

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// securedCluster is one server with a cluster secret (authentication on)
// holding two nodes, n1 and n2, each with a pod, and the ConfigMaps and
// Secrets those pods use or do not use.
func securedCluster(t *testing.T) (*testCluster, *Agent) {
	t.Helper()
	c := startCluster(t, 1, newClusterSecretForTest())
	a := c.agents[0]
	for _, f := range []struct{ path, body string }{
		{"/api/v1/nodes", `{"metadata":{"name":"n1"}}`},
		{"/api/v1/nodes", `{"metadata":{"name":"n2"}}`},
		{"/api/v1/namespaces/default/configmaps", `{"metadata":{"name":"cm-used"},"data":{"k":"v"}}`},
		{"/api/v1/namespaces/default/configmaps", `{"metadata":{"name":"cm-other"},"data":{"k":"v"}}`},
		{"/api/v1/namespaces/default/secrets", `{"metadata":{"name":"sec-env"},"stringData":{"k":"v"}}`},
		{"/api/v1/namespaces/default/secrets", `{"metadata":{"name":"sec-vol"},"stringData":{"k":"v"}}`},
		{"/api/v1/namespaces/default/secrets", `{"metadata":{"name":"sec-other"},"stringData":{"k":"v"}}`},
		{"/api/v1/namespaces/default/pods", `{"metadata":{"name":"p1"},"spec":{"nodeName":"n1",
			"volumes":[{"name":"c","configMap":{"name":"cm-used"}},{"name":"s","secret":{"secretName":"sec-vol"}}],
			"containers":[{"name":"c","image":"busybox","env":[{"name":"E","valueFrom":{"secretKeyRef":{"name":"sec-env","key":"k"}}}]}]}}`},
		{"/api/v1/namespaces/default/pods", `{"metadata":{"name":"p2"},"spec":{"nodeName":"n2","volumes":[{"name":"s","secret":{"secretName":"sec-other"}}],
			"containers":[{"name":"c","image":"busybox","envFrom":[{"configMapRef":{"name":"cm-other"}}]}]}}`},
	} {
		if code, body := do(t, a, "POST", f.path, "", f.body); code != http.StatusCreated {
			t.Fatalf("POST %s: %d %s", f.path, code, body)
		}
	}
	return c, a
}

// attrs builds the attributes of a request as the middleware sees them.
func attrs(method, target string) *requestAttrs {
	r, err := http.NewRequest(method, target, nil)
	if err != nil {
		panic(err)
	}
	return attributesOf(r)
}

type authzCase struct {
	method, target string
	allowed        bool
	objectName     string // a Node create's body name
}

func checkAuthz(t *testing.T, a *Agent, p Principal, cases []authzCase) {
	t.Helper()
	view := a.fsm.View()
	for _, c := range cases {
		at := attrs(c.method, c.target)
		at.objectName = c.objectName
		reason := authorize(p, at, view)
		if (reason == "") != c.allowed {
			t.Errorf("%s (%s) %s %s: allowed=%v, want %v (reason %q)", p.Name, p.Role, c.method, c.target, reason == "", c.allowed, reason)
		}
	}
}

const podsOf = "/api/v1/pods?fieldSelector="

// Every rule of every role, against the real authoriser and real state.
func TestAuthorizationRules(t *testing.T) {
	_, a := securedCluster(t)
	ns := "/api/v1/namespaces/default"
	sys := "/api/v1/namespaces/" + SystemNamespace
	worker := Principal{Name: "n1", Role: AccessWorker}
	checkAuthz(t, a, worker, []authzCase{
		// Its Node, all Nodes (routes), Services, Endpoints, Namespaces.
		{"GET", "/api/v1/nodes/n1", true, ""}, {"GET", "/api/v1/nodes", true, ""}, {"GET", "/api/v1/nodes?watch=true", true, ""},
		{"POST", "/api/v1/nodes", true, "n1"}, {"PUT", "/api/v1/nodes/n1", true, ""}, {"PUT", "/api/v1/nodes/n1/status", true, ""},
		{"PATCH", "/api/v1/nodes/n1/status", true, ""},
		{"POST", "/api/v1/nodes", false, "n2"}, {"PUT", "/api/v1/nodes/n2", false, ""}, {"PUT", "/api/v1/nodes/n2/status", false, ""},
		{"DELETE", "/api/v1/nodes/n1", false, ""},
		{"GET", "/api/v1/services?watch=true", true, ""}, {"GET", "/api/v1/endpoints", true, ""}, {"GET", "/api/v1/namespaces", true, ""},
		{"POST", ns + "/services", false, ""}, {"PUT", ns + "/endpoints/x", false, ""},
		// Its pods only.
		{"GET", podsOf + url.QueryEscape("spec.nodeName=n1"), true, ""},
		{"GET", podsOf + url.QueryEscape("spec.nodeName=n1") + "&watch=true", true, ""},
		{"GET", "/api/v1/pods", false, ""}, {"GET", podsOf + url.QueryEscape("spec.nodeName=n2"), false, ""},
		{"GET", podsOf + url.QueryEscape("spec.nodeName!=n1"), false, ""},
		{"GET", ns + "/pods/p1", true, ""}, {"GET", ns + "/pods/p2", false, ""},
		{"PUT", ns + "/pods/p1/status", true, ""}, {"PATCH", ns + "/pods/p1/status", true, ""},
		{"PUT", ns + "/pods/p2/status", false, ""}, {"PUT", ns + "/pods/p1", false, ""},
		{"DELETE", ns + "/pods/p1", true, ""}, {"DELETE", ns + "/pods/p2", false, ""}, {"DELETE", ns + "/pods", false, ""},
		{"POST", ns + "/pods", false, ""}, {"POST", ns + "/pods/p2/eviction", false, ""}, {"GET", ns + "/pods/p1/log", false, ""},
		// The ConfigMaps and Secrets its pods use, by every kind of reference.
		{"GET", ns + "/configmaps/cm-used", true, ""}, {"GET", ns + "/secrets/sec-env", true, ""},
		{"GET", ns + "/secrets/sec-vol", true, ""},
		{"GET", ns + "/configmaps/cm-other", false, ""}, {"GET", ns + "/secrets/sec-other", false, ""},
		{"GET", ns + "/secrets", false, ""}, {"PUT", ns + "/secrets/sec-env", false, ""},
		// Events, heartbeats, discovery; nothing else.
		{"POST", ns + "/events", true, ""}, {"POST", "/v1/heartbeats", true, ""}, {"GET", "/api/v1", true, ""},
		{"GET", "/apis/apps/v1", true, ""},
		{"GET", sys + "/secrets/token-0123456789abcdef", false, ""}, {"POST", "/apis/apps/v1/namespaces/default/deployments", false, ""},
		{"GET", "/v1/operator/raft/peers", false, ""}, {"POST", "/v1/tokens", false, ""}, {"GET", "/metrics", false, ""},
	})
	checkAuthz(t, a, Principal{Name: "alice", Role: AccessView}, []authzCase{
		{"GET", ns + "/pods", true, ""}, {"GET", ns + "/pods/p1", true, ""}, {"GET", "/api/v1/nodes?watch=1", true, ""},
		{"GET", ns + "/configmaps/cm-used", true, ""}, {"GET", ns + "/pods/p1/log", true, ""}, {"GET", "/v1/members", true, ""},
		{"GET", ns + "/secrets/sec-env", false, ""}, {"GET", ns + "/secrets", false, ""}, {"GET", "/api/v1/secrets?watch=true", false, ""},
		{"POST", ns + "/configmaps", false, ""}, {"DELETE", ns + "/pods/p1", false, ""}, {"POST", ns + "/pods/p1/exec", false, ""},
		{"PATCH", ns + "/pods/p1/status", false, ""},
		{"GET", sys + "/configmaps", false, ""}, {"GET", "/api/v1/namespaces/" + SystemNamespace, false, ""},
		{"GET", "/v1/tokens", false, ""}, {"POST", "/v1/operator/raft/transfer-leader", false, ""},
	})
	checkAuthz(t, a, Principal{Name: "bob", Role: AccessEdit}, []authzCase{
		{"POST", ns + "/secrets", true, ""}, {"GET", ns + "/secrets/sec-env", true, ""}, {"PUT", ns + "/secrets/sec-env", true, ""},
		{"DELETE", ns + "/secrets", true, ""}, {"POST", ns + "/pods/p1/exec", true, ""}, {"POST", ns + "/pods/p1/eviction", true, ""},
		{"GET", "/api/v1/secrets", true, ""}, {"POST", "/v1/images/import", true, ""}, {"GET", "/api/v1/nodes", true, ""},
		{"POST", sys + "/secrets", false, ""}, {"GET", sys + "/secrets/token-0123456789abcdef", false, ""},
		{"DELETE", "/api/v1/namespaces/" + SystemNamespace, false, ""},
		{"PUT", "/api/v1/nodes/n1", false, ""}, {"POST", "/api/v1/namespaces", false, ""}, {"POST", "/apis/scheduling.k8s.io/v1/priorityclasses", false, ""},
		{"GET", "/v1/operator/snapshot", false, ""}, {"POST", "/v1/tokens", false, ""}, {"DELETE", "/v1/tokens/0123456789abcdef", false, ""},
		{"GET", "/internal/v1/status", false, ""}, {"POST", "/v1/heartbeats", false, ""}, {"GET", "/debug/pprof/", false, ""},
	})
	for _, p := range []Principal{clusterAdmin, {Name: "s2", Role: AccessServer}} {
		checkAuthz(t, a, p, []authzCase{
			{"GET", sys + "/secrets", true, ""}, {"POST", "/v1/tokens", true, ""}, {"DELETE", "/v1/operator/raft/peers/s3", true, ""},
			{"PUT", "/api/v1/nodes/n1", true, ""}, {"GET", "/internal/v1/read-index", true, ""},
		})
	}
	checkAuthz(t, a, Principal{Name: "nobody"}, []authzCase{{"GET", ns + "/pods", false, ""}, {"GET", "/api", false, ""}})
}

func TestRequestAttributes(t *testing.T) {
	for _, c := range []struct {
		method, target                               string
		verb, resource, namespace, name, subresource string
		audited                                      bool
	}{
		{"GET", "/api/v1/namespaces/default/pods/p1", "get", "pods", "default", "p1", "", false},
		{"GET", "/api/v1/pods?watch=true", "watch", "pods", "", "", "", false},
		{"GET", "/api/v1/namespaces/default/pods", "list", "pods", "default", "", "", false},
		{"PUT", "/api/v1/namespaces/default/pods/p1/status", "update", "pods/status", "default", "p1", "status", true},
		{"POST", "/api/v1/namespaces/default/pods/p1/exec", "create", "pods/exec", "default", "p1", "exec", true},
		{"GET", "/api/v1/namespaces/default/pods/p1/log", "get", "pods/log", "default", "p1", "log", false},
		{"DELETE", "/apis/apps/v1/namespaces/x/deployments", "deletecollection", "deployments", "x", "", "", true},
		{"PATCH", "/api/v1/namespaces/x/status", "patch", "namespaces/status", "", "x", "status", true},
		{"DELETE", "/v1/tokens/0123456789abcdef", "delete", "tokens", "", "0123456789abcdef", "", true},
		{"DELETE", "/v1/operator/raft/peers/s2", "delete", "operator/raft/peers", "", "s2", "", true},
		{"GET", "/v1/operator/snapshot", "get", "operator/snapshot", "", "", "", true},
		{"GET", "/v1/operator/raft/peers", "get", "operator/raft/peers", "", "", "", false},
		{"POST", "/v1/heartbeats", "create", "heartbeats", "", "", "", false},
		{"POST", "/v1/join", "create", "join", "", "", "", true},
	} {
		at := attrs(c.method, c.target)
		if at.verb != c.verb || at.resource != c.resource || at.namespace != c.namespace || at.name != c.name ||
			at.subresource != c.subresource || at.audited() != c.audited {
			t.Errorf("%s %s: %+v audited=%v", c.method, c.target, at, at.audited())
		}
	}
	if strings.Contains(attrs("GET", "/x").resource, "/v1/") {
		t.Error("path resource keeps its prefix")
	}
}
