package agent

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"orch.dev/orch/api"
	"orch.dev/orch/fsm"
	"orch.dev/orch/internal/snapfile"
)

const cmPath = "/api/v1/namespaces/default/configmaps"

func configMapCount(t *testing.T, a *Agent) int {
	return a.fsm.View().Count(api.ConfigMap)
}

// Bad input gets a clear error naming the field, the right code, and
// changes nothing.
func TestBadInputIsRefusedAndChangesNothing(t *testing.T) {
	c := startCluster(t, 1, "")
	a := c.agents[0]
	if code, body := do(t, a, "POST", cmPath, "", `{"metadata":{"name":"existing"},"data":{"k":"v"}}`); code != 201 {
		t.Fatalf("setup: %d %s", code, body)
	}
	huge := strings.Repeat("x", api.MaxObjectBytes+1)
	tooBig := strings.Repeat("x", api.MaxRequestBytes+1)
	cases := []struct {
		name, method, path, ctype, body string
		code                            int
		want                            string
	}{
		{"malformed JSON", "POST", cmPath, "", `{"metadata":`, 400, "invalid ConfigMap"},
		{"unknown field", "POST", cmPath, "", `{"metadata":{"name":"a"},"datax":{}}`, 400, `unknown field "datax"`},
		{"nested unknown field", "POST", "/apis/apps/v1/namespaces/default/deployments", "",
			`{"metadata":{"name":"d"},"spec":{"replicaz":1}}`, 400, `unknown field "spec.replicaz"`},
		{"unsupported field", "POST", "/api/v1/namespaces/default/pods", "",
			`{"metadata":{"name":"p"},"spec":{"hostIPC":true,"containers":[{"name":"c","image":"i"}]}}`, 422, "spec.hostIPC: Forbidden: not supported by orch"},
		{"invalid name", "POST", cmPath, "", `{"metadata":{"name":"Bad_Name"}}`, 422, "metadata.name: Invalid value"},
		{"wrong kind in body", "POST", cmPath, "", `{"kind":"Secret","apiVersion":"v1","metadata":{"name":"a"}}`, 400, `kind: expected "ConfigMap"`},
		{"namespace mismatch", "POST", cmPath, "", `{"metadata":{"name":"a","namespace":"other"}}`, 400, "does not match the namespace"},
		{"missing namespace", "POST", "/api/v1/namespaces/nope/configmaps", "", `{"metadata":{"name":"a"}}`, 404, `namespaces "nope" not found`},
		{"already exists", "POST", cmPath, "", `{"metadata":{"name":"existing"}}`, 409, "already exists"},
		{"stale resourceVersion", "PUT", cmPath + "/existing", "", `{"metadata":{"name":"existing","resourceVersion":"1"},"data":{"k":"changed"}}`, 409, "the object has been modified"},
		{"invalid resourceVersion", "PUT", cmPath + "/existing", "", `{"metadata":{"name":"existing","resourceVersion":"abc"},"data":{"k":"changed"}}`, 400, "metadata.resourceVersion"},
		{"name mismatch", "PUT", cmPath + "/existing", "", `{"metadata":{"name":"other"}}`, 400, "does not match the name on the URL"},
		{"object too large", "POST", cmPath, "", `{"metadata":{"name":"big"},"data":{"k":"` + huge + `"}}`, 422, "data: Too long"},
		{"request too large", "POST", cmPath, "", `{"metadata":{"name":"big"},"data":{"k":"` + tooBig + `"}}`, 413, "limit is"},
		{"strategic merge patch", "PATCH", cmPath + "/existing", "application/strategic-merge-patch+json", `{}`, 415, "not supported"},
		{"bad merge patch", "PATCH", cmPath + "/existing", "application/merge-patch+json", `{"data":`, 400, "applying patch"},
		{"patch renames", "PATCH", cmPath + "/existing", "application/merge-patch+json", `{"metadata":{"name":"x"}}`, 400, "may not change metadata.name"},
		{"unknown resource", "GET", "/api/v1/namespaces/default/widgets", "", "", 404, "could not find the requested resource"},
		{"bad label selector", "GET", cmPath + "?labelSelector=a%3D%3D%3Db", "", "", 400, "labelSelector"},
		{"unsupported field selector", "GET", cmPath + "?fieldSelector=spec.nodeName%3Dx", "", "", 400, "field label not supported: spec.nodeName"},
		{"bad propagation", "DELETE", cmPath + "/existing?propagationPolicy=Sideways", "", "", 400, "propagationPolicy"},
		{"bad request id", "POST", cmPath, "", `{"metadata":{"name":"a"}}`, 400, "X-Orch-Request-Id"},
		{"delete missing", "DELETE", cmPath + "/missing", "", "", 404, `configmaps "missing" not found`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var header []string
			if tc.name == "bad request id" {
				header = []string{"X-Orch-Request-Id", "not/valid"}
			}
			code, body := do(t, a, tc.method, tc.path, tc.ctype, tc.body, header...)
			var st struct {
				Kind    string `json:"kind"`
				Code    int    `json:"code"`
				Message string `json:"message"`
			}
			if err := json.Unmarshal([]byte(body), &st); err != nil || st.Kind != "Status" || st.Code != code {
				t.Fatalf("error body is not a Kubernetes Status with the code: %d %s", code, body)
			}
			if code != tc.code || !strings.Contains(st.Message, tc.want) {
				t.Fatalf("got %d %q\nwant %d containing %q", code, st.Message, tc.code, tc.want)
			}
		})
	}
	if n := configMapCount(t, a); n != 1 {
		t.Fatalf("bad input changed the state: %d configmaps", n)
	}
	_, body := do(t, a, "GET", cmPath+"/existing", "", "")
	if !strings.Contains(body, `"k":"v"`) {
		t.Fatalf("existing object changed: %s", body)
	}
}

func TestObjectLifecycleAndStatusSubresource(t *testing.T) {
	c := startCluster(t, 1, "")
	a := c.agents[0]
	dep := `{"metadata":{"name":"web"},"spec":{"replicas":2,"selector":{"matchLabels":{"app":"web"}},"template":{"metadata":{"labels":{"app":"web"}},"spec":{"containers":[{"name":"web","image":"web:v1"}]}}}}`
	path := "/apis/apps/v1/namespaces/default/deployments"
	code, body := do(t, a, "POST", path, "", dep)
	var d struct {
		Metadata struct {
			UID             string `json:"uid"`
			ResourceVersion string `json:"resourceVersion"`
			Generation      int64  `json:"generation"`
			Created         string `json:"creationTimestamp"`
		} `json:"metadata"`
		Spec struct {
			Replicas int `json:"replicas"`
			Template struct {
				Spec struct {
					Containers []struct {
						Image string `json:"image"`
					} `json:"containers"`
				} `json:"spec"`
			} `json:"template"`
			Strategy struct {
				Type string `json:"type"`
			} `json:"strategy"`
		} `json:"spec"`
		Status struct {
			Replicas int `json:"replicas"`
		} `json:"status"`
	}
	decode := func(b string) {
		t.Helper()
		d = struct {
			Metadata struct {
				UID             string `json:"uid"`
				ResourceVersion string `json:"resourceVersion"`
				Generation      int64  `json:"generation"`
				Created         string `json:"creationTimestamp"`
			} `json:"metadata"`
			Spec struct {
				Replicas int `json:"replicas"`
				Template struct {
					Spec struct {
						Containers []struct {
							Image string `json:"image"`
						} `json:"containers"`
					} `json:"spec"`
				} `json:"template"`
				Strategy struct {
					Type string `json:"type"`
				} `json:"strategy"`
			} `json:"spec"`
			Status struct {
				Replicas int `json:"replicas"`
			} `json:"status"`
		}{}
		if err := json.Unmarshal([]byte(b), &d); err != nil {
			t.Fatalf("%v: %s", err, b)
		}
	}
	decode(body)
	if code != 201 || d.Metadata.UID == "" || d.Metadata.Created == "" || d.Metadata.Generation != 1 || d.Spec.Strategy.Type != "RollingUpdate" {
		t.Fatalf("create: %d %s", code, body)
	}
	uid := d.Metadata.UID

	// A spec change bumps the generation; status given on the main
	// resource is ignored.
	upd := strings.Replace(dep, `"replicas":2`, `"replicas":3`, 1)
	upd = strings.Replace(upd, `"spec":{"containers"`, `"spec":{"containers"`, 1)
	upd = upd[:len(upd)-1] + `,"status":{"replicas":9}}`
	code, body = do(t, a, "PUT", path+"/web", "", upd)
	decode(body)
	if code != 200 || d.Spec.Replicas != 3 || d.Metadata.Generation != 2 || d.Status.Replicas != 0 || d.Metadata.UID != uid {
		t.Fatalf("update: %d %s", code, body)
	}
	// The status subresource changes only the status.
	code, body = do(t, a, "PUT", path+"/web/status", "", strings.Replace(upd, `"replicas":3`, `"replicas":7`, 1))
	decode(body)
	if code != 200 || d.Spec.Replicas != 3 || d.Status.Replicas != 9 || d.Metadata.Generation != 2 {
		t.Fatalf("status update: %d %s", code, body)
	}
	// Merge patch and JSON patch.
	code, body = do(t, a, "PATCH", path+"/web", "application/merge-patch+json", `{"spec":{"replicas":5}}`)
	decode(body)
	if code != 200 || d.Spec.Replicas != 5 || d.Metadata.Generation != 3 {
		t.Fatalf("merge patch: %d %s", code, body)
	}
	code, body = do(t, a, "PATCH", path+"/web", "application/json-patch+json", `[{"op":"replace","path":"/spec/template/spec/containers/0/image","value":"web:v2"}]`)
	decode(body)
	if code != 200 || d.Spec.Template.Spec.Containers[0].Image != "web:v2" {
		t.Fatalf("json patch: %d %s", code, body)
	}
	// An update identical to the stored object creates no new version.
	rv := d.Metadata.ResourceVersion
	code, body = do(t, a, "PATCH", path+"/web", "application/merge-patch+json", `{"spec":{"replicas":5}}`)
	decode(body)
	if code != 200 || d.Metadata.ResourceVersion != rv {
		t.Fatalf("no-op patch made a new version: %d %s", code, body)
	}
	// dryRun stores nothing.
	if code, body := do(t, a, "POST", cmPath+"?dryRun=All", "", `{"metadata":{"name":"dry"}}`); code != 201 {
		t.Fatalf("dry run: %d %s", code, body)
	}
	if code, _ := do(t, a, "GET", cmPath+"/dry", "", ""); code != 404 {
		t.Fatal("a dry-run create was stored")
	}
	code, body = do(t, a, "DELETE", path+"/web", "", "")
	if code != 200 || !strings.Contains(body, `"status":"Success"`) || !strings.Contains(body, uid) {
		t.Fatalf("delete: %d %s", code, body)
	}
	if code, _ := do(t, a, "GET", path+"/web", "", ""); code != 404 {
		t.Fatalf("deleted object still readable: %d", code)
	}
}

// A write through a follower is forwarded to the leader, and a
// linearizable read through another follower right after sees it.
func TestFollowerForwardsWritesAndReadsLinearizably(t *testing.T) {
	c := startCluster(t, 3, "")
	var followers []*Agent
	for _, a := range c.agents {
		if a != c.leader() {
			followers = append(followers, a)
		}
	}
	for i := range 30 {
		name := fmt.Sprintf("cm-%d", i)
		w, r := followers[i%2], followers[(i+1)%2]
		if code, body := do(t, w, "POST", cmPath, "", `{"metadata":{"name":"`+name+`"}}`); code != 201 {
			t.Fatalf("create via follower: %d %s", code, body)
		}
		if code, body := do(t, r, "GET", cmPath+"/"+name, "", ""); code != 200 {
			t.Fatalf("linearizable read via the other follower missed a completed write: %d %s", code, body)
		}
	}
}

// Retrying a write with the same request ID applies it once.
func TestRequestIDMakesRetriesExactlyOnce(t *testing.T) {
	c := startCluster(t, 1, "")
	a := c.agents[0]
	var uids []string
	for range 2 {
		code, body := do(t, a, "POST", cmPath, "", `{"metadata":{"name":"once"}}`, "X-Orch-Request-Id", "req-1")
		if code != 201 {
			t.Fatalf("retried create: %d %s", code, body)
		}
		var m struct {
			Metadata struct{ UID string } `json:"metadata"`
		}
		json.Unmarshal([]byte(body), &m)
		uids = append(uids, m.Metadata.UID)
	}
	if uids[0] != uids[1] {
		t.Fatalf("the retry created a second object: %v", uids)
	}
	for range 2 {
		if code, body := do(t, a, "DELETE", cmPath+"/once", "", "", "X-Orch-Request-Id", "req-2"); code != 200 {
			t.Fatalf("retried delete: %d %s", code, body)
		}
	}
	// A new request with a new ID is a new write.
	if code, _ := do(t, a, "DELETE", cmPath+"/once", "", "", "X-Orch-Request-Id", "req-3"); code != 404 {
		t.Fatalf("delete of a deleted object with a new ID: %d", code)
	}
}

// Secret values never reach a log, even at debug level and on errors.
func TestSecretValuesNeverLogged(t *testing.T) {
	c := startCluster(t, 3, "")
	a := c.follower()
	const secret = "s3cr3t-VALUE-x9q"
	enc := base64.StdEncoding.EncodeToString([]byte(secret))
	path := "/api/v1/namespaces/default/secrets"
	steps := []struct {
		method, path, body string
	}{
		{"POST", path, `{"metadata":{"name":"db"},"stringData":{"password":"` + secret + `"}}`},
		{"GET", path + "/db", ""},
		{"GET", path, ""},
		{"PUT", path + "/db", `{"metadata":{"name":"db"},"data":{"bad key!":"` + enc + `"}}`},
		{"POST", path, `{"metadata":{"name":"db"},"data":{"password":"` + enc + `"}}`},
		{"PATCH", path + "/db", `{"data":{"other":"` + enc + `"}}`},
		{"DELETE", path + "/db", ""},
	}
	for _, s := range steps {
		ct := ""
		if s.method == "PATCH" {
			ct = "application/merge-patch+json"
		}
		code, body := do(t, a, s.method, s.path, ct, s.body)
		if code >= 400 && strings.Contains(body, secret) {
			t.Fatalf("%s %s: error body contains the secret: %s", s.method, s.path, body)
		}
	}
	for i, l := range c.logs {
		if out := l.String(); strings.Contains(out, secret) || strings.Contains(out, enc) {
			t.Fatalf("s%d's log contains the secret value", i+1)
		}
		if !strings.Contains(l.String(), "level=") {
			t.Fatalf("s%d logged nothing: the test would pass vacuously", i+1)
		}
	}
}

// Kubernetes' protobuf encoding works for writes (also when forwarded by a
// follower), reads and lists, and a response is what the client accepts.
func TestProtobufRequestsAndResponses(t *testing.T) {
	c := startCluster(t, 3, "")
	f := c.follower()
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "pb"}, Data: map[string]string{"k": "v"}}
	body, err := api.EncodeProto(api.ConfigMap, cm)
	if err != nil {
		t.Fatal(err)
	}
	code, resp := do(t, f, "POST", cmPath, api.ProtobufContentType, string(body), "Accept", api.ProtobufContentType)
	if code != 201 {
		t.Fatalf("protobuf create via follower: %d %s", code, resp)
	}
	got, err := api.DecodeProto(api.ConfigMap, []byte(resp))
	if err != nil || got.GetUID() == "" || got.(*corev1.ConfigMap).Data["k"] != "v" {
		t.Fatalf("protobuf answer: %v %+v", err, got)
	}
	if code, resp := do(t, f, "GET", cmPath+"/pb", "", ""); code != 200 || !strings.Contains(resp, `"k":"v"`) {
		t.Fatalf("JSON read of a protobuf-written object: %d %s", code, resp)
	}
	code, resp = do(t, f, "GET", cmPath, "", "", "Accept", api.ProtobufContentType)
	meta, items, err := api.DecodeProtoList(api.ConfigMap, []byte(resp))
	if code != 200 || err != nil || len(items) != 1 || items[0].GetName() != "pb" || meta.ResourceVersion == "" {
		t.Fatalf("protobuf list: %d %v %d", code, err, len(items))
	}
	if code, resp := do(t, f, "POST", cmPath, api.ProtobufContentType, "not protobuf"); code != 400 || !strings.Contains(resp, "k8s magic") {
		t.Fatalf("bad protobuf body: %d %s", code, resp)
	}
}

// A saved snapshot holds the cluster's state in the FSM snapshot format:
// what was written before the save is in it.
func TestSnapshotSaveHoldsTheState(t *testing.T) {
	c := startCluster(t, 3, "")
	f := c.follower()
	for i := range 20 {
		if code, body := do(t, f, "POST", cmPath, "", fmt.Sprintf(`{"metadata":{"name":"s%d"}}`, i)); code != 201 {
			t.Fatalf("%d %s", code, body)
		}
	}
	code, body := do(t, f, "GET", "/v1/operator/snapshot", "", "")
	if code != 200 {
		t.Fatalf("snapshot save via a follower: %d %s", code, body)
	}
	var state bytes.Buffer
	meta, err := snapfile.Read(strings.NewReader(body), &state)
	if err != nil {
		t.Fatal(err)
	}
	_, index, err := fsm.ReadSnapshot(&state)
	if err != nil {
		t.Fatal(err)
	}
	if index != meta.Index || len(meta.Servers) != 3 {
		t.Fatalf("archive meta %+v, state index %d", meta, index)
	}
	restored := fsm.New(fsm.Config{})
	var again bytes.Buffer
	snapfile.Read(strings.NewReader(body), &again)
	if err := restored.Restore(io.NopCloser(&again)); err != nil {
		t.Fatal(err)
	}
	if restored.View().Get(api.ConfigMap, "default", "s19") == nil || restored.View().Count(api.ConfigMap) != 20 {
		t.Fatal("the saved state lacks objects written before the save")
	}
}
