package pki_test

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"orch.dev/orch/internal/pki"
	"orch.dev/orch/internal/pki/pkitest"
)

type result struct {
	serverErr, clientErr error
	state                tls.ConnectionState // server side
}

// handshake runs one TLS connection over loopback TCP: the server
// handshakes and writes a byte, the client reads it, so a refusal by
// either side shows on both.
func handshake(t *testing.T, server, client *tls.Config) result {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	done := make(chan result, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			done <- result{serverErr: err}
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		tc := tls.Server(c, server)
		err = tc.Handshake()
		if err == nil {
			_, err = tc.Write([]byte{'k'})
		}
		done <- result{serverErr: err, state: tc.ConnectionState()}
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	tc := tls.Client(c, client)
	cerr := tc.Handshake()
	if cerr == nil {
		_, cerr = io.ReadFull(tc, make([]byte, 1))
	}
	r := <-done
	r.clientErr = cerr
	return r
}

func TestServerConfig(t *testing.T) {
	ca := pkitest.NewCA(t, "c")
	evil := pkitest.NewCA(t, "evil")
	srv := pkitest.Node(t, ca, pki.RoleServer, "s1")
	worker := pkitest.Node(t, ca, pki.RoleWorker, "w1")
	admin := pkitest.User(t, ca, "alice", pki.UserAdmin)
	foreign := pkitest.Node(t, evil, pki.RoleServer, "s1")
	anyServer := pki.Policy{Roles: []pki.Role{pki.RoleServer}}

	cases := []struct {
		name   string
		policy pki.Policy
		client *pkitest.Holder // nil: no client certificate
		ok     bool
	}{
		{"worker", pki.Policy{}, worker, true},
		{"user", pki.Policy{}, admin, true},
		{"no client certificate", pki.Policy{}, nil, false},
		{"no client certificate, optional", pki.Policy{ClientCertOptional: true}, nil, true},
		{"certificate from another CA", pki.Policy{}, foreign, false},
		{"certificate from another CA, optional", pki.Policy{ClientCertOptional: true}, foreign, false},
		{"worker where servers only", anyServer, worker, false},
		{"server where servers only", anyServer, srv, true},
		{"denied by Check", pki.Policy{Check: func(id pki.Identity) error {
			if id.Name == "w1" {
				return errors.New("node w1 was removed")
			}
			return nil
		}}, worker, false},
		{"expired", pki.Policy{Now: func() time.Time { return worker.Cert.NotAfter.Add(time.Second) }}, worker, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var certs *pki.Certs
			if c.client != nil {
				certs = c.client.Certs
			}
			r := handshake(t, pki.ServerConfig(ca.Cert, srv.Certs, c.policy), pki.ClientConfig(ca.Cert, certs, anyServer))
			t.Logf("server: %v; client: %v", r.serverErr, r.clientErr)
			if c.ok != (r.serverErr == nil && r.clientErr == nil) {
				t.Fatalf("ok=%v: server %v, client %v", c.ok, r.serverErr, r.clientErr)
			}
			id, has := pki.PeerIdentity(&r.state)
			switch {
			case c.ok && c.client != nil && (!has || id.Name != c.client.Cert.Subject.CommonName):
				t.Errorf("peer identity %+v %v", id, has)
			case c.ok && c.client == nil && has:
				t.Errorf("identity %+v without a certificate", id)
			}
		})
	}
}

func TestClientConfig(t *testing.T) {
	ca := pkitest.NewCA(t, "c")
	evil := pkitest.NewCA(t, "evil")
	srv := pkitest.Node(t, ca, pki.RoleServer, "s1")
	worker := pkitest.Node(t, ca, pki.RoleWorker, "w1")
	impostor := pkitest.Node(t, evil, pki.RoleServer, "s1")
	anyClient := pki.Policy{ClientCertOptional: true}
	servers := pki.Policy{Roles: []pki.Role{pki.RoleServer}}

	if r := handshake(t, pki.ServerConfig(ca.Cert, srv.Certs, anyClient), pki.ClientConfig(ca.Cert, nil, servers)); r.clientErr != nil {
		t.Errorf("real server: %v", r.clientErr)
	}
	r := handshake(t, pki.ServerConfig(evil.Cert, impostor.Certs, anyClient), pki.ClientConfig(ca.Cert, nil, servers))
	if !errors.Is(r.clientErr, pki.ErrUntrusted) {
		t.Errorf("impostor server with its own CA: %v", r.clientErr)
	}
	// A worker holds a genuine certificate, but may not pose as a server.
	r = handshake(t, pki.ServerConfig(ca.Cert, worker.Certs, anyClient), pki.ClientConfig(ca.Cert, nil, servers))
	if !errors.Is(r.clientErr, pki.ErrPeerRole) {
		t.Errorf("worker posing as a server: %v", r.clientErr)
	}
}

func TestPeerConfig(t *testing.T) {
	ca := pkitest.NewCA(t, "c")
	a := pkitest.Node(t, ca, pki.RoleServer, "s1")
	b := pkitest.Node(t, ca, pki.RoleServer, "s2")
	user := pkitest.User(t, ca, "alice", pki.UserAdmin)
	p := pki.Policy{Roles: []pki.Role{pki.RoleServer, pki.RoleUser}}
	if r := handshake(t, pki.PeerConfig(ca.Cert, a.Certs, p), pki.PeerConfig(ca.Cert, b.Certs, p)); r.serverErr != nil || r.clientErr != nil {
		t.Fatalf("peers: %v / %v", r.serverErr, r.clientErr)
	}
	// Even where its role is allowed, a certificate made for client
	// authentication only cannot be a peer.
	r := handshake(t, pki.PeerConfig(ca.Cert, a.Certs, p), pki.PeerConfig(ca.Cert, user.Certs, p))
	if !errors.Is(r.serverErr, pki.ErrPeerRole) || !strings.Contains(r.serverErr.Error(), "server authentication") {
		t.Errorf("client-only certificate as a peer: %v", r.serverErr)
	}
}

func TestPinnedClientConfig(t *testing.T) {
	ca := pkitest.NewCA(t, "c")
	evil := pkitest.NewCA(t, "evil")
	srv := pkitest.Node(t, ca, pki.RoleServer, "s1")
	impostor := pkitest.Node(t, evil, pki.RoleServer, "s1")
	servers := pki.Policy{Roles: []pki.Role{pki.RoleServer}}
	serve := func(h *pkitest.Holder, ca *pki.CA) *tls.Config {
		return pki.ServerConfig(ca.Cert, h.Certs, pki.Policy{ClientCertOptional: true})
	}
	if r := handshake(t, serve(srv, ca), pki.PinnedClientConfig(pki.Fingerprint(ca.Cert), servers)); r.clientErr != nil {
		t.Errorf("pinned to the right CA: %v", r.clientErr)
	}
	r := handshake(t, serve(impostor, evil), pki.PinnedClientConfig(pki.Fingerprint(ca.Cert), servers))
	if !errors.Is(r.clientErr, pki.ErrCAMismatch) || !strings.Contains(r.clientErr.Error(), pki.Fingerprint(evil.Cert)) {
		t.Errorf("impostor: %v", r.clientErr)
	}
	// An impostor that copies the real CA certificate into its chain still
	// fails: its own certificate does not chain to that CA.
	stolen := *impostor.Certs.Current()
	stolen.Certificate = [][]byte{impostor.Cert.Raw, ca.Cert.Raw}
	r = handshake(t, pki.ServerConfig(evil.Cert, pki.NewCerts(stolen), pki.Policy{ClientCertOptional: true}), pki.PinnedClientConfig(pki.Fingerprint(ca.Cert), servers))
	if !errors.Is(r.clientErr, pki.ErrUntrusted) {
		t.Errorf("impostor presenting the real CA certificate: %v", r.clientErr)
	}
	// A server that sends only its leaf cannot be checked against a pin.
	leafOnly := *srv.Certs.Current()
	leafOnly.Certificate = leafOnly.Certificate[:1]
	r = handshake(t, pki.ServerConfig(ca.Cert, pki.NewCerts(leafOnly), pki.Policy{ClientCertOptional: true}), pki.PinnedClientConfig(pki.Fingerprint(ca.Cert), servers))
	if !errors.Is(r.clientErr, pki.ErrCAMismatch) {
		t.Errorf("leaf only: %v", r.clientErr)
	}
}

func TestRotation(t *testing.T) {
	ca := pkitest.NewCA(t, "c")
	srv := pkitest.Node(t, ca, pki.RoleServer, "s1")
	worker := pkitest.Node(t, ca, pki.RoleWorker, "w1")
	serverCfg := pki.ServerConfig(ca.Cert, srv.Certs, pki.Policy{})
	clientCfg := pki.ClientConfig(ca.Cert, worker.Certs, pki.Policy{Roles: []pki.Role{pki.RoleServer}})
	for i := range 3 {
		r := handshake(t, serverCfg, clientCfg)
		if r.serverErr != nil || r.clientErr != nil {
			t.Fatalf("round %d: %v / %v", i, r.serverErr, r.clientErr)
		}
		if got := fmt.Sprint(r.state.PeerCertificates[0].SerialNumber); got != fmt.Sprint(worker.Cert.SerialNumber) {
			t.Fatalf("round %d: server saw serial %s, want the current %s", i, got, worker.Cert.SerialNumber)
		}
		next := pkitest.Node(t, ca, pki.RoleWorker, "w1")
		worker.Cert = next.Cert
		worker.Certs.Set(next.TLS())
	}
}
