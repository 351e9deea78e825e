package agent

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"orch.dev/orch/api"
	"orch.dev/orch/internal/pki"
)

// The first server creates the CA before bootstrapping; every server gets
// it over gossip, keeps it in its data dir and issues itself a server
// certificate; the leader stores it as orch-system/cluster-ca.
func TestServersShareTheClusterCA(t *testing.T) {
	c := startCluster(t, 3, "")
	ca := c.agents[0].tls.CA()
	if ca == nil {
		t.Fatal("s1 has no CA")
	}
	for _, a := range c.agents {
		got := a.tls.CA()
		if got == nil || !bytes.Equal(got.Cert.Raw, ca.Cert.Raw) {
			t.Fatalf("%s holds another CA than s1", a.cfg.Name)
		}
		leaf := a.tls.Certs().Current().Leaf
		if id, err := pki.IdentityOf(leaf); err != nil || id.Role != pki.RoleServer || id.Name != a.cfg.Name {
			t.Fatalf("%s's certificate: %+v %v", a.cfg.Name, id, err)
		}
		b, err := os.ReadFile(filepath.Join(a.cfg.DataDir, "tls", "ca.crt"))
		if err != nil || !bytes.Equal(b, pki.CertPEM(ca.Cert)) {
			t.Fatalf("%s: tls/ca.crt: %v", a.cfg.Name, err)
		}
		st, err := os.Stat(filepath.Join(a.cfg.DataDir, "tls", "ca.sealed"))
		if err != nil || st.Mode().Perm() != 0o600 {
			t.Fatalf("%s: tls/ca.sealed: %v %v", a.cfg.Name, st, err)
		}
	}
	c.waitFor("the orch-system/cluster-ca Secret", func() bool {
		rec := c.leader().fsm.View().Get(api.Secret, SystemNamespace, ClusterCASecret)
		return rec != nil && bytes.Equal(rec.Obj.(*corev1.Secret).Data["ca.crt"], pki.CertPEM(ca.Cert))
	})
}

// A single server without --token generates a cluster secret once, keeps
// it (0600) and reuses it after a restart, so its CA opens again.
func TestSingleServerGeneratesItsSecret(t *testing.T) {
	c := startCluster(t, 1, "")
	a := c.agents[0]
	path := filepath.Join(a.cfg.DataDir, clusterSecretFile)
	st, err := os.Stat(path)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("%s: %v %v", path, st, err)
	}
	b, _ := os.ReadFile(path)
	if string(bytes.TrimSpace(b)) != a.secret || len(a.secret) < 32 {
		t.Fatalf("the secret in use is not the one kept in %s", path)
	}
	if _, err := New(Config{Name: "x", DataDir: t.TempDir(), Server: true, BootstrapExpect: 3}); err == nil {
		t.Fatal("a server of a 3-server cluster started without --token")
	}
}

// Raft accepts only mutual TLS with a server certificate of this cluster's
// CA: no certificate, another CA's, or a worker's are refused.
func TestRaftRefusesPeersWithoutAServerCertificate(t *testing.T) {
	c := startCluster(t, 1, "")
	a := c.agents[0]
	ca := a.tls.CA()
	other, err := pki.NewCA(pki.CAOptions{Now: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	cert := func(ca *pki.CA, role pki.Role) []tls.Certificate {
		key, _ := pki.NewKey()
		leaf, err := ca.IssueNode(key.Public(), role, pki.NodeRequest{Name: "intruder"}, pki.IssueOptions{Now: time.Now()})
		if err != nil {
			t.Fatal(err)
		}
		return []tls.Certificate{pki.TLSCertificate(leaf, key, ca.Cert)}
	}
	// accepted dials the Raft port and reports whether the server sent
	// its "accepted" byte after the handshake.
	accepted := func(certs []tls.Certificate) bool {
		conn, err := tls.Dial("tcp", a.cfg.raftAddr(), &tls.Config{InsecureSkipVerify: true, Certificates: certs, MinVersion: tls.VersionTLS13})
		if err != nil {
			return false
		}
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(10 * time.Second))
		var b [1]byte
		n, err := conn.Read(b[:])
		return err == nil && n == 1 && b[0] == 0x01
	}
	if !accepted(cert(ca, pki.RoleServer)) {
		t.Fatal("a server certificate of the cluster CA was refused")
	}
	for what, certs := range map[string][]tls.Certificate{
		"no certificate":             nil,
		"another CA's server":        cert(other, pki.RoleServer),
		"a worker of the cluster CA": cert(ca, pki.RoleWorker),
	} {
		if accepted(certs) {
			t.Errorf("raft accepted a peer with %s", what)
		}
	}
}

// The server certificate is renewed before it expires, without a restart,
// under client load: every request opens a new connection (so each sees
// the certificate of the moment) and none fails.
func TestServerCertificateRotatesUnderLoad(t *testing.T) {
	c := startCluster(t, 3, "", func(cfg *Config) { cfg.CertValidity = 3 * time.Second })
	a := c.agents[1]
	ca := a.tls.caCert()
	hc := &http.Client{Transport: &http.Transport{DisableKeepAlives: true,
		TLSClientConfig: pki.ClientConfig(ca, nil, pki.Policy{Roles: []pki.Role{pki.RoleServer}})}}
	stop := make(chan struct{})
	errs := make(chan error, 4)
	var requests atomic.Int64
	for w := range 4 {
		go func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					errs <- nil
					return
				default:
				}
				target := c.agents[(w+i)%len(c.agents)]
				req, _ := newAPIRequest(context.Background(), target, "GET", cmPath, nil)
				resp, err := hc.Do(req)
				if err == nil {
					resp.Body.Close()
					if resp.StatusCode != http.StatusOK {
						err = fmt.Errorf("%s: %s", target.cfg.Name, resp.Status)
					}
				}
				if err != nil {
					errs <- err
					return
				}
				requests.Add(1)
			}
		}()
	}
	serials := map[string]bool{}
	deadline := time.Now().Add(30 * time.Second)
	for len(serials) < 10 && time.Now().Before(deadline) {
		serials[a.tls.Certs().Current().Leaf.SerialNumber.String()] = true
		time.Sleep(50 * time.Millisecond)
	}
	close(stop)
	for range 4 {
		if err := <-errs; err != nil {
			t.Fatalf("request failed during rotation: %v", err)
		}
	}
	if len(serials) < 10 {
		t.Fatalf("saw %d certificates in 30s; want renewals every ~300ms", len(serials))
	}
	if requests.Load() == 0 {
		t.Fatal("no request ran")
	}
	leaf := a.tls.Certs().Current().Leaf
	if time.Until(leaf.NotAfter) > 3*time.Second {
		t.Fatalf("renewed certificate valid until %s: validity not applied", leaf.NotAfter)
	}
	if code, body := do(t, a, "POST", cmPath, "application/json", `{"metadata":{"name":"after-rotation"}}`); code != 201 {
		t.Fatalf("write after rotation: %d %s", code, body)
	}
	t.Logf("%d requests on new connections across %d certificates", requests.Load(), len(serials))
}

// The API speaks HTTPS with the server certificate; a client certificate is
// optional, but one from another CA fails the handshake.
func TestAPIRefusesCertificatesOfAnotherCA(t *testing.T) {
	c := startCluster(t, 1, "")
	a := c.agents[0]
	ca := a.tls.CA()
	other, err := pki.NewCA(pki.CAOptions{Now: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	get := func(certs []tls.Certificate) error {
		cfg := pki.ClientConfig(ca.Cert, nil, pki.Policy{Roles: []pki.Role{pki.RoleServer}})
		cfg.Certificates = certs
		hc := &http.Client{Transport: &http.Transport{TLSClientConfig: cfg}}
		defer hc.CloseIdleConnections()
		resp, err := hc.Get(a.URL() + "/version")
		if err != nil {
			return err
		}
		resp.Body.Close()
		return nil
	}
	userCert := func(ca *pki.CA) []tls.Certificate {
		key, _ := pki.NewKey()
		leaf, err := ca.IssueUser(key.Public(), "alice", pki.UserAdmin, pki.IssueOptions{Now: time.Now()})
		if err != nil {
			t.Fatal(err)
		}
		return []tls.Certificate{pki.TLSCertificate(leaf, key, ca.Cert)}
	}
	if err := get(nil); err != nil {
		t.Fatalf("HTTPS without a client certificate: %v", err)
	}
	if err := get(userCert(ca)); err != nil {
		t.Fatalf("HTTPS with a certificate of the cluster CA: %v", err)
	}
	if err := get(userCert(other)); err == nil {
		t.Fatal("the API accepted a client certificate of another CA")
	}
	// A client that trusts another CA refuses the server.
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: pki.ClientConfig(other.Cert, nil, pki.Policy{Roles: []pki.Role{pki.RoleServer}})}}
	if resp, err := hc.Get(a.URL() + "/version"); err == nil {
		resp.Body.Close()
		t.Fatal("a client pinned to another CA accepted the server")
	}
	if resp, err := http.Get("http://" + a.HTTPAddr() + "/version"); err == nil && resp.StatusCode == http.StatusOK {
		resp.Body.Close()
		t.Fatal("the API answered plain HTTP")
	}
}

// What servers put into gossip (metadata and push-pull state) carries no
// object of the cluster's state, and memberlist encrypts it with the key
// derived from the cluster secret.
func TestGossipCarriesNoObjects(t *testing.T) {
	c := startCluster(t, 3, "")
	const marker = "gossip-leak-marker"
	if code, body := do(t, c.agents[0], "POST", cmPath, "application/json", `{"metadata":{"name":"`+marker+`"},"data":{"`+marker+`":"`+marker+`"}}`); code != 201 {
		t.Fatalf("create: %d %s", code, body)
	}
	for _, a := range c.agents {
		for what, b := range map[string][]byte{
			"metadata":    a.gossip.NodeMeta(512),
			"local state": a.gossip.LocalState(true),
		} {
			if bytes.Contains(b, []byte(marker)) {
				t.Errorf("%s's gossip %s holds an object name", a.cfg.Name, what)
			}
		}
		if st := a.gossip.LocalState(false); len(st) == 0 {
			t.Errorf("%s sends no sealed CA in push-pull", a.cfg.Name)
		} else if bytes.Contains(st, []byte("PRIVATE KEY")) {
			t.Errorf("%s's gossip state holds a clear private key", a.cfg.Name)
		}
		if !a.gossip.encrypted {
			t.Errorf("%s gossips in clear", a.cfg.Name)
		}
	}
}
