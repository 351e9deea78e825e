package agent

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"

	"orch.dev/orch/api"
	"orch.dev/orch/fsm"
	"orch.dev/orch/internal/join"
	"orch.dev/orch/internal/pki"
)

// Join tokens: refused until the cluster CA exists, then orch1 tokens
// pinned to it, created and consumed through followers; two concurrent
// joins with one single-use token: exactly one wins.
func TestJoinTokensPinTheCAAndAreUsedOnce(t *testing.T) {
	c := startCluster(t, 3, "")
	f := c.follower()

	// Without orch-system/cluster-ca there is nothing to pin.
	if _, err := f.clusterCACert(fsm.New(fsm.Config{}).View()); !apierrors.IsServiceUnavailable(err) || !strings.Contains(err.Error(), "cluster CA not ready") {
		t.Fatalf("no CA: %v", err)
	}
	c.waitFor("the cluster CA Secret", func() bool {
		return f.fsm.View().Get(api.Secret, SystemNamespace, ClusterCASecret) != nil
	})
	caPEM := f.fsm.View().Get(api.Secret, SystemNamespace, ClusterCASecret).Obj.(*corev1.Secret).Data["ca.crt"]
	ca, err := pki.ParseCertPEM(caPEM)
	if err != nil {
		t.Fatal(err)
	}

	created := createToken(t, f, TokenRequest{Role: "worker", TTL: "1h", SingleUse: true})
	tok, err := join.Parse(created.Token)
	if err != nil || tok.ID != created.ID || tok.CAHash != pki.Fingerprint(ca) || !created.SingleUse || created.Role != "worker" {
		t.Fatalf("join token %+v: %v", created, err)
	}
	ctx := context.Background()
	for _, s := range c.agents {
		rec, err := s.JoinTokens().Get(ctx, tok.ID)
		if err != nil || join.Verify(rec, tok.Secret, time.Now()) != nil || rec.Role != pki.RoleWorker {
			t.Fatalf("%s: record %+v: %v", s.cfg.Name, rec, err)
		}
		if err := join.Verify(rec, strings.Repeat("0", 32), time.Now()); !errors.Is(err, join.ErrBadSecret) {
			t.Fatalf("a wrong secret verified: %v", err)
		}
	}

	// Two joins race from two servers: one consumes, the other is refused.
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i, s := range []*Agent{c.agents[0], c.agents[2]} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = s.JoinTokens().Consume(ctx, tok.ID, []string{"w1", "w2"}[i], time.Now())
		}()
	}
	wg.Wait()
	won := 0
	for _, err := range errs {
		switch {
		case err == nil:
			won++
		case !errors.Is(err, join.ErrUsed):
			t.Fatalf("consume: %v", err)
		}
	}
	if won != 1 {
		t.Fatalf("%d joins consumed one single-use token (%v)", won, errs)
	}
	rec, err := f.JoinTokens().Get(ctx, tok.ID)
	if err != nil || !errors.Is(join.Verify(rec, tok.Secret, time.Now()), join.ErrUsed) || (rec.UsedBy != "w1" && rec.UsedBy != "w2") {
		t.Fatalf("used record %+v: %v", rec, err)
	}

	// Revoked join tokens are refused; user tokens and unknown ids are not join tokens.
	other := createToken(t, c.agents[2], TokenRequest{Role: "server"})
	code, body := do(t, f, "DELETE", "/v1/tokens/"+other.ID, "", "")
	if code != http.StatusOK {
		t.Fatalf("revoke: %d %s", code, body)
	}
	ot, _ := join.Parse(other.Token)
	rec, err = c.agents[0].JoinTokens().Get(ctx, other.ID)
	if err != nil || !errors.Is(join.Verify(rec, ot.Secret, time.Now()), join.ErrRevoked) {
		t.Fatalf("revoked record: %+v %v", rec, err)
	}
	user := createToken(t, f, TokenRequest{Role: "admin", User: "root"})
	for _, id := range []string{user.ID, "0123456789abcdef"} {
		if _, err := f.JoinTokens().Get(ctx, id); !errors.Is(err, join.ErrUnknownToken) {
			t.Fatalf("Get(%s): %v", id, err)
		}
		if err := f.JoinTokens().Consume(ctx, id, "w3", time.Now()); !errors.Is(err, join.ErrUnknownToken) {
			t.Fatalf("Consume(%s): %v", id, err)
		}
	}
	// The user token authenticates on every server as its user.
	for _, s := range c.agents {
		if code, body := do(t, s, "GET", "/v1/tokens", "", "", bearer(user.Token)...); code != http.StatusOK || !strings.Contains(body, `"used"`) {
			t.Fatalf("%s: listing with a user admin token: %d %s", s.cfg.Name, code, body)
		}
	}
}
