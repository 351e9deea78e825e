package agent

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"orch.dev/orch/api"
)

// The leader deletes a token's record once it has been expired for longer
// than the grace, not before; until then token list shows it as expired.
// A token that has not expired stays.
func TestExpiredTokenRecordsAreDeletedAfterTheGrace(t *testing.T) {
	const grace = 2 * time.Second
	c := startCluster(t, 1, "", func(cfg *Config) {
		cfg.TokenPrune = TokenPruneConfig{Grace: grace, Interval: 50 * time.Millisecond}
	})
	a := c.agents[0]
	// A join token pins the cluster CA, which the new leader writes to
	// the state just after it is elected.
	c.waitFor("the cluster CA Secret", func() bool {
		return a.fsm.View().Get(api.Secret, SystemNamespace, ClusterCASecret) != nil
	})
	short := createToken(t, a, TokenRequest{Role: "worker", TTL: "1s"})
	long := createToken(t, a, TokenRequest{Role: "admin", User: "alice", TTL: "1h"})

	list := func() map[string]TokenInfo {
		code, body := do(t, a, "GET", "/v1/tokens", "", "")
		if code != http.StatusOK {
			t.Fatalf("token list: %d %s", code, body)
		}
		var infos []TokenInfo
		if err := json.Unmarshal([]byte(body), &infos); err != nil {
			t.Fatal(err)
		}
		out := map[string]TokenInfo{}
		for _, i := range infos {
			out[i.ID] = i
		}
		return out
	}
	sawExpired := false
	deadline := time.Now().Add(30 * time.Second)
	for {
		now := time.Now()
		tokens := list()
		info, ok := tokens[short.ID]
		if !ok {
			if gone := time.Now(); gone.Before(short.ExpiresAt.Add(grace)) {
				t.Fatalf("record deleted at %s, before its expiry %s plus the grace %s", gone, short.ExpiresAt, grace)
			}
			break
		}
		if now.After(short.ExpiresAt) {
			if info.Status != "expired" {
				t.Fatalf("listed after its expiry as %q, want expired", info.Status)
			}
			sawExpired = true
		}
		if now.After(deadline) {
			t.Fatalf("the record of the token that expired at %s is still there at %s", short.ExpiresAt, now)
		}
		time.Sleep(20 * time.Millisecond) // polling interval
	}
	if !sawExpired {
		t.Fatal("never saw the token listed as expired during the grace")
	}
	if info, ok := list()[long.ID]; !ok || info.Status != "valid" {
		t.Fatalf("the unexpired token: %+v (listed: %v)", info, ok)
	}
	if !strings.Contains(c.logs[0].String(), "deleted expired token record") {
		t.Fatal("no log line for the deletion")
	}
}
