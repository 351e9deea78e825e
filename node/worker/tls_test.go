package worker

import (
	"context"
	"crypto/tls"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"orch.dev/orch/internal/join"
	"orch.dev/orch/internal/pki"
	"orch.dev/orch/internal/pki/pkitest"
)

// The worker API serves mutual TLS with the worker's own certificate and
// lets in only clients with a server certificate of the cluster CA.
func TestWorkerAPIMutualTLS(t *testing.T) {
	ca := pkitest.NewCA(t, "cluster")
	other := pkitest.NewCA(t, "other")
	dir := t.TempDir()
	cfg := Config{Name: "w1", DataDir: dir, Bind: "127.0.0.1", Advertise: "127.0.0.1", Logger: slog.New(slog.DiscardHandler)}
	nt := newNodeTLS(&cfg)

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok") })
	srv := &http.Server{Handler: mux}
	go srv.Serve(tls.NewListener(ln, &tls.Config{MinVersion: tls.VersionTLS13, GetConfigForClient: nt.serverConfig}))
	t.Cleanup(func() { srv.Close() })
	url := "https://" + ln.Addr().String() + "/healthz"

	get := func(c *tls.Config) error {
		hc := &http.Client{Transport: &http.Transport{TLSClientConfig: c}, Timeout: 10 * time.Second}
		defer hc.CloseIdleConnections()
		resp, err := hc.Get(url)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if string(b) != "ok" {
			t.Fatalf("answer %q", b)
		}
		return nil
	}
	server := pkitest.Node(t, ca, pki.RoleServer, "s1")
	workerPolicy := pki.Policy{Roles: []pki.Role{pki.RoleWorker}}

	// No certificate yet: no handshake.
	if err := get(pki.ClientConfig(ca.Cert, server.Certs, workerPolicy)); err == nil {
		t.Fatal("worker API answered before it had a certificate")
	}
	if err := nt.issueSelf(ca, time.Now()); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(filepath.Join(dir, "tls", "worker.key")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("worker.key: %v %v", fi, err)
	}
	if err := get(pki.ClientConfig(ca.Cert, server.Certs, workerPolicy)); err != nil {
		t.Fatalf("a server is refused: %v", err)
	}
	if err := get(pki.ClientConfig(ca.Cert, nil, workerPolicy)); err == nil {
		t.Fatal("a client without a certificate got in")
	}
	if err := get(pki.ClientConfig(ca.Cert, pkitest.Node(t, ca, pki.RoleWorker, "w2").Certs, workerPolicy)); err == nil {
		t.Fatal("a worker certificate got in")
	}
	if err := get(pki.ClientConfig(ca.Cert, pkitest.User(t, ca, "alice", pki.UserAdmin).Certs, workerPolicy)); err == nil {
		t.Fatal("a user certificate got in")
	}
	if err := get(pki.ClientConfig(ca.Cert, pkitest.Node(t, other, pki.RoleServer, "s9").Certs, workerPolicy)); err == nil {
		t.Fatal("a server of another CA got in")
	}

	// A restart finds the certificate in the data directory.
	nt2 := newNodeTLS(&cfg)
	nt2.load(time.Now())
	if _, cert, _ := nt2.current(); cert == nil || cert.Subject.CommonName != "w1" {
		t.Fatalf("kept certificate not loaded: %v", cert)
	}
	// Another node name does not take it.
	cfg3 := cfg
	cfg3.Name = "w3"
	nt3 := newNodeTLS(&cfg3)
	nt3.load(time.Now())
	if _, cert, _ := nt3.current(); cert != nil {
		t.Fatal("a certificate for w1 was loaded as w3's")
	}
}

// A certificate past two thirds of its life is renewed through a server's
// renewal handler, kept in the data directory and presented from then on.
func TestWorkerCertificateRenewal(t *testing.T) {
	ca := pkitest.NewCA(t, "cluster")
	server := pkitest.Node(t, ca, pki.RoleServer, "s1")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("POST "+join.RenewPath, join.RenewHandler(join.RenewConfig{CA: func() (*pki.CA, error) { return ca, nil },
		Logger: slog.New(slog.DiscardHandler)}))
	srv := &http.Server{Handler: mux}
	go srv.Serve(tls.NewListener(ln, pki.ServerConfig(ca.Cert, server.Certs, pki.Policy{ClientCertOptional: true})))
	t.Cleanup(func() { srv.Close() })

	dir := t.TempDir()
	cfg := Config{Name: "w1", DataDir: dir, Bind: "127.0.0.1", Advertise: "127.0.0.1", Logger: slog.New(slog.DiscardHandler)}
	nt := newNodeTLS(&cfg)
	old := pkitest.NodeAt(t, ca, pki.RoleWorker, "w1", time.Now().Add(-50*time.Minute), time.Hour) // 50 of 60 minutes used
	if err := nt.install(ca.Cert, old.Cert, old.Key, nil); err != nil {
		t.Fatal(err)
	}
	_, _, certs := nt.current()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		nt.renewLoop(ctx, func() []string { return []string{ln.Addr().String()} }, 10*time.Millisecond)
	}()
	defer func() { cancel(); <-done }()
	deadline := time.Now().Add(20 * time.Second)
	for {
		if _, cert, _ := nt.current(); cert.SerialNumber.Cmp(old.Cert.SerialNumber) != 0 {
			if pki.NeedsRotation(cert, time.Now()) || cert.Subject.CommonName != "w1" {
				t.Fatalf("renewed certificate %v, until %s", cert.Subject, cert.NotAfter)
			}
			if certs.Current().Leaf != cert {
				t.Fatal("the renewed certificate is not presented")
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the certificate was not renewed")
		}
		time.Sleep(10 * time.Millisecond)
	}
	b, err := os.ReadFile(filepath.Join(dir, "tls", "worker.crt"))
	if err != nil {
		t.Fatal(err)
	}
	kept, err := pki.ParseCertPEM(b)
	if err != nil || kept.SerialNumber.Cmp(old.Cert.SerialNumber) == 0 {
		t.Fatalf("the renewed certificate was not kept: %v", err)
	}
}
