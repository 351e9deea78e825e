package agent

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"orch.dev/orch/api"
	"orch.dev/orch/api/client"
)

// batchPart is one request of a batch body.
type batchPart struct{ method, path, body, auth string }

const mergePatch = "PATCH+merge" // a batchPart method: PATCH with a JSON merge patch

func batchBody(t *testing.T, parts ...batchPart) string {
	t.Helper()
	var b bytes.Buffer
	for _, p := range parts {
		method, ctype := p.method, "application/json"
		if method == mergePatch {
			method, ctype = http.MethodPatch, "application/merge-patch+json"
		}
		req, err := http.NewRequest(method, "http://orch"+p.path, strings.NewReader(p.body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", ctype)
		if p.auth != "" {
			req.Header.Set("Authorization", p.auth)
		}
		if err := req.Write(&b); err != nil {
			t.Fatal(err)
		}
	}
	return b.String()
}

// batchAnswers splits a batch's answer into its responses' codes and bodies.
func batchAnswers(t *testing.T, body string) (codes []int, bodies []string) {
	t.Helper()
	br := bufio.NewReader(strings.NewReader(body))
	for {
		if _, err := br.Peek(1); err == io.EOF {
			return codes, bodies
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("batch answer %d: %v in %q", len(codes)+1, err, body)
		}
		b, _ := io.ReadAll(resp.Body)
		codes, bodies = append(codes, resp.StatusCode), append(bodies, string(b))
	}
}

// Each write of a batch gets the answer, the authentication, the
// authorisation and the audit record it would get alone.
func TestBatchRunsEachWriteAsIfAlone(t *testing.T) {
	c, a := securedCluster(t)
	view := createToken(t, a, TokenRequest{Role: "view", User: "alice"})
	body := batchBody(t,
		batchPart{"POST", cmPath, `{"metadata":{"name":"b1"},"data":{"k":"v"}}`, ""},
		batchPart{"POST", cmPath, `{"metadata":{"name":"b2"}}`, ""},
		batchPart{"POST", cmPath, `{"metadata":{"name":"Bad_Name"}}`, ""},
		batchPart{mergePatch, cmPath + "/b-missing", `{"data":{"k":"v"}}`, ""},
		batchPart{"POST", cmPath, `{"metadata":{"name":"by-alice"}}`, "Bearer " + view.Token},
		batchPart{"POST", cmPath, `{"metadata":{"name":"by-nobody"}}`, "Bearer wrong"},
		// The writes of a batch run concurrently, in no order: of two
		// creates of one name, either may win.
		batchPart{"POST", cmPath, `{"metadata":{"name":"twice"}}`, ""},
		batchPart{"POST", cmPath, `{"metadata":{"name":"twice"}}`, ""},
	)
	code, answer := do(t, a, "POST", batchPath, batchContentType, body)
	if code != http.StatusOK {
		t.Fatalf("batch: %d %s", code, answer)
	}
	codes, bodies := batchAnswers(t, answer)
	want := []int{201, 201, 422, 404, 403, 401}
	if len(codes) != len(want)+2 || fmt.Sprint(codes[:len(want)]) != fmt.Sprint(want) {
		t.Fatalf("answers %v, want %v:\n%s", codes, want, strings.Join(bodies, "\n"))
	}
	if twice := codes[len(want):]; !(twice[0] == 201 && twice[1] == 409 || twice[0] == 409 && twice[1] == 201) {
		t.Fatalf("two creates of one name answered %v, want one 201 and one 409", twice)
	}
	if !strings.Contains(bodies[2], "metadata.name") || !strings.Contains(bodies[4], "alice") {
		t.Fatalf("answers do not say why: %q / %q", bodies[2], bodies[4])
	}
	for name, stored := range map[string]bool{"b1": true, "b2": true, "twice": true, "by-alice": false, "by-nobody": false} {
		if got := a.fsm.View().Get(api.ConfigMap, "default", name) != nil; got != stored {
			t.Errorf("configmap %s stored: %v, want %v", name, got, stored)
		}
	}
	if got := a.batchedWrites.Load(); got != uint64(len(codes)) {
		t.Errorf("batched writes counted: %d, want %d", got, len(codes))
	}
	// The audit log holds the writes one by one (the batch itself is not
	// a write of anything).
	c.waitFor("audit lines of the batch", func() bool {
		seen, aliceRefused := map[string]int{}, false
		for _, e := range auditLines(t, a) {
			if e.Resource == "batch" {
				t.Fatalf("the batch itself was audited: %+v", e)
			}
			if e.Verb == "create" && e.Resource == "configmaps" {
				seen[e.Name] = e.Code
				aliceRefused = aliceRefused || e.User == "alice" && e.Code == 403
			}
		}
		return seen["b1"] == 201 && seen["b2"] == 201 && aliceRefused
	})
}

// A batch that cannot be read, or carries something other than API
// writes, is refused whole and changes nothing; so is one without
// credentials.
func TestBadBatchChangesNothing(t *testing.T) {
	_, a := securedCluster(t)
	create := batchPart{"POST", cmPath, `{"metadata":{"name":"must-not-exist"}}`, ""}
	good := batchBody(t, create)
	cases := []struct {
		name, ctype, body string
		header            []string
		code              int
		want              string
	}{
		{"garbage after a request", batchContentType, good + "NOT HTTP\r\n\r\n", nil, 400, "batch request 2"},
		{"truncated body", batchContentType, good[:len(good)-5], nil, 400, "batch request 1"},
		{"a read", batchContentType, good + batchBody(t, batchPart{"GET", cmPath, "", ""}), nil, 400, "only API writes"},
		{"a nested batch", batchContentType, good + batchBody(t, batchPart{"POST", batchPath, good, ""}), nil, 400, "only API writes"},
		{"wrong content type", "application/json", good, nil, 415, batchContentType},
		{"no credentials", batchContentType, good, []string{"Authorization", ""}, 401, ""},
	}
	for _, tc := range cases {
		code, body := do(t, a, "POST", batchPath, tc.ctype, tc.body, tc.header...)
		if code != tc.code || !strings.Contains(body, tc.want) {
			t.Errorf("%s: %d %s, want %d containing %q", tc.name, code, body, tc.code, tc.want)
		}
	}
	if a.fsm.View().Get(api.ConfigMap, "default", "must-not-exist") != nil {
		t.Fatal("a refused batch wrote")
	}
}

var cmType = metav1.TypeMeta{Kind: "ConfigMap", APIVersion: "v1"}

// The Go client sends the writes it has in flight together in batches;
// every one of them is applied once, with its own answer, whether it went
// in a batch or alone, and through a follower as well as the leader.
func TestClientBatchesConcurrentWrites(t *testing.T) {
	c := startCluster(t, 3, "")
	for _, via := range []*Agent{c.leader(), c.follower()} {
		cl, err := client.New(client.Config{Servers: []string{via.URL()}, Token: via.ClusterSecret(),
			HTTPClient: apiHTTPClient(via), RetryFor: 20 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		before := via.batchedWrites.Load()
		const writers, each = 32, 8
		var wg sync.WaitGroup
		errs := make(chan error, writers*each)
		for w := range writers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range each {
					name := fmt.Sprintf("%s-w%d-%d", via.cfg.Name, w, i)
					obj, err := cl.Create(context.Background(), &corev1.ConfigMap{TypeMeta: cmType, ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"},
						Data: map[string]string{"v": strings.Repeat("x", 1024)}})
					if err == nil && obj.GetName() != name {
						err = fmt.Errorf("created %s, got %s back", name, obj.GetName())
					}
					errs <- err
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Fatalf("via %s: %v", via.cfg.Name, err)
			}
		}
		if via.batchedWrites.Load() == before {
			t.Fatalf("via %s: %d concurrent writers sent no batch", via.cfg.Name, writers)
		}
		// A second create of one of them is a conflict, batched or not.
		_, err = cl.Create(context.Background(), &corev1.ConfigMap{TypeMeta: cmType, ObjectMeta: metav1.ObjectMeta{Name: via.cfg.Name + "-w0-0", Namespace: "default"}})
		if !apierrors.IsAlreadyExists(err) {
			t.Fatalf("via %s: second create: %v", via.cfg.Name, err)
		}
	}
	l := c.leader()
	c.waitFor("every write on every server", func() bool {
		for _, a := range c.agents {
			if a.fsm.View().Count(api.ConfigMap) != l.fsm.View().Count(api.ConfigMap) {
				return false
			}
		}
		return true
	})
	if n := l.fsm.View().Count(api.ConfigMap); n < 2*32*8 {
		t.Fatalf("%d ConfigMaps stored, want at least %d", n, 2*32*8)
	}
}
