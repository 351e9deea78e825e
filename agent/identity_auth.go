package agent

import (
	"context"
	"net/http"

	"orch.dev/orch/internal/pki"
)

// AccessRole is what an authenticated caller may do through the API
// (authz.go has the rules of each).
type AccessRole string

// The access roles. Users are admin, edit or view; a worker is a node and
// acts for itself only; a server is another server of this cluster.
const (
	AccessAdmin  AccessRole = "admin"
	AccessEdit   AccessRole = "edit"
	AccessView   AccessRole = "view"
	AccessWorker AccessRole = "worker"
	AccessServer AccessRole = "server"
)

// userRole reports whether r is a role a user (certificate or token) may hold.
func (r AccessRole) userRole() bool { return r == AccessAdmin || r == AccessEdit || r == AccessView }

// privileged roles see and change everything, orch-system included.
func (r AccessRole) privileged() bool { return r == AccessAdmin || r == AccessServer }

// Principal is who made an API request.
type Principal struct {
	Name string
	Role AccessRole
}

// The principals that do not come from a certificate or a user token.
var (
	// clusterAdmin is whoever presents the cluster secret as a bearer token.
	clusterAdmin = Principal{Name: "cluster-admin", Role: AccessAdmin}
	// anonymous is every caller of a server running with authentication
	// off (--insecure, loopback only), and the caller of the paths that need
	// no credentials (health, version, join).
	anonymous = Principal{Name: "anonymous"}
)

// principalOfCert maps a verified client certificate's identity to a
// principal: servers and workers by role, users by their Organization.
func principalOfCert(id pki.Identity) (Principal, bool) {
	switch id.Role {
	case pki.RoleServer:
		return Principal{Name: id.Name, Role: AccessServer}, true
	case pki.RoleWorker:
		return Principal{Name: id.Name, Role: AccessWorker}, true
	case pki.RoleUser:
		if r := AccessRole(id.UserRole); r.userRole() {
			return Principal{Name: id.Name, Role: r}, true
		}
	}
	return Principal{}, false
}

type principalKey struct{}

func withPrincipal(r *http.Request, p Principal) *http.Request {
	return r.WithContext(context.WithValue(r.Context(), principalKey{}, p))
}

// PrincipalOf is the authenticated caller of r (anonymous when the request
// did not pass the authentication middleware).
func PrincipalOf(r *http.Request) Principal {
	if p, ok := r.Context().Value(principalKey{}).(Principal); ok {
		return p
	}
	return anonymous
}
