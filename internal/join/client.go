package join

import (
	"bytes"
	"context"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"orch.dev/orch/internal/pki"
)

// ErrRefused means the server refused the join or renewal; the error says why.
var ErrRefused = errors.New("refused by the server")

// ErrBadResponse means the server answered with something that is not a
// valid certificate for this node under the trusted CA.
var ErrBadResponse = errors.New("response does not hold a valid certificate for this node")

// Options says how to join.
type Options struct {
	Addr  string   // host:port of a server's API
	Token string   // as printed by `orchctl operator token create`
	Role  pki.Role // server or worker: must be the token's role
	Key   crypto.Signer
	Node  pki.NodeRequest // the name and addresses to be certified
	Path  string          // Path when empty
}

// Result is what a joined node keeps: its certificate and the cluster CA.
type Result struct {
	Cert *x509.Certificate
	CA   *x509.Certificate
	// GossipKey is the cluster's gossip key, when the server sent it.
	GossipKey []byte
}

// Join performs the join handshake with one server: it connects over TLS
// trusting only a server certificate that chains to the CA pinned in the
// token (so the secret is never sent to an impostor), posts the token and a
// CSR for Key, and checks that what comes back certifies Key, Node and Role
// under that CA.
func Join(ctx context.Context, o Options) (*Result, error) {
	tok, err := Parse(o.Token)
	if err != nil {
		return nil, err
	}
	if !o.Role.IsNode() {
		return nil, fmt.Errorf("join as %q: want server or worker", o.Role)
	}
	csr, err := pki.NewCSR(o.Key, o.Node)
	if err != nil {
		return nil, err
	}
	path := o.Path
	if path == "" {
		path = Path
	}
	cfg := pki.PinnedClientConfig(tok.CAHash, pki.Policy{Roles: []pki.Role{pki.RoleServer}})
	out, err := post(ctx, cfg, o.Addr, path, Request{Token: tok.String(), Role: o.Role, CSR: string(csr)})
	if err != nil {
		return nil, fmt.Errorf("join: %w", err)
	}
	res, err := checkResponse(out, tok.CAHash, o.Role, o.Key, o.Node.Name)
	if err != nil {
		return nil, err
	}
	res.GossipKey = out.GossipKey
	return res, nil
}

// post sends body to a server over TLS configured by cfg and decodes a
// certificate response, or the server's refusal.
func post(ctx context.Context, cfg *tls.Config, addr, path string, body any) (Response, error) {
	var out Response
	b, err := json.Marshal(body)
	if err != nil {
		return out, err
	}
	hc := &http.Client{
		Transport: &http.Transport{
			TLSClientConfig:     cfg,
			TLSHandshakeTimeout: 10 * time.Second,
			// Never through a proxy: the verified TLS session is the security.
			Proxy: nil,
		},
		// A redirect would carry the token elsewhere; servers never send one.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	defer hc.CloseIdleConnections()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "https://"+addr+path, bytes.NewReader(b))
	if err != nil {
		return out, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := hc.Do(req)
	if err != nil {
		return out, fmt.Errorf("%s: %w", addr, err)
	}
	defer resp.Body.Close()
	b, err = io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return out, fmt.Errorf("%s: %w", addr, err)
	}
	if resp.StatusCode != http.StatusOK {
		var st status
		if json.Unmarshal(b, &st) != nil || st.Message == "" {
			st.Message = http.StatusText(resp.StatusCode)
		}
		return out, fmt.Errorf("%w (%s): %s", ErrRefused, addr, st.Message)
	}
	if err := json.Unmarshal(b, &out); err != nil {
		return out, fmt.Errorf("%w: %v", ErrBadResponse, err)
	}
	return out, nil
}

// checkResponse checks that out certifies key as name with role under the
// CA with fingerprint caHash.
func checkResponse(out Response, caHash string, role pki.Role, key crypto.Signer, name string) (*Result, error) {
	ca, err := pki.ParseCertPEM([]byte(out.CA))
	if err != nil {
		return nil, fmt.Errorf("%w: CA: %v", ErrBadResponse, err)
	}
	if pki.Fingerprint(ca) != caHash {
		return nil, fmt.Errorf("%w: it names a CA other than the one this node trusts", pki.ErrCAMismatch)
	}
	cert, err := pki.ParseCertPEM([]byte(out.Certificate))
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadResponse, err)
	}
	if _, err := pki.VerifyPeer([]*x509.Certificate{cert}, pki.Pool(ca),
		[]x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		pki.Policy{Roles: []pki.Role{role}}); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadResponse, err)
	}
	if pub, ok := cert.PublicKey.(interface{ Equal(crypto.PublicKey) bool }); !ok || !pub.Equal(key.Public()) {
		return nil, fmt.Errorf("%w: it certifies another key", ErrBadResponse)
	}
	if cert.Subject.CommonName != name {
		return nil, fmt.Errorf("%w: it names %q, not %q", ErrBadResponse, cert.Subject.CommonName, name)
	}
	return &Result{Cert: cert, CA: ca}, nil
}
