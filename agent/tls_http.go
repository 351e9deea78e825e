package agent

import (
	"context"
	"crypto/tls"
	"net"
	"net/http"
	"time"

	"orch.dev/orch/internal/pki"
)

// The API speaks HTTPS with the server certificate. Client certificates
// are optional and, when given, verified against the cluster CA, so that
// r.TLS carries a verified identity (pki.PeerIdentity) for authentication.
// A certificate from another CA fails the handshake. With --insecure the
// API speaks plain HTTP (loopback only, Config.setDefaults).

// apiConfig is the API's tls.Config for one handshake.
func (t *clusterTLS) apiConfig() (*tls.Config, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.api == nil {
		return nil, errNoCA
	}
	return t.api, nil
}

// peerClientConfig is the tls.Config of this server's calls to other
// servers: it presents the server certificate and accepts only servers.
func (t *clusterTLS) peerClientConfig() (*tls.Config, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.client == nil {
		return nil, errNoCA
	}
	return t.client, nil
}

// tlsListener wraps the API listener in TLS unless --insecure.
func (a *Agent) tlsListener(ln net.Listener) net.Listener {
	if a.cfg.Insecure {
		return ln
	}
	return tls.NewListener(ln, &tls.Config{
		MinVersion: tls.VersionTLS13,
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			return a.tls.apiConfig()
		},
	})
}

// scheme is the API's URL scheme.
func (a *Agent) scheme() string {
	if a.cfg.Insecure {
		return "http"
	}
	return "https"
}

// URL is this server's API base URL, as clients use it.
func (a *Agent) URL() string { return a.scheme() + "://" + a.HTTPAddr() }

// peerURL is the base URL of another server's API at addr (host:port).
func (a *Agent) peerURL(addr string) string { return a.scheme() + "://" + addr }

// CACertPEM is the cluster CA certificate, nil until this server has it.
func (a *Agent) CACertPEM() []byte {
	if c := a.tls.caCert(); c != nil {
		return pki.CertPEM(c)
	}
	return nil
}

// ClusterSecret is the cluster secret this server runs with (--token, or
// the one it generated).
func (a *Agent) ClusterSecret() string { return a.secret }

// TLSReady is closed once this server has the CA and its certificate.
func (a *Agent) TLSReady() <-chan struct{} { return a.tls.Ready() }

// newPeerClient is the HTTP client of server-to-server calls: HTTPS with
// this server's certificate to other servers, plain HTTP where the URL
// says so.
func (a *Agent) newPeerClient() *http.Client {
	// a.tls is read at each dial: it does not exist yet when this runs.
	return mutualTLSClient(func() (*tls.Config, error) { return a.tls.peerClientConfig() }, 512, 256)
}

// workerScheme is the scheme of calls to workers' APIs (logs, exec,
// images): HTTPS with mutual TLS, plain HTTP only with --insecure.
func (a *Agent) workerScheme() string { return a.scheme() }

// newWorkerClient is the HTTP client of calls to workers' APIs: it
// presents this server's certificate (role server, which is all a worker
// API accepts) and accepts only a worker certificate of the cluster CA.
func (a *Agent) newWorkerClient() *http.Client {
	return mutualTLSClient(func() (*tls.Config, error) {
		ca, certs := a.tls.caCert(), a.tls.Certs()
		if ca == nil || certs == nil {
			return nil, errNoCA
		}
		return pki.ClientConfig(ca, certs, pki.Policy{Roles: []pki.Role{pki.RoleWorker}}), nil
	}, 64, 8)
}

// mutualTLSClient is an HTTP client whose TLS connections use the config
// tlsConfig returns at each dial (certificates rotate in place). A failed
// handshake is a dial error: nothing was sent, so callers may retry
// elsewhere (forward.go).
func mutualTLSClient(tlsConfig func() (*tls.Config, error), maxIdle, maxIdlePerHost int) *http.Client {
	dialer := &net.Dialer{Timeout: 2 * time.Second, KeepAlive: 30 * time.Second}
	return &http.Client{Transport: &http.Transport{
		Proxy:       nil,
		DialContext: dialer.DialContext,
		DialTLSContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			cfg, err := tlsConfig()
			if err != nil {
				return nil, &net.OpError{Op: "dial", Net: network, Err: err}
			}
			c, err := dialer.DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			tc := tls.Client(c, cfg)
			if err := tc.HandshakeContext(ctx); err != nil {
				c.Close()
				return nil, &net.OpError{Op: "dial", Net: network, Err: err}
			}
			return tc, nil
		},
		MaxIdleConns:        maxIdle,
		MaxIdleConnsPerHost: maxIdlePerHost,
		IdleConnTimeout:     90 * time.Second,
	}}
}

// ClusterCA is the cluster CA with its key, nil until this server has it
// (a worker in this server's process issues itself its worker API
// certificate with it).
func (a *Agent) ClusterCA() *pki.CA { return a.tls.CA() }
