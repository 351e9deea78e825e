package join

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"orch.dev/orch/internal/pki"
	"orch.dev/orch/internal/pki/pkitest"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// cluster is one server's side of the join handshake over loopback TLS.
type cluster struct {
	ca    *pki.CA
	store *MemStore
	addr  string
	hits  atomic.Int32 // requests that reached the handler
}

// serve runs h over TLS with the node certificate srv, as the API will.
func serve(t *testing.T, ca *pki.CA, srv *pkitest.Holder, h http.Handler, hits *atomic.Int32) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			hits.Add(1)
			h.ServeHTTP(w, r)
		}),
		ErrorLog: slog.NewLogLogger(quiet.Handler(), slog.LevelError),
	}
	go hs.Serve(tls.NewListener(ln, pki.ServerConfig(ca.Cert, srv.Certs, pki.Policy{ClientCertOptional: true})))
	t.Cleanup(func() { hs.Close() })
	return ln.Addr().String()
}

func newCluster(t *testing.T, mod func(*HandlerConfig)) *cluster {
	t.Helper()
	c := &cluster{ca: pkitest.NewCA(t, "real"), store: NewMemStore()}
	cfg := HandlerConfig{CA: func() (*pki.CA, error) { return c.ca, nil }, Store: c.store, Logger: quiet}
	if mod != nil {
		mod(&cfg)
	}
	c.addr = serve(t, c.ca, pkitest.Node(t, c.ca, pki.RoleServer, "s1"), Handler(cfg), &c.hits)
	return c
}

func (c *cluster) token(t *testing.T, role pki.Role, ttl time.Duration, singleUse bool) string {
	t.Helper()
	s, rec, err := Generate(role, ttl, singleUse, c.ca.Cert, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	c.store.Put(rec)
	return s
}

func joinAs(addr, token string, role pki.Role, name string) (*Result, error) {
	key, err := pki.NewKey()
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return Join(ctx, Options{Addr: addr, Token: token, Role: role, Key: key,
		Node: pki.NodeRequest{Name: name, IPs: []net.IP{net.IPv4(127, 0, 0, 1)}}})
}

func TestJoin(t *testing.T) {
	c := newCluster(t, nil)
	for _, role := range []pki.Role{pki.RoleWorker, pki.RoleServer} {
		tok := c.token(t, role, time.Hour, false)
		for _, name := range []string{"n1", "n2"} { // multi-use
			res, err := joinAs(c.addr, tok, role, name)
			if err != nil {
				t.Fatalf("%s %s: %v", role, name, err)
			}
			id, err := pki.IdentityOf(res.Cert)
			if err != nil || id.Role != role || id.Name != name || !res.CA.Equal(c.ca.Cert) {
				t.Errorf("%s %s: identity %+v %v", role, name, id, err)
			}
		}
	}
}

func TestJoinRefused(t *testing.T) {
	c := newCluster(t, nil)
	worker := c.token(t, pki.RoleWorker, time.Hour, false)
	tok, _ := Parse(worker)
	forged := tok
	forged.Secret = goodSecret
	unknown := tok
	unknown.ID = goodID
	expired := c.token(t, pki.RoleWorker, time.Nanosecond, false)
	revokedTok := c.token(t, pki.RoleWorker, time.Hour, false)
	rt, _ := Parse(revokedTok)
	c.store.Revoke(rt.ID, time.Now())

	cases := []struct {
		name, token string
		role        pki.Role
		want        string
	}{
		{"forged secret", forged.String(), pki.RoleWorker, msgNoToken},
		{"unknown id", unknown.String(), pki.RoleWorker, msgNoToken},
		{"expired", expired, pki.RoleWorker, "join token has expired"},
		{"revoked", revokedTok, pki.RoleWorker, "join token was revoked"},
		{"worker token, joining as server", worker, pki.RoleServer, "admits a worker, not a server"},
	}
	for _, tc := range cases {
		_, err := joinAs(c.addr, tc.token, tc.role, "w1")
		if !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want refusal %q", tc.name, err, tc.want)
		}
		if strings.Contains(err.Error(), tok.Secret) {
			t.Errorf("%s: error holds the secret", tc.name)
		}
	}
}

func TestJoinSingleUse(t *testing.T) {
	c := newCluster(t, nil)
	once := c.token(t, pki.RoleWorker, time.Hour, true)
	if _, err := joinAs(c.addr, once, pki.RoleWorker, "w1"); err != nil {
		t.Fatal(err)
	}
	_, err := joinAs(c.addr, once, pki.RoleWorker, "w2")
	if !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "already used (by w1") {
		t.Fatalf("reused single-use token: %v", err)
	}
	// Racing joins with one single-use token: exactly one gets a certificate.
	race := c.token(t, pki.RoleWorker, time.Hour, true)
	var wg sync.WaitGroup
	var won atomic.Int32
	for i := range 6 {
		wg.Go(func() {
			_, err := joinAs(c.addr, race, pki.RoleWorker, "r"+string(rune('a'+i)))
			if err == nil {
				won.Add(1)
			} else if !strings.Contains(err.Error(), "already used") {
				t.Errorf("racer %d: %v", i, err)
			}
		})
	}
	wg.Wait()
	if won.Load() != 1 {
		t.Fatalf("%d racing joins succeeded, want 1", won.Load())
	}
}

func TestJoinRefusedJoinKeepsSingleUseToken(t *testing.T) {
	var deny atomic.Bool
	deny.Store(true)
	c := newCluster(t, func(cfg *HandlerConfig) {
		cfg.Authorize = func(_ *http.Request, _ Record, req pki.NodeRequest) error {
			if deny.Load() {
				return errors.New("node " + req.Name + " already exists")
			}
			return nil
		}
	})
	once := c.token(t, pki.RoleWorker, time.Hour, true)
	if _, err := joinAs(c.addr, once, pki.RoleWorker, "w1"); !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "node w1 already exists") {
		t.Fatalf("Authorize refusal: %v", err)
	}
	deny.Store(false)
	if _, err := joinAs(c.addr, once, pki.RoleWorker, "w1"); err != nil {
		t.Fatalf("single-use token burnt by a refused join: %v", err)
	}
}

// An impostor server, with a CA of its own, must not receive the token.
func TestJoinImpostor(t *testing.T) {
	real := newCluster(t, nil)
	tok := real.token(t, pki.RoleWorker, time.Hour, false)

	evil := newCluster(t, nil)
	// Even one that somehow holds a record of the token.
	rec, _ := real.store.Get(context.Background(), mustParse(t, tok).ID)
	evil.store.Put(rec)
	_, err := joinAs(evil.addr, tok, pki.RoleWorker, "w1")
	if !errors.Is(err, pki.ErrCAMismatch) {
		t.Fatalf("joining an impostor: %v", err)
	}
	if n := evil.hits.Load(); n != 0 {
		t.Fatalf("the impostor received %d requests", n)
	}

	// A worker of the real cluster holds a genuine certificate, but may not
	// pose as a server to a joining node.
	var hits atomic.Int32
	rogue := serve(t, real.ca, pkitest.Node(t, real.ca, pki.RoleWorker, "w9"), Handler(HandlerConfig{
		CA: func() (*pki.CA, error) { return real.ca, nil }, Store: real.store, Logger: quiet}), &hits)
	if _, err := joinAs(rogue, tok, pki.RoleWorker, "w1"); !errors.Is(err, pki.ErrPeerRole) {
		t.Fatalf("joining via a worker: %v", err)
	}
	if hits.Load() != 0 {
		t.Fatal("the rogue worker received the token")
	}
}

func TestJoinCAUnavailable(t *testing.T) {
	c := newCluster(t, func(cfg *HandlerConfig) {
		cfg.CA = func() (*pki.CA, error) { return nil, errors.New("sealed") }
	})
	_, err := joinAs(c.addr, c.token(t, pki.RoleWorker, time.Hour, false), pki.RoleWorker, "w1")
	if !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "try another server") {
		t.Fatalf("%v", err)
	}
}

func TestJoinClientChecks(t *testing.T) {
	key, _ := pki.NewKey()
	if _, err := Join(context.Background(), Options{Addr: "127.0.0.1:1", Token: "nope", Role: pki.RoleWorker, Key: key}); !errors.Is(err, ErrTokenFormat) {
		t.Errorf("bad token: %v", err)
	}
	tok := "orch1." + goodID + "." + goodSecret + "." + goodCA
	if _, err := Join(context.Background(), Options{Addr: "127.0.0.1:1", Token: tok, Role: pki.RoleUser, Key: key}); err == nil {
		t.Error("joined as a user")
	}
	if _, err := Join(context.Background(), Options{Addr: "127.0.0.1:1", Token: tok, Role: pki.RoleWorker, Key: key, Node: pki.NodeRequest{Name: "A"}}); !errors.Is(err, pki.ErrInvalidRequest) {
		t.Errorf("bad name: %v", err)
	}
}

func mustParse(t *testing.T, s string) Token {
	t.Helper()
	tok, err := Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}
