package agent

import (
	"bytes"
	"crypto/subtle"
	"fmt"
	"io"
	"net/http"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"orch.dev/orch/api"
	"orch.dev/orch/internal/join"
	"orch.dev/orch/internal/pki"
)

// unauthenticatedPaths answer without credentials: health and version as
// in Kubernetes, the join handshake (a joining node has only its token,
// which the handler checks) and certificate renewal (whose handler
// requires the node's current certificate itself).
var unauthenticatedPaths = map[string]bool{
	"/healthz": true, "/livez": true, "/readyz": true, "/version": true,
	join.Path: true, join.RenewPath: true,
}

// authDisabled reports whether this server runs without authentication:
// only with --insecure (loopback only). Every caller is then an admin.
func (a *Agent) authDisabled() bool { return a.cfg.Insecure }

// insecureCaller is every caller of a server with authentication off.
var insecureCaller = Principal{Name: "anonymous", Role: AccessAdmin}

// guard authenticates and authorises every request and records the audited
// ones: who the caller is (a verified client certificate, else a bearer
// token), whether its role allows the request (authz.go), and, for writes
// and operator actions, one line in the audit log whatever the outcome.
func (a *Agent) guard(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		at := attributesOf(r)
		rec := &statusRecorder{ResponseWriter: w, code: http.StatusOK}
		var p Principal
		var err error
		switch {
		case unauthenticatedPaths[r.URL.Path]:
			p = anonymous
		case a.authDisabled():
			p = insecureCaller
		default:
			if p, err = a.authenticate(r); err != nil {
				a.logger.Warn("unauthenticated request refused", "method", r.Method, "path", r.URL.Path, "remote", r.RemoteAddr, "reason", err.Error())
			} else {
				err = a.authorizeRequest(p, at, r)
			}
		}
		if err != nil {
			writeError(rec, err)
		} else {
			next.ServeHTTP(rec, withAudit(withPrincipal(r, p), at))
		}
		if at.audited() && !(r.Header.Get(forwardedHeader) != "" && (p.Role == AccessServer || p == clusterAdmin)) {
			// A forwarded write was recorded by the server that received it.
			a.audit.record(p, at, rec.code, r)
		}
	})
}

// errUnauthenticated is the 401 every credential failure answers with;
// the reason is logged, and only what the caller may know is said.
func errUnauthenticated(msg string) error { return apierrors.NewUnauthorized(msg) }

// authenticate finds who made r: a verified client certificate wins, then
// a bearer token (the cluster secret, or a user token checked against its
// record).
func (a *Agent) authenticate(r *http.Request) (Principal, error) {
	if id, ok := pki.PeerIdentity(r.TLS); ok {
		if p, ok := principalOfCert(id); ok {
			return p, nil
		}
		return Principal{}, errUnauthenticated("the client certificate carries no usable orch identity")
	}
	h := r.Header.Get("Authorization")
	token, ok := strings.CutPrefix(h, "Bearer ")
	if !ok || token == "" {
		return Principal{}, errUnauthenticated("a client certificate or a bearer token is required")
	}
	if secret := a.clusterSecretValue(); secret != "" && subtle.ConstantTimeCompare([]byte(token), []byte(secret)) == 1 {
		return clusterAdmin, nil
	}
	if strings.HasPrefix(token, userTokenPrefix+".") {
		return a.authenticateUserToken(r.Context(), token)
	}
	return Principal{}, errUnauthenticated("invalid bearer token")
}

// authorizeRequest applies authorize, refusing with a 403 that names the
// caller, the verb and the resource.
func (a *Agent) authorizeRequest(p Principal, at *requestAttrs, r *http.Request) error {
	if p.Role == AccessWorker && at.kind == api.Node && at.verb == "create" {
		// The Node a worker creates must be itself; the name is in the body.
		b, err := io.ReadAll(http.MaxBytesReader(nil, r.Body, api.MaxRequestBytes))
		if err != nil {
			return apierrors.NewBadRequest("reading request body: " + err.Error())
		}
		r.Body, r.ContentLength = io.NopCloser(bytes.NewReader(b)), int64(len(b))
		if obj, err := decodeBody(api.Node, r, b); err == nil {
			at.objectName = obj.GetName()
		}
	}
	reason := authorize(p, at, a.fsm.View())
	if reason == "" {
		return nil
	}
	a.logger.Warn("request forbidden", "user", p.Name, "role", p.Role, "verb", at.verb, "resource", at.resource,
		"namespace", at.namespace, "name", at.name, "remote", r.RemoteAddr, "reason", reason)
	return forbidden(p, at, reason)
}

func forbidden(p Principal, at *requestAttrs, reason string) error {
	where := ""
	if at.namespace != "" {
		where = fmt.Sprintf(" in namespace %q", at.namespace)
	}
	what := at.resource
	if at.name != "" {
		what += fmt.Sprintf(" %q", at.name)
	}
	who := "user"
	if p.Role == AccessWorker || p.Role == AccessServer {
		who = "node"
	}
	msg := fmt.Sprintf("%s %q (role %s) cannot %s %s%s: %s", who, p.Name, p.Role, at.verb, what, where, reason)
	return &apierrors.StatusError{ErrStatus: metav1.Status{Status: metav1.StatusFailure, Code: http.StatusForbidden,
		Reason: metav1.StatusReasonForbidden, Message: msg,
		Details: &metav1.StatusDetails{Kind: at.resource, Name: at.name}}}
}

// authorizePeer adds this server's credentials to a server-to-server call.
func (a *Agent) authorizePeer(r *http.Request) {
	if a.cfg.Token != "" {
		r.Header.Set("Authorization", "Bearer "+a.cfg.Token)
	}
}
