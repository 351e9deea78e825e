package agent

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"orch.dev/orch/api"
	"orch.dev/orch/fsm"
	"orch.dev/orch/internal/join"
	"orch.dev/orch/internal/pki"
)

// The token API (admins only, authz.go):
//
//	POST   /v1/tokens       create: TokenRequest -> TokenCreated (the only time the token is shown)
//	GET    /v1/tokens       list: []TokenInfo
//	DELETE /v1/tokens/{id}  revoke: TokenInfo
//
// Records are Secrets in orch-system (tokens_record.go), written through
// the Secret API as this server, so a follower forwards them to the leader
// like any write.

// TokenRequest is the body of POST /v1/tokens.
type TokenRequest struct {
	Role      string `json:"role"`           // worker or server (join tokens); admin, edit or view (user tokens)
	TTL       string `json:"ttl"`            // Go duration, e.g. 24h; 24h when empty
	SingleUse bool   `json:"singleUse"`      // join tokens only
	User      string `json:"user,omitempty"` // user tokens only (required)
}

// TokenCreated answers a create: the token and what the record says.
type TokenCreated struct {
	Token string `json:"token"`
	TokenInfo
}

// DefaultTokenTTL is a token's lifetime when the request gives none.
const DefaultTokenTTL = 24 * time.Hour

var tokenResource = schema.GroupResource{Resource: "tokens"}

func (a *Agent) registerTokens(mux *http.ServeMux) {
	mux.HandleFunc("POST /v1/tokens", a.serveTokenCreate)
	mux.HandleFunc("GET /v1/tokens", a.serveTokenList)
	mux.HandleFunc("DELETE /v1/tokens/{id}", a.serveTokenRevoke)
}

// checkTokenRequest validates a create; errors name the orchctl flag.
func checkTokenRequest(req *TokenRequest) (time.Duration, error) {
	role := AccessRole(req.Role)
	join := pki.Role(req.Role).IsNode()
	if !join && !role.userRole() {
		return 0, apierrors.NewBadRequest(fmt.Sprintf("--role %q: want worker or server (join tokens), or admin, edit or view (user tokens)", req.Role))
	}
	ttl := DefaultTokenTTL
	if req.TTL != "" {
		d, err := time.ParseDuration(req.TTL)
		if err != nil || d <= 0 {
			return 0, apierrors.NewBadRequest(fmt.Sprintf("--ttl %q: want a positive duration such as 24h or 30m", req.TTL))
		}
		ttl = d
	}
	switch {
	case join && req.User != "":
		return 0, apierrors.NewBadRequest("--user: only user tokens (admin, edit, view) name a user")
	case !join && req.SingleUse:
		return 0, apierrors.NewBadRequest("--single-use: only join tokens (worker, server) can be single-use")
	case !join && !nameRE.MatchString(req.User):
		return 0, apierrors.NewBadRequest(fmt.Sprintf("--user %q: required for %s tokens; a lowercase name (letters, digits, '-' and '.')", req.User, req.Role))
	}
	return ttl, nil
}

func (a *Agent) serveTokenCreate(w http.ResponseWriter, r *http.Request) {
	body, err := readBody(w, r)
	if err != nil {
		writeError(w, err)
		return
	}
	var req TokenRequest
	if err := json.Unmarshal(body, &req); err != nil {
		writeError(w, apierrors.NewBadRequest("invalid token request: "+err.Error()))
		return
	}
	ttl, err := checkTokenRequest(&req)
	if err != nil {
		writeError(w, err)
		return
	}
	now := time.Now()
	var token string
	var rec tokenRecord
	if pki.Role(req.Role).IsNode() {
		ca, err := a.clusterCACert(a.fsm.View())
		if err != nil {
			writeError(w, err)
			return
		}
		token, rec.Record, err = join.Generate(pki.Role(req.Role), ttl, req.SingleUse, ca, now)
		if err != nil {
			writeError(w, apierrors.NewBadRequest(err.Error()))
			return
		}
	} else {
		t := newUserToken()
		token = t.String()
		rec.Record = join.Record{ID: t.id, SecretHash: hashUserSecret(t.id, t.secret), Role: pki.Role(req.Role), CreatedAt: now, ExpiresAt: now.Add(ttl)}
		rec.User = req.User
	}
	rec.CreatedBy = PrincipalOf(r).Name
	noteAuditName(r, rec.ID)
	if err := a.ensureSystemNamespace(r.Context()); err != nil {
		writeError(w, err)
		return
	}
	if err := a.serverRequest(r.Context(), http.MethodPost, api.Secret.Path(SystemNamespace), rec.toSecret()); err != nil {
		writeError(w, err)
		return
	}
	a.logger.Info("token created", "id", rec.ID, "role", rec.Role, "user", rec.User, "by", rec.CreatedBy, "expires", rec.ExpiresAt.UTC())
	writeJSON(w, http.StatusCreated, TokenCreated{Token: token, TokenInfo: rec.info(now)})
}

// clusterCACert is the cluster CA certificate join tokens pin, from
// orch-system/cluster-ca (created at bootstrap).
func (a *Agent) clusterCACert(view *fsm.View) (*x509.Certificate, error) {
	s, _, err := a.readSecret(view, SystemNamespace, ClusterCASecret)
	if err == nil && (s == nil || len(s.Data["ca.crt"]) == 0) {
		err = errors.New("no " + SystemNamespace + "/" + ClusterCASecret)
	}
	var cert *x509.Certificate
	if err == nil {
		cert, err = pki.ParseCertPEM(s.Data["ca.crt"])
	}
	if err != nil {
		a.logger.Warn("join token refused: cluster CA not ready", "err", err)
		return nil, apierrors.NewServiceUnavailable("cluster CA not ready: join tokens pin the cluster CA, which this server does not have yet; retry")
	}
	return cert, nil
}

func (a *Agent) serveTokenList(w http.ResponseWriter, r *http.Request) {
	view, err := a.readView(r.Context(), r.URL.Query())
	if err != nil {
		writeError(w, err)
		return
	}
	now := time.Now()
	out := []TokenInfo{}
	view.List(api.Secret, SystemNamespace, func(rec *fsm.Record) bool {
		if rec.Obj.(*corev1.Secret).Type != SecretTypeToken {
			return true
		}
		s, err := a.secrets().decryptSecret(rec.Obj.(*corev1.Secret))
		if err == nil {
			var t tokenRecord
			if t, err = tokenRecordOf(s); err == nil {
				out = append(out, t.info(now))
			}
		}
		if err != nil {
			a.logger.Warn("unreadable token record", "name", rec.Obj.GetName(), "err", err)
		}
		return true
	})
	slices.SortFunc(out, func(x, y TokenInfo) int {
		if c := x.CreatedAt.Compare(y.CreatedAt); c != 0 {
			return c
		}
		return strings.Compare(x.ID, y.ID)
	})
	writeJSON(w, http.StatusOK, out)
}

func (a *Agent) serveTokenRevoke(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if len(id) != userTokenIDLen || !isLowerHex(id) {
		writeError(w, apierrors.NewBadRequest(fmt.Sprintf("token id %q: want %d lowercase hex digits (orchctl operator token list)", id, userTokenIDLen)))
		return
	}
	now := time.Now()
	var rec tokenRecord
	err := a.updateTokenRecord(r.Context(), id, func(t *tokenRecord) (bool, error) {
		rec = *t
		if !t.RevokedAt.IsZero() {
			return false, nil
		}
		t.RevokedAt = now
		rec = *t
		return true, nil
	})
	if err != nil {
		writeError(w, err)
		return
	}
	a.logger.Info("token revoked", "id", id, "by", PrincipalOf(r).Name)
	writeJSON(w, http.StatusOK, rec.info(now))
}

// updateTokenRecord changes token id's record with change, compare-and-set
// on the version it read (read linearizably): of two concurrent changes,
// the second sees the first's result. change returns false to write nothing.
func (a *Agent) updateTokenRecord(ctx context.Context, id string, change func(*tokenRecord) (bool, error)) error {
	for attempt := 1; ; attempt++ {
		if err := a.linearizableRead(ctx); err != nil {
			return err
		}
		s, version, err := a.readSecret(a.fsm.View(), SystemNamespace, tokenSecretName(id))
		if err != nil {
			return err
		}
		if s == nil {
			return apierrors.NewNotFound(tokenResource, id)
		}
		t, err := tokenRecordOf(s)
		if err != nil {
			return err
		}
		write, err := change(&t)
		if err != nil || !write {
			return err
		}
		next := t.toSecret()
		next.ResourceVersion = strconv.FormatUint(version, 10)
		err = a.serverRequest(ctx, http.MethodPut, api.Secret.ObjectPath(SystemNamespace, next.Name), next)
		if apierrors.IsConflict(err) && attempt < 16 {
			continue
		}
		return err
	}
}

// ensureSystemNamespace creates orch-system when it does not exist yet.
func (a *Agent) ensureSystemNamespace(ctx context.Context) error {
	if a.fsm.View().Get(api.Namespace, "", SystemNamespace) != nil {
		return nil
	}
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: SystemNamespace}}
	api.Namespace.SetTypeMeta(ns)
	if err := a.serverRequest(ctx, http.MethodPost, api.Namespace.Path(""), ns); err != nil && !apierrors.IsAlreadyExists(err) {
		return err
	}
	return nil
}

// serverRequest makes an API write as this server, through the same
// handlers as a client's (validation, Secret sealing, forwarding to the
// leader from a follower). A non-2xx answer is returned as its Status.
func (a *Agent) serverRequest(ctx context.Context, method, path string, obj any) error {
	body, err := json.Marshal(obj)
	if err != nil {
		return err
	}
	r, err := http.NewRequestWithContext(ctx, method, path, bytes.NewReader(body))
	if err != nil {
		return err
	}
	r.Header.Set("Content-Type", "application/json")
	r.Header.Set(requestIDHeader, "server-"+randomHex(32))
	r.RemoteAddr = "internal"
	r = withPrincipal(r, Principal{Name: a.cfg.Name, Role: AccessServer})
	w := &bufferedResponse{header: http.Header{}}
	a.serveResource(w, r)
	if w.code >= 200 && w.code < 300 {
		return nil
	}
	var st metav1.Status
	if err := json.Unmarshal(w.body.Bytes(), &st); err != nil || st.Code == 0 {
		return apierrors.NewInternalError(fmt.Errorf("%s %s: status %d", method, path, w.code))
	}
	return &apierrors.StatusError{ErrStatus: st}
}
