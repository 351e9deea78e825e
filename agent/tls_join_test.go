package agent

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"orch.dev/orch/internal/gossipmeta"
	"orch.dev/orch/internal/join"
	"orch.dev/orch/internal/pki"
)

// Every server answers the join handshake: a valid token gets a worker
// certificate of the cluster CA and the gossip key; a forged token, or a
// token pinning another CA (the server is an impostor to the node), gets
// nothing.
func TestJoinHandshakeOnServers(t *testing.T) {
	store := join.NewMemStore()
	c := startCluster(t, 1, "", func(cfg *Config) { cfg.JoinStore = store })
	a := c.agents[0]
	ca := a.tls.caCert()
	now := time.Now()
	tok, rec, err := join.Generate(pki.RoleWorker, time.Hour, true, ca, now)
	if err != nil {
		t.Fatal(err)
	}
	store.Put(rec)
	node := pki.NodeRequest{Name: "w1", IPs: []net.IP{net.ParseIP("127.0.0.1")}}
	key, _ := pki.NewKey()
	ctx := context.Background()
	res, err := join.Join(ctx, join.Options{Addr: a.HTTPAddr(), Token: tok, Role: pki.RoleWorker, Key: key, Node: node})
	if err != nil {
		t.Fatalf("join: %v", err)
	}
	if id, err := pki.IdentityOf(res.Cert); err != nil || id.Role != pki.RoleWorker || id.Name != "w1" {
		t.Fatalf("joined with %+v %v", id, err)
	}
	if want, _ := gossipmeta.Key(a.secret); string(res.GossipKey) != string(want) {
		t.Error("the join response does not carry the gossip key")
	}
	if _, err := join.Join(ctx, join.Options{Addr: a.HTTPAddr(), Token: tok, Role: pki.RoleWorker, Key: key, Node: node}); !errors.Is(err, join.ErrRefused) {
		t.Errorf("a single-use token joined twice: %v", err)
	}

	// Forged: the right id and CA, another secret.
	tok2, rec2, _ := join.Generate(pki.RoleWorker, time.Hour, false, ca, now)
	store.Put(rec2)
	parsed, _ := join.Parse(tok2)
	parsed.Secret = "0123456789abcdef0123456789abcdef"
	if _, err := join.Join(ctx, join.Options{Addr: a.HTTPAddr(), Token: parsed.String(), Role: pki.RoleWorker, Key: key, Node: node}); !errors.Is(err, join.ErrRefused) {
		t.Errorf("a forged token joined: %v", err)
	}
	// A token pinning another CA: the node refuses this server.
	other, _ := pki.NewCA(pki.CAOptions{Now: now})
	tok3, rec3, _ := join.Generate(pki.RoleWorker, time.Hour, false, other.Cert, now)
	store.Put(rec3)
	if _, err := join.Join(ctx, join.Options{Addr: a.HTTPAddr(), Token: tok3, Role: pki.RoleWorker, Key: key, Node: node}); !errors.Is(err, pki.ErrCAMismatch) {
		t.Errorf("joined a server whose CA does not match the token: %v", err)
	}
}
