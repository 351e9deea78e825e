package agent

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"

	"orch.dev/orch/api"
)

// filesContaining lists the files under dir whose bytes contain any of needles.
func filesContaining(t *testing.T, dir string, needles ...[]byte) []string {
	t.Helper()
	var hits []string
	filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return nil
		}
		for _, n := range needles {
			if bytes.Contains(b, n) {
				hits = append(hits, path)
				break
			}
		}
		return nil
	})
	return hits
}

// Secret values reach the Raft log, the FSM, Raft snapshots and snapshot
// archives only encrypted, and every read path (get, list, watch, the
// answer to a write, patch) serves them decrypted.
func TestSecretsAreEncryptedAtRest(t *testing.T) {
	c := startCluster(t, 3, "")
	a := c.follower()
	const value = "plain-SECRET-value-4217"
	enc := base64.StdEncoding.EncodeToString([]byte(value))
	path := "/api/v1/namespaces/default/secrets"
	code, body := do(t, a, "POST", path, "", `{"metadata":{"name":"db"},"stringData":{"password":"`+value+`"}}`)
	if code != http.StatusCreated || !strings.Contains(body, enc) {
		t.Fatalf("create: %d %s", code, body)
	}
	var created corev1.Secret
	json.Unmarshal([]byte(body), &created)

	// Stored sealed on every server.
	for _, s := range c.agents {
		c.waitFor("the Secret on "+s.cfg.Name, func() bool { return s.fsm.View().Get(api.Secret, "default", "db") != nil })
		stored := s.fsm.View().Get(api.Secret, "default", "db").Obj.(*corev1.Secret)
		if !isSealed(stored.Data["password"]) || bytes.Contains(stored.Data["password"], []byte(value)) {
			t.Fatalf("%s stores the value unsealed: %q", s.cfg.Name, stored.Data["password"])
		}
	}

	// Served decrypted: get, list, watch, patch; a no-op update stays one.
	for _, p := range []string{path + "/db", path, "/api/v1/secrets"} {
		if code, body := do(t, c.agents[2], "GET", p, "", ""); code != http.StatusOK || !strings.Contains(body, enc) || strings.Contains(body, sealedPrefix) {
			t.Fatalf("GET %s: %d %s", p, code, body)
		}
	}
	code, body = do(t, a, "PATCH", path+"/db", "application/merge-patch+json", `{"stringData":{"user":"app"}}`)
	if code != http.StatusOK || !strings.Contains(body, enc) || !strings.Contains(body, base64.StdEncoding.EncodeToString([]byte("app"))) {
		t.Fatalf("patch: %d %s", code, body)
	}
	var patched corev1.Secret
	json.Unmarshal([]byte(body), &patched)
	patched.TypeMeta = created.TypeMeta
	pb, _ := json.Marshal(&patched)
	code, body = do(t, a, "PUT", path+"/db", "", string(pb))
	var same corev1.Secret
	json.Unmarshal([]byte(body), &same)
	if code != http.StatusOK || same.ResourceVersion != patched.ResourceVersion {
		t.Fatalf("a no-op update changed the version (%s -> %s): %d %s", patched.ResourceVersion, same.ResourceVersion, code, body)
	}
	code, body = do(t, a, "GET", path+"?watch=true&timeoutSeconds=1&resourceVersion="+created.ResourceVersion, "", "")
	if code != http.StatusOK || !strings.Contains(body, `"MODIFIED"`) || !strings.Contains(body, enc) || strings.Contains(body, sealedPrefix) {
		t.Fatalf("watch: %d %s", code, body)
	}
	code, body = do(t, a, "GET", path+"?watch=true&timeoutSeconds=1", "", "")
	if code != http.StatusOK || !strings.Contains(body, `"ADDED"`) || !strings.Contains(body, enc) {
		t.Fatalf("watch from now: %d %s", code, body)
	}

	// Nothing on disk or in a snapshot archive holds the value.
	for _, s := range c.agents {
		if err := s.raft.Snapshot().Error(); err != nil {
			t.Fatalf("%s: raft snapshot: %v", s.cfg.Name, err)
		}
	}
	code, archive := do(t, a, "GET", "/v1/operator/snapshot", "", "")
	if code != http.StatusOK || len(archive) < 100 {
		t.Fatalf("snapshot save: %d (%d bytes)", code, len(archive))
	}
	if strings.Contains(archive, value) || strings.Contains(archive, enc) {
		t.Fatal("the snapshot archive holds the Secret's value")
	}
	for _, s := range c.agents {
		raftFiles := filesContaining(t, s.cfg.DataDir, []byte(sealedPrefix))
		if len(raftFiles) == 0 {
			t.Fatalf("%s: no file holds a sealed value: the test would pass vacuously", s.cfg.Name)
		}
		if hits := filesContaining(t, s.cfg.DataDir, []byte(value), []byte(enc)); len(hits) > 0 {
			t.Fatalf("%s: the Secret's value is in %v", s.cfg.Name, hits)
		}
	}

	// The archive restores (same cluster secret) and the Secret decrypts.
	if code, body := do(t, a, "DELETE", path+"/db", "", ""); code != http.StatusOK {
		t.Fatalf("delete: %d %s", code, body)
	}
	if code, body := doRetry(t, c, a, "POST", "/v1/operator/snapshot/restore", "application/octet-stream", archive); code != http.StatusOK {
		t.Fatalf("restore: %d %s", code, body)
	}
	for _, s := range c.agents {
		c.waitFor("the restored Secret on "+s.cfg.Name, func() bool {
			code, body := do(t, s, "GET", path+"/db", "", "")
			return code == http.StatusOK && strings.Contains(body, enc)
		})
	}
}
