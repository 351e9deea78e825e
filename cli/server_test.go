package cli

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"orch.dev/orch/agent"
)

// testServer starts a real single-node orch server on a random loopback
// address and returns its URL once it is ready and "default" exists.
func testServer(t *testing.T) string {
	t.Helper()
	var a *agent.Agent
	for attempt := 0; ; attempt++ {
		ip := fmt.Sprintf("127.%d.%d.%d", 1+rand.IntN(254), rand.IntN(256), 2+rand.IntN(253))
		var err error
		a, err = agent.New(agent.Config{
			Name: "t1", DataDir: t.TempDir(), BindAddr: ip, Server: true, BootstrapExpect: 1,
			Raft: agent.RaftTiming{HeartbeatTimeout: 100 * time.Millisecond, ElectionTimeout: 100 * time.Millisecond,
				LeaderLeaseTimeout: 50 * time.Millisecond, CommitTimeout: 5 * time.Millisecond},
		})
		if err != nil {
			t.Fatal(err)
		}
		err = a.Start()
		if err == nil {
			break
		}
		if attempt < 5 && (errors.Is(err, syscall.EADDRINUSE) || strings.Contains(err.Error(), "address already in use")) {
			continue
		}
		t.Fatalf("starting agent: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		a.Shutdown(ctx)
	})
	url := registerCA(t, a)
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: testTLSConfig(t, url)}}
	deadline := time.Now().Add(20 * time.Second)
	for {
		if ready(hc, url+"/readyz", "") && ready(hc, url+"/api/v1/namespaces/default", tokenOf(url)) {
			return url
		}
		if time.Now().After(deadline) {
			t.Fatalf("server %s not ready after 20s", url)
		}
		time.Sleep(20 * time.Millisecond) // polling with a deadline
	}
}

func ready(hc *http.Client, url, token string) bool {
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		return false
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}
