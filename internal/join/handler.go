package join

import (
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

// Path is where a server's API serves the join handshake (POST).
const Path = "/v1/join"

// maxRequestSize bounds a join request body; a request is a token and a
// CSR of well under 4 KiB.
const maxRequestSize = 64 << 10

// Request is what a joining node posts.
type Request struct {
	Token string   `json:"token"`
	Role  pki.Role `json:"role"` // the role the node means to join as
	CSR   string   `json:"csr"`  // PEM CERTIFICATE REQUEST (pki.NewCSR)
}

// Response is what it gets back.
type Response struct {
	Certificate string   `json:"certificate"` // PEM
	CA          string   `json:"ca"`          // PEM
	Role        pki.Role `json:"role"`
	// GossipKey is the key the cluster's gossip is encrypted with, for a
	// node that joins with a token (it does not know the cluster secret
	// the key is derived from). Set by the join handshake, not renewal.
	GossipKey []byte `json:"gossipKey,omitempty"`
}

// HandlerConfig configures Handler.
type HandlerConfig struct {
	// CA returns the cluster CA with its key; an error answers 503 (a
	// server that has not yet unsealed the CA).
	CA    func() (*pki.CA, error)
	Store Store
	// Validity of issued node certificates; pki.DefaultNodeValidity when zero.
	Validity time.Duration
	// Authorize, when set, may refuse a verified join: one asking for the
	// name of a node that already exists, or (for workers) for addresses
	// that are not the node's own; a worker certified for a server's IP or
	// the API's DNS name could pose as the API to tools that check host
	// names (curl), though never to orch, which checks roles.
	Authorize func(r *http.Request, rec Record, req pki.NodeRequest) error
	// GossipKey, when set, is sent to the joining node (Response.GossipKey).
	GossipKey func() ([]byte, error)
	Now       func() time.Time // time.Now when nil
	Logger    *slog.Logger     // slog.Default when nil
}

// refusal is a join refused with an HTTP status and a message for the
// joining node.
type refusal struct {
	code   int
	reason string
	msg    string
}

func (r *refusal) Error() string { return r.msg }

func refuse(code int, reason, format string, args ...any) *refusal {
	return &refusal{code: code, reason: reason, msg: fmt.Sprintf(format, args...)}
}

// A token that does not exist and a wrong secret get the same answer.
const msgNoToken = "join token rejected: unknown token or wrong secret"

// Handler serves the join handshake: it checks the token, issues a
// certificate for the CSR's key, name and addresses with the token's role,
// consumes a single-use token, and returns the certificate and the CA. It
// must be served over TLS with the server's node certificate and
// pki.ServerConfig with ClientCertOptional (a joining node has none).
func Handler(cfg HandlerConfig) http.Handler {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		resp, id, err := cfg.serve(r)
		if err != nil {
			var rf *refusal
			if !errors.As(err, &rf) {
				rf = refuse(http.StatusInternalServerError, "InternalError", "join failed: %v", err)
			}
			cfg.Logger.Warn("join refused", "remote", r.RemoteAddr, "token", id, "code", rf.code, "err", rf.msg)
			writeStatus(w, rf)
			return
		}
		cfg.Logger.Info("node joined", "remote", r.RemoteAddr, "token", id, "role", resp.Role)
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(resp)
	})
}

func (cfg *HandlerConfig) serve(r *http.Request) (*Response, string, error) {
	if r.Method != http.MethodPost {
		return nil, "", refuse(http.StatusMethodNotAllowed, "MethodNotAllowed", "join: use POST")
	}
	body, err := io.ReadAll(http.MaxBytesReader(nil, r.Body, maxRequestSize))
	if err != nil {
		return nil, "", refuse(http.StatusRequestEntityTooLarge, "RequestEntityTooLarge", "join request larger than %d bytes", maxRequestSize)
	}
	req, err := decodeRequest(body)
	if err != nil {
		return nil, "", err
	}
	id := req.token.ID
	ca, err := cfg.CA()
	if err != nil || ca == nil || ca.Key == nil {
		return nil, id, refuse(http.StatusServiceUnavailable, "ServiceUnavailable", "this server cannot issue certificates yet (cluster CA unavailable); try another server")
	}
	if fp := pki.Fingerprint(ca.Cert); req.token.CAHash != fp {
		return nil, id, refuse(http.StatusForbidden, "Forbidden", "join token is for another cluster: it pins CA %s, this cluster's is %s", req.token.CAHash, fp)
	}
	rec, err := cfg.Store.Get(r.Context(), id)
	if errors.Is(err, ErrUnknownToken) {
		return nil, id, refuse(http.StatusForbidden, "Forbidden", msgNoToken)
	}
	if err != nil {
		return nil, id, refuse(http.StatusServiceUnavailable, "ServiceUnavailable", "join token lookup failed: %v", err)
	}
	now := cfg.Now()
	if err := Verify(rec, req.token.Secret, now); errors.Is(err, ErrBadSecret) {
		return nil, id, refuse(http.StatusForbidden, "Forbidden", msgNoToken)
	} else if err != nil {
		return nil, id, refuse(http.StatusForbidden, "Forbidden", "join token rejected: %v", err)
	}
	if rec.Role != req.role {
		return nil, id, refuse(http.StatusForbidden, "Forbidden", "join token admits a %s, not a %s", rec.Role, req.role)
	}
	if cfg.Authorize != nil {
		if err := cfg.Authorize(r, rec, req.node); err != nil {
			return nil, id, refuse(http.StatusForbidden, "Forbidden", "join refused: %v", err)
		}
	}
	cert, err := ca.IssueNode(req.csr.PublicKey, rec.Role, req.node, pki.IssueOptions{Validity: cfg.Validity, Now: now})
	if err != nil {
		return nil, id, err
	}
	// Consumed only once everything else succeeded: a refused join does
	// not burn a single-use token, and only the winner of a race gets the
	// certificate it was issued.
	if rec.SingleUse {
		if err := cfg.Store.Consume(r.Context(), id, req.node.Name, now); errors.Is(err, ErrUsed) || errors.Is(err, ErrRevoked) {
			return nil, id, refuse(http.StatusForbidden, "Forbidden", "join token rejected: %v", err)
		} else if err != nil {
			return nil, id, refuse(http.StatusServiceUnavailable, "ServiceUnavailable", "recording the use of the join token failed: %v", err)
		}
	}
	resp := &Response{Certificate: string(pki.CertPEM(cert)), CA: string(pki.CertPEM(ca.Cert)), Role: rec.Role}
	if cfg.GossipKey != nil {
		if resp.GossipKey, err = cfg.GossipKey(); err != nil {
			return nil, id, err
		}
	}
	return resp, id, nil
}

type request struct {
	token Token
	role  pki.Role
	csr   *x509.CertificateRequest
	node  pki.NodeRequest
}

// decodeRequest parses and checks everything in a request body that can be
// checked without the cluster's state.
func decodeRequest(body []byte) (request, error) {
	var raw Request
	if err := json.Unmarshal(body, &raw); err != nil {
		return request{}, refuse(http.StatusBadRequest, "BadRequest", "join request is not valid JSON: %v", err)
	}
	tok, err := Parse(raw.Token)
	if err != nil {
		return request{}, refuse(http.StatusBadRequest, "BadRequest", "%v", err)
	}
	if !raw.Role.IsNode() {
		return request{}, refuse(http.StatusBadRequest, "BadRequest", "join request role %q: want server or worker", raw.Role)
	}
	csr, node, err := pki.ParseCSR([]byte(raw.CSR))
	if err != nil {
		return request{}, refuse(http.StatusBadRequest, "BadRequest", "join request csr: %v", err)
	}
	return request{token: tok, role: raw.Role, csr: csr, node: node}, nil
}

// status is the shape of a Kubernetes Status, the API's error body.
type status struct {
	Kind       string `json:"kind"`
	APIVersion string `json:"apiVersion"`
	Status     string `json:"status"`
	Message    string `json:"message"`
	Reason     string `json:"reason"`
	Code       int    `json:"code"`
}

func writeStatus(w http.ResponseWriter, rf *refusal) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(rf.code)
	json.NewEncoder(w).Encode(status{Kind: "Status", APIVersion: "v1", Status: "Failure", Message: rf.msg, Reason: rf.reason, Code: rf.code})
}
