package agent

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"

	"orch.dev/orch/internal/atomicfile"
	"orch.dev/orch/internal/pki"
)

// Every server holds the cluster CA (certificate and key) and a server
// certificate it issues itself. The CA is created once, by the server that
// bootstraps the cluster, before Raft bootstraps; it travels between
// servers over gossip (encrypted with the key derived from the cluster
// secret) with its key sealed by the cluster secret, so only servers that
// know the secret can use it. Each server keeps it in DATA_DIR/tls and the
// leader stores it as the orch-system/cluster-ca Secret (tls_secret.go).
//
//	DATA_DIR/tls/ca.crt     the CA certificate (for operators and clients)
//	DATA_DIR/tls/ca.sealed  pki.SealedCA as JSON (0600)
const (
	tlsDirName   = "tls"
	caCertFile   = "ca.crt"
	sealedCAFile = "ca.sealed"
)

// errOtherCA means a peer offered a CA other than the one this server has.
var errOtherCA = errors.New("a peer holds another cluster CA")

// clusterTLS is this server's CA and certificate.
type clusterTLS struct {
	secret   []byte
	previous [][]byte // earlier cluster secrets: a CA sealed with one is re-sealed with secret
	dir      string
	node     pki.NodeRequest
	validity time.Duration // of the server certificate; pki default when 0
	logger   *slog.Logger

	mu     sync.Mutex
	ca     *pki.CA
	sealed []byte // JSON of pki.SealedCA, as gossip and the Secret carry it
	certs  *pki.Certs
	peer   *tls.Config // Raft: mutual TLS, server role both ends
	api    *tls.Config // the API: client certificates optional (tls_http.go)
	client *tls.Config // calls to other servers' APIs
	ready  chan struct{}
}

func newClusterTLS(cfg *Config, secret string) *clusterTLS {
	ips := []net.IP{net.ParseIP("127.0.0.1"), net.IPv6loopback}
	for _, s := range []string{cfg.AdvertiseAddr, cfg.BindAddr} {
		if ip := net.ParseIP(s); ip != nil && !ip.IsUnspecified() && !containsIP(ips, ip) {
			ips = append(ips, ip)
		}
	}
	dns := []string{"localhost"}
	if cfg.Name != "localhost" {
		dns = append(dns, cfg.Name)
	}
	var previous [][]byte
	for _, p := range cfg.PreviousSecrets {
		previous = append(previous, []byte(p))
	}
	return &clusterTLS{
		secret:   []byte(secret),
		previous: previous,
		dir:      filepath.Join(cfg.DataDir, tlsDirName),
		node:     pki.NodeRequest{Name: cfg.Name, IPs: ips, DNSNames: dns},
		validity: cfg.CertValidity,
		logger:   cfg.Logger,
		ready:    make(chan struct{}),
	}
}

func containsIP(ips []net.IP, ip net.IP) bool {
	for _, x := range ips {
		if x.Equal(ip) {
			return true
		}
	}
	return false
}

// load reads the CA kept in the data dir, if any.
func (t *clusterTLS) load(now time.Time) error {
	b, err := os.ReadFile(filepath.Join(t.dir, sealedCAFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if err := t.adopt(b, now); err != nil {
		return fmt.Errorf("%s: %w (was this data dir started with another --token?)", filepath.Join(t.dir, sealedCAFile), err)
	}
	return nil
}

// create makes a new cluster CA (bootstrap).
func (t *clusterTLS) create(now time.Time) error {
	ca, err := pki.NewCA(pki.CAOptions{Now: now})
	if err != nil {
		return err
	}
	s, err := ca.Seal(t.secret)
	if err != nil {
		return err
	}
	b, err := json.Marshal(s)
	if err != nil {
		return err
	}
	if err := t.install(ca, b, now); err != nil {
		return err
	}
	t.logger.Info("created the cluster CA", "fingerprint", pki.Fingerprint(ca.Cert))
	return nil
}

// adopt installs a sealed CA received from a peer or read from disk. The
// same CA again is a no-op; another CA is refused (errOtherCA).
func (t *clusterTLS) adopt(sealed []byte, now time.Time) error {
	var s pki.SealedCA
	if err := json.Unmarshal(sealed, &s); err != nil {
		return fmt.Errorf("%w: %v", pki.ErrSealFormat, err)
	}
	if have := t.CA(); have != nil {
		cert, err := pki.ParseCertPEM(s.CertPEM)
		if err != nil {
			return err
		}
		if !bytes.Equal(cert.Raw, have.Cert.Raw) {
			return fmt.Errorf("%w (%s, ours %s)", errOtherCA, pki.Fingerprint(cert), pki.Fingerprint(have.Cert))
		}
		return nil
	}
	ca, err := s.Open(t.secret)
	for _, p := range t.previous {
		if err == nil {
			break
		}
		if old, perr := s.Open(p); perr == nil {
			// Sealed with an earlier cluster secret: keep it sealed with
			// the current one from now on.
			ca, err = old, nil
			var resealed pki.SealedCA
			if resealed, err = ca.Seal(t.secret); err == nil {
				sealed, err = json.Marshal(resealed)
			}
			if err == nil {
				t.logger.Info("the cluster CA was sealed with a previous cluster secret; re-sealed it with the current one")
			}
		}
	}
	if err != nil {
		return err
	}
	return t.install(ca, sealed, now)
}

// install keeps ca, writes it to the data dir and issues this server's
// certificate.
func (t *clusterTLS) install(ca *pki.CA, sealed []byte, now time.Time) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.ca != nil {
		return nil
	}
	if err := os.MkdirAll(t.dir, 0o700); err != nil {
		return err
	}
	if err := atomicfile.Write(filepath.Join(t.dir, sealedCAFile), sealed, 0o600); err != nil {
		return err
	}
	if err := atomicfile.Write(filepath.Join(t.dir, caCertFile), pki.CertPEM(ca.Cert), 0o600); err != nil {
		return err
	}
	cert, err := t.issue(ca, now)
	if err != nil {
		return err
	}
	t.ca, t.sealed, t.certs = ca, sealed, pki.NewCerts(cert)
	t.peer = pki.PeerConfig(ca.Cert, t.certs, pki.Policy{Roles: []pki.Role{pki.RoleServer}})
	t.api = pki.ServerConfig(ca.Cert, t.certs, pki.Policy{ClientCertOptional: true})
	t.client = pki.ClientConfig(ca.Cert, t.certs, pki.Policy{Roles: []pki.Role{pki.RoleServer}})
	close(t.ready)
	return nil
}

// issue makes a new key and server certificate for this server.
func (t *clusterTLS) issue(ca *pki.CA, now time.Time) (tls.Certificate, error) {
	key, err := pki.NewKey()
	if err != nil {
		return tls.Certificate{}, err
	}
	cert, err := ca.IssueNode(key.Public(), pki.RoleServer, t.node, pki.IssueOptions{Validity: t.validity, Now: now})
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("issuing this server's certificate: %w", err)
	}
	return pki.TLSCertificate(cert, key, ca.Cert), nil
}

// rotate renews the server certificate once pki.NeedsRotation says so.
// Connections already open keep their certificate; new ones get the new.
func (t *clusterTLS) rotate(now time.Time) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.ca == nil || !pki.NeedsRotation(t.certs.Current().Leaf, now) {
		return nil
	}
	cert, err := t.issue(t.ca, now)
	if err != nil {
		return err
	}
	t.certs.Set(cert)
	t.logger.Info("renewed the server certificate", "notAfter", cert.Leaf.NotAfter.UTC().Format(time.RFC3339))
	return nil
}

// rotateLoop checks the certificate often enough to renew it well before
// it expires: ten times in the time it has left, at most once a minute.
func (t *clusterTLS) rotateLoop(stop <-chan struct{}) {
	select {
	case <-t.ready:
	case <-stop:
		return
	}
	for {
		left := time.Until(t.Certs().Current().Leaf.NotAfter)
		every := max(min(left/10, time.Minute), 100*time.Millisecond)
		select {
		case <-stop:
			return
		case <-time.After(every):
		}
		if err := t.rotate(time.Now()); err != nil {
			t.logger.Error("renewing the server certificate failed", "err", err)
		}
	}
}

// CA is the cluster CA, nil until known.
func (t *clusterTLS) CA() *pki.CA {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.ca
}

// caCert is the CA certificate, nil until known.
func (t *clusterTLS) caCert() *x509.Certificate {
	if ca := t.CA(); ca != nil {
		return ca.Cert
	}
	return nil
}

// Sealed is the sealed CA as gossip carries it, nil until known.
func (t *clusterTLS) Sealed() []byte {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.sealed
}

// Certs holds this server's current certificate, nil until the CA is known.
func (t *clusterTLS) Certs() *pki.Certs {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.certs
}

// Ready is closed once the CA and this server's certificate exist.
func (t *clusterTLS) Ready() <-chan struct{} { return t.ready }

// errNoCA: Raft and the API cannot speak TLS before the CA is known.
var errNoCA = errors.New("this server does not have the cluster CA yet")

// raftConfig is the Raft stream layer's tls.Config.
func (t *clusterTLS) raftConfig() (*tls.Config, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.peer == nil {
		return nil, errNoCA
	}
	return t.peer, nil
}
