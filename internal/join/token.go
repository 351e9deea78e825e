package join

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"orch.dev/orch/internal/pki"
)

const (
	tokenVersion = "orch1"
	idLen        = 16 // hex digits
	secretLen    = 32 // hex digits
	caHashLen    = 64 // hex digits
)

// ErrTokenFormat means a string is not a join token.
var ErrTokenFormat = errors.New("malformed join token")

// Token is a parsed join token.
type Token struct {
	ID     string
	Secret string
	CAHash string // pki.Fingerprint of the cluster CA
}

// String is the token as users copy it.
func (t Token) String() string {
	return tokenVersion + "." + t.ID + "." + t.Secret + "." + t.CAHash
}

// Redacted is the token with its secret masked, for logs and messages.
func (t Token) Redacted() string {
	return tokenVersion + "." + t.ID + ".<secret>." + t.CAHash
}

// Parse reads a join token. Surrounding white space is ignored (tokens are
// pasted); anything else out of place is an error that says what, without
// repeating the secret.
func Parse(s string) (Token, error) {
	s = strings.TrimSpace(s)
	parts := strings.Split(s, ".")
	if len(parts) != 4 {
		return Token{}, fmt.Errorf("%w: want 4 parts separated by dots, orch1.<id>.<secret>.<ca-hash>; got %d", ErrTokenFormat, len(parts))
	}
	if parts[0] != tokenVersion {
		v := parts[0]
		if len(v) > 16 {
			v = v[:16] + "..."
		}
		return Token{}, fmt.Errorf("%w: version %q is not %q (a token from a newer orch, or not an orch token)", ErrTokenFormat, v, tokenVersion)
	}
	t := Token{ID: parts[1], Secret: parts[2], CAHash: parts[3]}
	for _, f := range []struct {
		name string
		v    string
		n    int
	}{{"id", t.ID, idLen}, {"secret", t.Secret, secretLen}, {"CA hash", t.CAHash, caHashLen}} {
		if len(f.v) != f.n || !isLowerHex(f.v) {
			return Token{}, fmt.Errorf("%w: the %s must be %d lowercase hex digits (got %d characters)", ErrTokenFormat, f.name, f.n, len(f.v))
		}
	}
	return t, nil
}

func isLowerHex(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// Generate makes a join token for role (server or worker) valid for ttl
// from now, pinned to ca, and the record the cluster keeps of it. The token
// is shown once; the record is what gets proposed to Raft.
func Generate(role pki.Role, ttl time.Duration, singleUse bool, ca *x509.Certificate, now time.Time) (string, Record, error) {
	if !role.IsNode() {
		return "", Record{}, fmt.Errorf("join token role %q: want server or worker", role)
	}
	if ttl <= 0 {
		return "", Record{}, fmt.Errorf("join token ttl %v: must be positive", ttl)
	}
	t := Token{ID: randomHex(idLen), Secret: randomHex(secretLen), CAHash: pki.Fingerprint(ca)}
	rec := Record{
		ID:         t.ID,
		SecretHash: hashSecret(t.ID, t.Secret),
		Role:       role,
		CAHash:     t.CAHash,
		CreatedAt:  now,
		ExpiresAt:  now.Add(ttl),
		SingleUse:  singleUse,
	}
	return t.String(), rec, nil
}

func randomHex(digits int) string {
	b := make([]byte, digits/2)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// hashSecret is what a record keeps of a secret. The secret has 128 random
// bits, so a fast hash is enough: there is nothing to brute-force a guess
// from, and the domain and id bind the hash to this token.
func hashSecret(id, secret string) []byte {
	h := sha256.New()
	h.Write([]byte("orch join token v1\x00"))
	h.Write([]byte(id))
	h.Write([]byte{0})
	h.Write([]byte(secret))
	return h.Sum(nil)
}
