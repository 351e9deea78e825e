package join

import (
	"context"
	"crypto"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"time"

	"orch.dev/orch/internal/pki"
)

// RenewPath is where a server's API serves certificate renewal (POST).
const RenewPath = "/v1/renew"

// RenewRequest is what a node posts to renew its certificate.
type RenewRequest struct {
	CSR string `json:"csr"` // PEM, for a new key
}

// RenewConfig configures RenewHandler.
type RenewConfig struct {
	CA       func() (*pki.CA, error)
	Validity time.Duration // pki.DefaultNodeValidity when zero
	// Authorize, when set, may refuse a renewal: a node removed from the
	// cluster, or addresses that are no longer the node's.
	Authorize func(r *http.Request, id pki.Identity, req pki.NodeRequest) error
	Now       func() time.Time // time.Now when nil
	Logger    *slog.Logger     // slog.Default when nil
}

// RenewHandler issues a node a new certificate, for a new key, with the
// role and name of the certificate it authenticated with. It must be served
// with pki.ServerConfig (ClientCertOptional is fine: a request without a
// certificate is refused here), so that certificate is verified, unexpired
// and passed the Policy's Check. A node whose certificate expired joins
// again with a token.
func RenewHandler(cfg RenewConfig) http.Handler {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, _ := pki.PeerIdentity(r.TLS)
		resp, err := cfg.serve(r, id)
		if err != nil {
			var rf *refusal
			if !errors.As(err, &rf) {
				rf = refuse(http.StatusInternalServerError, "InternalError", "renewal failed: %v", err)
			}
			cfg.Logger.Warn("certificate renewal refused", "remote", r.RemoteAddr, "node", id.Name, "code", rf.code, "err", rf.msg)
			writeStatus(w, rf)
			return
		}
		cfg.Logger.Info("certificate renewed", "remote", r.RemoteAddr, "node", id.Name, "role", id.Role)
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(resp)
	})
}

func (cfg *RenewConfig) serve(r *http.Request, id pki.Identity) (*Response, error) {
	if r.Method != http.MethodPost {
		return nil, refuse(http.StatusMethodNotAllowed, "MethodNotAllowed", "renew: use POST")
	}
	if !id.Role.IsNode() {
		return nil, refuse(http.StatusForbidden, "Forbidden", "renewal needs the node's current certificate (an expired one cannot renew: join again with a token)")
	}
	body, err := io.ReadAll(http.MaxBytesReader(nil, r.Body, maxRequestSize))
	if err != nil {
		return nil, refuse(http.StatusRequestEntityTooLarge, "RequestEntityTooLarge", "renewal request larger than %d bytes", maxRequestSize)
	}
	var raw RenewRequest
	if err := json.Unmarshal(body, &raw); err != nil {
		return nil, refuse(http.StatusBadRequest, "BadRequest", "renewal request is not valid JSON: %v", err)
	}
	csr, node, err := pki.ParseCSR([]byte(raw.CSR))
	if err != nil {
		return nil, refuse(http.StatusBadRequest, "BadRequest", "renewal request csr: %v", err)
	}
	if node.Name != id.Name {
		return nil, refuse(http.StatusForbidden, "Forbidden", "%s %q may renew only its own certificate, not %q's", id.Role, id.Name, node.Name)
	}
	if cfg.Authorize != nil {
		if err := cfg.Authorize(r, id, node); err != nil {
			return nil, refuse(http.StatusForbidden, "Forbidden", "renewal refused: %v", err)
		}
	}
	ca, err := cfg.CA()
	if err != nil || ca == nil || ca.Key == nil {
		return nil, refuse(http.StatusServiceUnavailable, "ServiceUnavailable", "this server cannot issue certificates yet (cluster CA unavailable); try another server")
	}
	cert, err := ca.IssueNode(csr.PublicKey, id.Role, node, pki.IssueOptions{Validity: cfg.Validity, Now: cfg.Now()})
	if err != nil {
		return nil, err
	}
	return &Response{Certificate: string(pki.CertPEM(cert)), CA: string(pki.CertPEM(ca.Cert)), Role: id.Role}, nil
}

// RenewOptions says how to renew.
type RenewOptions struct {
	Addr  string            // host:port of a server's API
	CA    *x509.Certificate // the cluster CA
	Certs *pki.Certs        // the node's current certificate, the proof of who it is
	Role  pki.Role          // the node's role, unchanged by renewal
	Key   crypto.Signer     // a new key: keys rotate with certificates
	Node  pki.NodeRequest
	Path  string // RenewPath when empty
}

// Renew asks a server, over mutual TLS with the node's current
// certificate, for a certificate for Key. The caller swaps it in with
// Certs.Set once it has stored it.
func Renew(ctx context.Context, o RenewOptions) (*Result, error) {
	csr, err := pki.NewCSR(o.Key, o.Node)
	if err != nil {
		return nil, err
	}
	path := o.Path
	if path == "" {
		path = RenewPath
	}
	cfg := pki.ClientConfig(o.CA, o.Certs, pki.Policy{Roles: []pki.Role{pki.RoleServer}})
	out, err := post(ctx, cfg, o.Addr, path, RenewRequest{CSR: string(csr)})
	if err != nil {
		return nil, fmt.Errorf("renew: %w", err)
	}
	return checkResponse(out, pki.Fingerprint(o.CA), o.Role, o.Key, o.Node.Name)
}
