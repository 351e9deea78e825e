package worker

import (
	"context"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"

	"orch.dev/orch/internal/atomicfile"
	"orch.dev/orch/internal/join"
	"orch.dev/orch/internal/pki"
)

// A worker's certificate (role worker, its node name and address) is what
// it presents to the API when it joined with a join token (no bearer
// token), and what its own API (logs, exec, images) presents to the
// servers, the only clients that API accepts. It is kept in DATA_DIR/tls,
// so a restart needs neither the token nor the servers:
//
//	DATA_DIR/tls/ca.crt       the cluster CA
//	DATA_DIR/tls/worker.crt   this worker's certificate
//	DATA_DIR/tls/worker.key   its key (0600)
//	DATA_DIR/tls/gossip.key   the gossip key from the join response (0600)
//
// A worker joins with a token (Config.JoinToken) once: join.Join, which
// trusts only a server whose CA has the token's fingerprint. A worker
// started with the cluster secret issues itself the certificate with the
// CA it opens with the secret (sent sealed over gossip, or Config.CA).
// Either renews it with join.Renew once pki.NeedsRotation says so, and
// swaps it in place (pki.Certs).
const (
	tlsDir        = "tls"
	certFile      = "worker.crt"
	keyFile       = "worker.key"
	gossipKeyFile = "gossip.key"
)

// DefaultServerAPIPort is the servers' API port a token join uses when
// --join gives no port.
const DefaultServerAPIPort = 7400

type nodeTLS struct {
	dir  string
	node pki.NodeRequest
	log  *slog.Logger

	mu        sync.Mutex
	ca        *x509.Certificate
	cert      *x509.Certificate
	certs     *pki.Certs
	gossipKey []byte
}

func newNodeTLS(cfg *Config) *nodeTLS {
	req := pki.NodeRequest{Name: cfg.Name}
	for _, s := range []string{cfg.Advertise, cfg.Bind} {
		if ip := net.ParseIP(s); ip != nil && !ip.IsUnspecified() && !slicesContainsIP(req.IPs, ip) {
			req.IPs = append(req.IPs, ip)
		}
	}
	return &nodeTLS{dir: filepath.Join(cfg.DataDir, tlsDir), node: req, log: cfg.Logger}
}

func slicesContainsIP(ips []net.IP, ip net.IP) bool {
	for _, x := range ips {
		if x.Equal(ip) {
			return true
		}
	}
	return false
}

// load reads what an earlier run kept; a certificate that expired, or that
// is not for this node, is ignored (the worker then needs a token again).
func (t *nodeTLS) load(now time.Time) {
	caPEM, err1 := os.ReadFile(filepath.Join(t.dir, caCertFileName))
	certPEM, err2 := os.ReadFile(filepath.Join(t.dir, certFile))
	keyPEM, err3 := os.ReadFile(filepath.Join(t.dir, keyFile))
	if gk, err := os.ReadFile(filepath.Join(t.dir, gossipKeyFile)); err == nil {
		t.gossipKey = gk
	}
	if err := errors.Join(err1, err2, err3); err != nil {
		return
	}
	ca, err1 := pki.ParseCertPEM(caPEM)
	cert, err2 := pki.ParseCertPEM(certPEM)
	key, err3 := pki.ParseKeyPEM(keyPEM)
	if err := errors.Join(err1, err2, err3); err != nil {
		t.log.Warn("ignoring the certificate kept in the data directory", "dir", t.dir, "err", err)
		return
	}
	if _, err := pki.VerifyPeer([]*x509.Certificate{cert}, pki.Pool(ca), []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		pki.Policy{Roles: []pki.Role{pki.RoleWorker}, Now: func() time.Time { return now }}); err != nil || cert.Subject.CommonName != t.node.Name {
		t.log.Warn("ignoring the certificate kept in the data directory (expired, or not this worker's)", "dir", t.dir, "err", err)
		return
	}
	t.set(ca, cert, key)
}

const caCertFileName = "ca.crt"

func (t *nodeTLS) set(ca, cert *x509.Certificate, key crypto.Signer) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.ca, t.cert = ca, cert
	c := pki.TLSCertificate(cert, key, ca)
	if t.certs == nil {
		t.certs = pki.NewCerts(c)
	} else {
		t.certs.Set(c)
	}
}

// install keeps a new certificate (key first, 0600) and presents it from
// the next handshake on.
func (t *nodeTLS) install(ca, cert *x509.Certificate, key crypto.Signer, gossipKey []byte) error {
	if err := os.MkdirAll(t.dir, 0o700); err != nil {
		return err
	}
	keyPEM, err := pki.KeyPEM(key)
	if err != nil {
		return err
	}
	if err := atomicfile.Write(filepath.Join(t.dir, keyFile), keyPEM, 0o600); err != nil {
		return err
	}
	if err := atomicfile.Write(filepath.Join(t.dir, certFile), pki.CertPEM(cert), 0o644); err != nil {
		return err
	}
	if err := atomicfile.Write(filepath.Join(t.dir, caCertFileName), pki.CertPEM(ca), 0o644); err != nil {
		return err
	}
	if len(gossipKey) > 0 {
		if err := atomicfile.Write(filepath.Join(t.dir, gossipKeyFile), gossipKey, 0o600); err != nil {
			return err
		}
		t.mu.Lock()
		t.gossipKey = gossipKey
		t.mu.Unlock()
	}
	t.set(ca, cert, key)
	return nil
}

// current returns the CA, the certificate and its holder; nil before any.
func (t *nodeTLS) current() (*x509.Certificate, *x509.Certificate, *pki.Certs) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.ca, t.cert, t.certs
}

func (t *nodeTLS) gossip() []byte {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.gossipKey
}

// needsCert reports whether there is no certificate, or it is due for renewal.
func (t *nodeTLS) needsCert(now time.Time) bool {
	_, cert, _ := t.current()
	return cert == nil || pki.NeedsRotation(cert, now)
}

// issueSelf issues this worker its certificate with the cluster CA (a
// worker holding the cluster secret may: it opened the CA with it).
func (t *nodeTLS) issueSelf(ca *pki.CA, now time.Time) error {
	if ca == nil || ca.Key == nil {
		return pki.ErrNoCAKey
	}
	key, err := pki.NewKey()
	if err != nil {
		return err
	}
	cert, err := ca.IssueNode(key.Public(), pki.RoleWorker, t.node, pki.IssueOptions{Now: now})
	if err != nil {
		return err
	}
	return t.install(ca.Cert, cert, key, nil)
}

// joinWithToken runs the join handshake against the servers' APIs in
// turn until one certifies this worker. A refusal, or a server whose CA
// is not the token's, ends it with an error: retrying cannot help.
func (t *nodeTLS) joinWithToken(ctx context.Context, token string, addrs []string) error {
	delay := 500 * time.Millisecond
	for {
		var last error
		for _, addr := range addrs {
			key, err := pki.NewKey()
			if err != nil {
				return err
			}
			jctx, cancel := context.WithTimeout(ctx, 15*time.Second)
			res, err := join.Join(jctx, join.Options{Addr: addr, Token: token, Role: pki.RoleWorker, Key: key, Node: t.node})
			cancel()
			if err == nil {
				t.log.Info("joined the cluster with a join token", "server", addr, "expires", res.Cert.NotAfter)
				return t.install(res.CA, res.Cert, key, res.GossipKey)
			}
			if fatalJoinError(err) {
				return fmt.Errorf("join with --token at %s: %w", addr, err)
			}
			last = err
		}
		t.log.Warn("cannot join yet", "err", last)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(delay):
		}
		delay = min(2*delay, 10*time.Second)
	}
}

// fatalJoinError: the server refused (bad, expired, revoked or used
// token), or it is not the cluster the token names.
func fatalJoinError(err error) bool {
	var cve *tls.CertificateVerificationError
	return errors.Is(err, join.ErrRefused) || errors.Is(err, pki.ErrCAMismatch) || errors.Is(err, join.ErrBadResponse) ||
		errors.Is(err, join.ErrTokenFormat) || errors.As(err, &cve)
}

// renewLoop renews the certificate with join.Renew, authenticated by the
// current one, once it is due, trying the servers addrs returns in turn.
func (t *nodeTLS) renewLoop(ctx context.Context, addrs func() []string, every time.Duration) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(every):
		}
		ca, cert, certs := t.current()
		if cert == nil || !pki.NeedsRotation(cert, time.Now()) {
			continue
		}
		for _, addr := range addrs() {
			key, err := pki.NewKey()
			if err != nil {
				break
			}
			rctx, cancel := context.WithTimeout(ctx, 15*time.Second)
			res, err := join.Renew(rctx, join.RenewOptions{Addr: addr, CA: ca, Certs: certs, Role: pki.RoleWorker, Key: key, Node: t.node})
			cancel()
			if err != nil {
				t.log.Warn("cannot renew the worker certificate yet", "server", addr, "err", err, "expires", cert.NotAfter)
				continue
			}
			if err := t.install(res.CA, res.Cert, key, nil); err != nil {
				t.log.Error("keeping the renewed certificate", "err", err)
				break
			}
			t.log.Info("worker certificate renewed", "expires", res.Cert.NotAfter)
			break
		}
	}
}

// serverConfig is the worker API's tls.Config: this worker's certificate,
// and only clients with a server certificate of the cluster CA.
func (t *nodeTLS) serverConfig(*tls.ClientHelloInfo) (*tls.Config, error) {
	ca, _, certs := t.current()
	if certs == nil {
		return nil, errors.New("worker API: no certificate yet (waiting for the cluster CA)")
	}
	return pki.ServerConfig(ca, certs, pki.Policy{Roles: []pki.Role{pki.RoleServer}}), nil
}

// apiAddrs are the servers' API addresses of --join for a token join:
// host:port as given, else host:7400.
func apiAddrs(join []string) []string {
	var out []string
	for _, a := range join {
		if _, _, err := net.SplitHostPort(a); err != nil {
			a = net.JoinHostPort(a, fmt.Sprint(DefaultServerAPIPort))
		}
		out = append(out, a)
	}
	return out
}

// gossipHosts are the hosts of --join, for gossip on its default port,
// when --join names servers' APIs (a token join).
func gossipHosts(join []string) []string {
	var out []string
	for _, a := range join {
		if h, _, err := net.SplitHostPort(a); err == nil {
			a = h
		}
		out = append(out, a)
	}
	return out
}
