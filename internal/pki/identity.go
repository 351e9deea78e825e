package pki

import (
	"crypto/x509"
	"errors"
	"fmt"
	"net/url"
	"time"
)

// Role is what a certificate lets its holder be in the cluster.
type Role string

// The roles a certificate can carry.
const (
	RoleServer Role = "server"
	RoleWorker Role = "worker"
	RoleUser   Role = "user"
)

func (r Role) valid() bool { return r == RoleServer || r == RoleWorker || r == RoleUser }

// IsNode reports whether r is a server or worker role.
func (r Role) IsNode() bool { return r == RoleServer || r == RoleWorker }

// UserRole is a user's API role, carried as the certificate's Organization.
type UserRole string

// The API roles a user certificate can carry.
const (
	UserAdmin UserRole = "admin"
	UserEdit  UserRole = "edit"
	UserView  UserRole = "view"
)

func (r UserRole) valid() bool { return r == UserAdmin || r == UserEdit || r == UserView }

const (
	roleURIScheme = "orch"
	roleURIHost   = "role"
)

// RoleURI is the SAN that marks a certificate with role r.
func RoleURI(r Role) *url.URL {
	return &url.URL{Scheme: roleURIScheme, Host: roleURIHost, Path: "/" + string(r)}
}

// Identity is who a certificate says its holder is.
type Identity struct {
	Role     Role
	Name     string   // node or user name (Subject CommonName)
	UserRole UserRole // set only when Role is RoleUser
	Serial   string   // hexadecimal serial number, for audit logs and deny lists
	NotAfter time.Time
}

// ErrIdentity means a certificate does not carry a well-formed orch identity.
var ErrIdentity = errors.New("certificate carries no valid orch identity")

// IdentityOf reads the identity in cert. It does not verify the certificate's
// chain: callers verify first (VerifyPeer does both).
func IdentityOf(cert *x509.Certificate) (Identity, error) {
	var id Identity
	var roles []Role
	for _, u := range cert.URIs {
		if u.Scheme != roleURIScheme {
			continue
		}
		if u.Host != roleURIHost || len(u.Path) < 2 || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
			return id, fmt.Errorf("%w: unrecognised orch URI %q", ErrIdentity, u.String())
		}
		r := Role(u.Path[1:])
		if !r.valid() {
			return id, fmt.Errorf("%w: unknown role %q", ErrIdentity, r)
		}
		roles = append(roles, r)
	}
	if len(roles) != 1 {
		return id, fmt.Errorf("%w: want exactly one role URI, found %d", ErrIdentity, len(roles))
	}
	id.Role = roles[0]
	id.Name = cert.Subject.CommonName
	if id.Name == "" {
		return id, fmt.Errorf("%w: empty common name", ErrIdentity)
	}
	orgs := cert.Subject.Organization
	switch {
	case id.Role == RoleUser && len(orgs) != 1:
		return id, fmt.Errorf("%w: user certificate must carry exactly one role as Organization, found %d", ErrIdentity, len(orgs))
	case id.Role == RoleUser && !UserRole(orgs[0]).valid():
		return id, fmt.Errorf("%w: unknown user role %q", ErrIdentity, orgs[0])
	case id.Role == RoleUser:
		id.UserRole = UserRole(orgs[0])
	case len(orgs) != 0:
		return id, fmt.Errorf("%w: %s certificate must not carry an Organization", ErrIdentity, id.Role)
	}
	if cert.SerialNumber != nil {
		id.Serial = cert.SerialNumber.Text(16)
	}
	id.NotAfter = cert.NotAfter
	return id, nil
}
