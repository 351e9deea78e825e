package rafttls

import (
	"crypto/tls"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"orch.dev/orch/internal/pki"
	"orch.dev/orch/internal/pki/pkitest"
)

func TestRaftOverTLS(t *testing.T) {
	ca := pkitest.NewCA(t, "c")
	c := newRaftCluster(t, 3, tlsTransports(ca), fastTiming)
	leader := c.leader(t)
	for i := range 10 {
		if err := leader.Apply([]byte{byte(i)}, 5*time.Second).Error(); err != nil {
			t.Fatalf("apply %d: %v", i, err)
		}
	}
	c.waitApplied(t, 10)
	for i, f := range c.fsms {
		f.mu.Lock()
		for j, d := range f.applied {
			if len(d) != 1 || d[0] != byte(j) {
				t.Errorf("server %d entry %d = %v", i, j, d)
			}
		}
		f.mu.Unlock()
	}
}

// A voter whose certificate is a worker's takes no part: the two real
// servers elect a leader and commit without it, and it never applies.
func TestRaftRefusesWorkerVoter(t *testing.T) {
	ca := pkitest.NewCA(t, "c")
	c := newRaftCluster(t, 3, tlsTransports(ca, pki.RoleServer, pki.RoleServer, pki.RoleWorker), fastTiming)
	leader := c.leader(t)
	if leader == c.rafts[2] {
		t.Fatal("the worker-certified server became leader")
	}
	if err := leader.Apply([]byte("x"), 5*time.Second).Error(); err != nil {
		t.Fatal(err)
	}
	c.fsms = c.fsms[:2]
	c.waitApplied(t, 1)
	time.Sleep(300 * time.Millisecond) // several heartbeats: the worker must still have nothing
	if n := c.rafts[2].AppliedIndex(); n != 0 || c.rafts[2].State() == raft.Leader {
		t.Fatalf("worker-certified server applied index %d, state %v", n, c.rafts[2].State())
	}
}

// layer starts a stream layer for holder h, trusting ca.
func layer(t *testing.T, ca *pki.CA, h *pkitest.Holder, check func(pki.Identity) error) *StreamLayer {
	t.Helper()
	s, err := Listen(Config{Bind: "127.0.0.1:0", CA: ca.Cert, Certs: h.Certs, Check: check, Logger: quiet, HandshakeTimeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// noAccept checks that s hands nothing to Raft within a short while.
func noAccept(t *testing.T, s *StreamLayer) {
	t.Helper()
	got := make(chan net.Conn, 1)
	go func() {
		if c, err := s.Accept(); err == nil {
			got <- c
		}
	}()
	select {
	case <-got:
		t.Fatal("the stream layer handed a refused connection to Raft")
	case <-time.After(200 * time.Millisecond):
	}
}

func TestDialRefused(t *testing.T) {
	ca := pkitest.NewCA(t, "c")
	evil := pkitest.NewCA(t, "evil")
	server := layer(t, ca, pkitest.Node(t, ca, pki.RoleServer, "s1"), func(id pki.Identity) error {
		if id.Name == "removed" {
			return errors.New("server removed from the cluster")
		}
		return nil
	})
	cases := []struct {
		name string
		from *StreamLayer
	}{
		{"worker certificate", layer(t, ca, pkitest.Node(t, ca, pki.RoleWorker, "w1"), nil)},
		// The dialer trusts the real CA, so only the server can refuse it.
		{"server certificate from another CA", layer(t, ca, pkitest.Node(t, evil, pki.RoleServer, "s1"), nil)},
		// The dialer trusts only its own CA and refuses the real server.
		{"dialer of another cluster", layer(t, evil, pkitest.Node(t, evil, pki.RoleServer, "s1"), nil)},
		{"server refused by Check", layer(t, ca, pkitest.Node(t, ca, pki.RoleServer, "removed"), nil)},
	}
	for _, c := range cases {
		conn, err := c.from.Dial(raft.ServerAddress(server.Addr().String()), 2*time.Second)
		if err == nil {
			conn.Close()
			t.Errorf("%s: dial succeeded", c.name)
			continue
		}
		if !strings.Contains(err.Error(), "refused this server") && !strings.Contains(err.Error(), "handshake") {
			t.Errorf("%s: unclear error %v", c.name, err)
		}
		t.Logf("%s: %v", c.name, err)
	}
	noAccept(t, server)
}

func TestNoClientCertificate(t *testing.T) {
	ca := pkitest.NewCA(t, "c")
	server := layer(t, ca, pkitest.Node(t, ca, pki.RoleServer, "s1"), nil)
	// A TLS client that trusts the CA but has no certificate of its own.
	cfg := pki.ClientConfig(ca.Cert, nil, pki.Policy{Roles: []pki.Role{pki.RoleServer}})
	conn, err := tls.Dial("tcp", server.Addr().String(), cfg)
	if err == nil {
		conn.SetDeadline(time.Now().Add(2 * time.Second))
		_, err = conn.Read(make([]byte, 1))
		conn.Close()
	}
	if err == nil || !strings.Contains(err.Error(), "certificate required") {
		t.Errorf("no client certificate: %v", err)
	}
	// Plain TCP speaking Raft's wire protocol gets nothing either.
	pc, err := net.Dial("tcp", server.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	pc.Write([]byte("\x00\x82\xa4Term\x01\xa6Leader\xc4\x00")) // rpcAppendEntries, then msgpack
	pc.SetDeadline(time.Now().Add(2 * time.Second))
	b := make([]byte, 64)
	n, _ := pc.Read(b)
	pc.Close()
	if n > 0 && b[0] != 0x15 { // a TLS alert record is all it may get
		t.Errorf("plain TCP client read %x", b[:n])
	}
	noAccept(t, server)
}

// A worker's certificate is genuine, but a server must not dial it as a
// Raft peer: a worker posing as a Raft server at a peer's address is refused.
func TestDialRefusesNonServer(t *testing.T) {
	ca := pkitest.NewCA(t, "c")
	rogue := layer(t, ca, pkitest.Node(t, ca, pki.RoleWorker, "w1"), nil)
	evil := pkitest.NewCA(t, "evil")
	impostor := layer(t, evil, pkitest.Node(t, evil, pki.RoleServer, "s2"), nil)
	me := layer(t, ca, pkitest.Node(t, ca, pki.RoleServer, "s1"), nil)
	for name, target := range map[string]*StreamLayer{"worker": rogue, "other CA": impostor} {
		if c, err := me.Dial(raft.ServerAddress(target.Addr().String()), 2*time.Second); err == nil {
			c.Close()
			t.Errorf("dialled a %s as a Raft server", name)
		} else {
			t.Logf("%s: %v", name, err)
		}
	}
}

func TestDialAcceptRotate(t *testing.T) {
	ca := pkitest.NewCA(t, "c")
	server := layer(t, ca, pkitest.Node(t, ca, pki.RoleServer, "s1"), nil)
	h := pkitest.Node(t, ca, pki.RoleServer, "s2")
	client := layer(t, ca, h, nil)
	for round := range 2 {
		accepted := make(chan net.Conn, 1)
		go func() {
			c, err := server.Accept()
			if err == nil {
				accepted <- c
			}
		}()
		c, err := client.Dial(raft.ServerAddress(server.Addr().String()), 2*time.Second)
		if err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		sc := <-accepted
		if _, err := c.Write([]byte("ping")); err != nil {
			t.Fatal(err)
		}
		b := make([]byte, 4)
		if _, err := sc.Read(b); err != nil || string(b) != "ping" {
			t.Fatalf("read %q %v", b, err)
		}
		peer := sc.(*tls.Conn).ConnectionState().PeerCertificates[0]
		if !peer.Equal(h.Cert) {
			t.Fatalf("round %d: server saw serial %v, want %v", round, peer.SerialNumber, h.Cert.SerialNumber)
		}
		c.Close()
		sc.Close()
		// Rotate: the next connection presents the new certificate.
		next := pkitest.Node(t, ca, pki.RoleServer, "s2")
		h.Cert = next.Cert
		h.Certs.Set(next.TLS())
	}
	server.Close()
	if _, err := server.Accept(); !errors.Is(err, ErrClosed) {
		t.Errorf("Accept after Close: %v", err)
	}
}

func TestListenErrors(t *testing.T) {
	ca := pkitest.NewCA(t, "c")
	if _, err := Listen(Config{Bind: "127.0.0.1:0"}); err == nil {
		t.Error("listened without certificates")
	}
	h := pkitest.Node(t, ca, pki.RoleServer, "s1")
	if _, err := Listen(Config{Bind: "127.0.0.1:0", CA: ca.Cert, Certs: h.Certs, Advertise: "nonsense"}); err == nil {
		t.Error("accepted a bad advertise address")
	}
	s, err := Listen(Config{Bind: "127.0.0.1:0", CA: ca.Cert, Certs: h.Certs, Advertise: "10.0.0.1:7401", Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s.Addr().String() != "10.0.0.1:7401" {
		t.Errorf("advertise %v", s.Addr())
	}
}
