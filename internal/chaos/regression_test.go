package chaos

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"testing"

	corev1 "k8s.io/api/core/v1"

	"orch.dev/orch/internal/testcluster"
)

// Regression scenarios for consistency bugs the suite found. Each replays,
// deterministically and without faults, the sequence the fault runs hit.

// A write retried with the same request ID (the Go client resends a write
// whose answer it lost: a leader killed or cut off after the commit) must
// answer with what that write did. Found by the soak: during an asymmetric
// partition of the leader, a compare-and-set applied at one version was
// acknowledged with the register's later state, another client's value at
// a later version, so the client believed its value was stored at a version
// where another one was:
//
//	[0.202s–3.710s] c4 cas chaos-1 if @89 set c4-13 -> ok @254 (response carried c2-60)
//
// A client that goes on from that answer (the next compare-and-set on
// version 254, computed from c4-13) overwrites c2-60 unseen: a lost update.
func TestRetriedUpdateAnswersWithItsOwnWrite(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{Servers: 1, LogLevel: "info"})
	url := c.Servers[0].URL() + "/api/v1/namespaces/default/configmaps"
	put := func(name, value, rv, requestID string) (int, *corev1.ConfigMap) {
		t.Helper()
		body := fmt.Sprintf(`{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":%q,"resourceVersion":%q},"data":{"v":%q}}`, name, rv, value)
		method, u := http.MethodPut, url+"/"+name
		if rv == "" {
			method, u = http.MethodPost, url
		}
		req, _ := http.NewRequest(method, u, bytes.NewBufferString(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("X-Orch-Request-Id", requestID)
		resp, err := c.HTTPClient().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		var cm corev1.ConfigMap
		if resp.StatusCode < 300 {
			if err := json.Unmarshal(b, &cm); err != nil {
				t.Fatalf("%s: %v", b, err)
			}
		}
		return resp.StatusCode, &cm
	}
	code, created := put("r", "init", "", "create-1")
	if code != http.StatusCreated {
		t.Fatalf("create: %d", code)
	}
	code, first := put("r", "mine", created.ResourceVersion, "update-mine")
	if code != http.StatusOK || first.Data["v"] != "mine" {
		t.Fatalf("update: %d %v", code, first.Data)
	}
	// Another client updates the object after it.
	if code, _ := put("r", "theirs", first.ResourceVersion, "update-theirs"); code != http.StatusOK {
		t.Fatalf("second update: %d", code)
	}
	// The first client, not having heard back, resends its update.
	code, again := put("r", "mine", created.ResourceVersion, "update-mine")
	switch {
	case code >= 300:
		t.Fatalf("the resent update, which was applied, failed with %d", code)
	case again.Data["v"] != "mine" || again.ResourceVersion != first.ResourceVersion:
		t.Errorf("the resent update answered %v at version %s; its first attempt wrote %v at version %s",
			again.Data, again.ResourceVersion, first.Data, first.ResourceVersion)
	}
}
