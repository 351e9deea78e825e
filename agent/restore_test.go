package agent

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"orch.dev/orch/api"
	"orch.dev/orch/fsm"
)

// doRetry is do, sent again (once a leader is ready) while the answer is
// 503 or 504: the operations it is used for may safely be repeated.
func doRetry(t *testing.T, c *testCluster, via *Agent, method, path, contentType, body string) (int, string) {
	t.Helper()
	for attempt := 0; ; attempt++ {
		code, resp := do(t, via, method, path, contentType, body)
		if (code != 503 && code != 504) || attempt == 20 {
			return code, resp
		}
		mustLeader(c)
	}
}

// saveSnapshot downloads a snapshot archive through the leader.
func saveSnapshot(t *testing.T, c *testCluster) []byte {
	t.Helper()
	code, body := doRetry(t, c, mustLeader(c), "GET", "/v1/operator/snapshot", "", "")
	if code != 200 {
		t.Fatalf("snapshot save: %d %s", code, body)
	}
	return []byte(body)
}

// mustLeader waits for a ready leader: under the race detector on a busy
// machine the short test timeouts do cost a leader now and then.
func mustLeader(c *testCluster) *Agent {
	c.t.Helper()
	var l *Agent
	c.waitFor("a ready leader", func() bool {
		l = c.leader()
		return l != nil
	})
	return l
}

// createConfigMaps creates prefix-0..n-1 through the leader, resending a
// write whose leader was lost with the same request ID (exactly once).
func createConfigMaps(t *testing.T, c *testCluster, prefix string, n int) {
	t.Helper()
	for i := range n {
		name := fmt.Sprintf("%s-%d", prefix, i)
		for attempt := 0; ; attempt++ {
			code, body := do(t, mustLeader(c), "POST", cmPath, "", `{"metadata":{"name":"`+name+`"}}`, requestIDHeader, "test-"+name)
			if code == 201 {
				break
			}
			if (code != 503 && code != 504) || attempt == 20 {
				t.Fatalf("create %s: %d %s", name, code, body)
			}
		}
	}
}

// stateOf summarizes what a server holds: its applied index and its
// ConfigMaps' names and versions.
func stateOf(a *Agent) string {
	v := a.fsm.View()
	var b strings.Builder
	fmt.Fprintf(&b, "index %d:", v.Index())
	v.List(api.ConfigMap, "", func(r *fsm.Record) bool {
		fmt.Fprintf(&b, " %s@%d", r.Key, r.Version)
		return true
	})
	return b.String()
}

// converged waits until every server has applied what the leader has.
func converged(c *testCluster) {
	c.t.Helper()
	idx := mustLeader(c).fsm.AppliedIndex()
	c.waitFor("every server to apply the leader's state", func() bool {
		for _, a := range c.agents {
			if a.fsm.AppliedIndex() < idx {
				return false
			}
		}
		return true
	})
}

// A damaged archive (a flipped byte, cut short, empty, not an archive at
// all) is refused with an error naming the problem, through the leader or a
// follower, and no server's state changes.
func TestRestoreRefusesDamagedSnapshots(t *testing.T) {
	c := startCluster(t, 3, "")
	createConfigMaps(t, c, "before", 5)
	good := saveSnapshot(t, c)
	createConfigMaps(t, c, "after", 5)

	// A flipped byte inside the compressed stream breaks gzip's CRC or the
	// tar structure; one inside the uncompressed state breaks its SHA-256.
	zr, _ := gzip.NewReader(bytes.NewReader(good))
	raw, _ := io.ReadAll(zr)
	i := bytes.Index(raw, []byte("ORCHSNAP")) + 40
	raw[i] ^= 0x01
	var resealed bytes.Buffer
	zw := gzip.NewWriter(&resealed)
	zw.Write(raw)
	zw.Close()
	flipped := append([]byte(nil), good...)
	flipped[len(flipped)/2] ^= 0x01

	cases := []struct {
		name, body, want string
	}{
		{"state byte flipped", resealed.String(), "checksum mismatch for state.bin"},
		{"archive byte flipped", string(flipped), "invalid snapshot archive"},
		{"truncated", string(good[:len(good)*2/3]), "invalid snapshot archive"},
		{"empty", "", "the snapshot is empty"},
		{"not an archive", "hello", "not a gzip stream"},
	}
	for _, tc := range cases {
		for _, via := range []*Agent{mustLeader(c), c.follower()} {
			converged(c)
			want := make([]string, len(c.agents))
			for i, a := range c.agents {
				want[i] = stateOf(a)
			}
			code, body := doRetry(t, c, via, "POST", "/v1/operator/snapshot/restore", "application/octet-stream", tc.body)
			if code != http.StatusBadRequest || !strings.Contains(body, tc.want) || !strings.Contains(body, "the cluster is unchanged") {
				t.Errorf("%s via %s: got %d %s, want 400 naming %q", tc.name, via.cfg.Name, code, body, tc.want)
			}
			for i, a := range c.agents {
				if got := stateOf(a); got != want[i] {
					t.Fatalf("%s: %s changed after a refused restore:\n%s\nwas\n%s", tc.name, a.cfg.Name, got, want[i])
				}
			}
		}
	}
}

// A restore through a follower replaces the state on every server: what
// the snapshot holds is back, what was written after the save is gone, a
// watch from before gets 410 Gone, and the cluster takes writes afterwards
// at versions beyond every one served before.
func TestRestoreReplacesTheStateEverywhere(t *testing.T) {
	c := startCluster(t, 3, "")
	createConfigMaps(t, c, "before", 10)
	snap := saveSnapshot(t, c)
	createConfigMaps(t, c, "after", 10)
	f := c.follower()
	events, stop := openWatch(t, f, "resourceVersion="+itoa(f.fsm.AppliedIndex()))
	defer stop()
	before := mustLeader(c).raft.LastIndex()

	code, body := doRetry(t, c, f, "POST", "/v1/operator/snapshot/restore", "application/octet-stream", string(snap))
	if code != 200 || !strings.Contains(body, `"objects":`) {
		t.Fatalf("restore: %d %s", code, body)
	}
	for {
		e := next(t, events)
		if e.Type == "ERROR" {
			if e.Object.Code != http.StatusGone {
				t.Fatalf("watch ended with %+v, want 410", e)
			}
			break
		}
	}
	c.waitFor("every server to hold the restored state", func() bool {
		for _, a := range c.agents {
			v := a.fsm.View()
			if v.Index() <= before || v.Get(api.ConfigMap, "default", "before-9") == nil || v.Get(api.ConfigMap, "default", "after-0") != nil {
				return false
			}
		}
		return true
	})
	for _, a := range c.agents {
		if n := configMapCount(t, a); n != 10 {
			t.Errorf("%s holds %d configmaps after the restore, want the snapshot's 10", a.cfg.Name, n)
		}
	}
	createConfigMaps(t, c, "later", 1)
	code, body = doRetry(t, c, c.agents[2], "GET", cmPath+"/later-0", "", "")
	if code != 200 {
		t.Fatalf("write after restore not readable: %d %s", code, body)
	}
}
