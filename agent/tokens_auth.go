package agent

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"orch.dev/orch/api"
)

// User API tokens: orchu.<id>.<secret>, 55 characters.
//
//	orchu   format and version ("u" for user; join tokens are orch1.)
//	id      16 lowercase hex digits (64 random bits): names the token in
//	        listings, audit lines and revocation; not secret
//	secret  32 lowercase hex digits (128 random bits)
//
// The record keeps SHA-256 of a domain string, the id and the secret; 128
// random bits need no slow hash.
const (
	userTokenPrefix    = "orchu"
	userTokenIDLen     = 16
	userTokenSecretLen = 32
)

// errUserTokenFormat means a bearer token is not a well-formed user token.
var errUserTokenFormat = errors.New("malformed user token")

type userToken struct{ id, secret string }

func (t userToken) String() string { return userTokenPrefix + "." + t.id + "." + t.secret }

// parseUserToken reads a user token. Errors never repeat the secret.
func parseUserToken(s string) (userToken, error) {
	rest, ok := strings.CutPrefix(s, userTokenPrefix+".")
	if !ok {
		return userToken{}, fmt.Errorf("%w: want %s.<id>.<secret>", errUserTokenFormat, userTokenPrefix)
	}
	id, secret, ok := strings.Cut(rest, ".")
	if !ok {
		return userToken{}, fmt.Errorf("%w: want %s.<id>.<secret>", errUserTokenFormat, userTokenPrefix)
	}
	if len(id) != userTokenIDLen || !isLowerHex(id) {
		return userToken{}, fmt.Errorf("%w: the id must be %d lowercase hex digits", errUserTokenFormat, userTokenIDLen)
	}
	if len(secret) != userTokenSecretLen || !isLowerHex(secret) {
		return userToken{}, fmt.Errorf("%w: the secret must be %d lowercase hex digits", errUserTokenFormat, userTokenSecretLen)
	}
	return userToken{id: id, secret: secret}, nil
}

func isLowerHex(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

func newUserToken() userToken {
	return userToken{id: randomHex(userTokenIDLen), secret: randomHex(userTokenSecretLen)}
}

func randomHex(digits int) string {
	b := make([]byte, digits/2)
	rand.Read(b)
	return hex.EncodeToString(b)
}

func hashUserSecret(id, secret string) []byte {
	h := sha256.New()
	h.Write([]byte("orch user token v1\x00"))
	h.Write([]byte(id))
	h.Write([]byte{0})
	h.Write([]byte(secret))
	return h.Sum(nil)
}

// tokenCache keeps parsed token records by id, each with the Raft index of
// the Secret it was read from: a request costs a lookup in the local state,
// a hash and a constant-time compare, and a revocation or use is seen as
// soon as this server applies it (the version changes).
type tokenCache struct {
	mu   sync.Mutex
	byID map[string]cachedToken
}

type cachedToken struct {
	version uint64
	rec     tokenRecord
}

// tokenCacheMax bounds the cache; it is cleared when full (records are
// re-read on demand).
const tokenCacheMax = 4096

// tokenRecord returns the record of token id from the local state, or
// ok=false when there is none (or it does not parse).
func (a *Agent) tokenRecord(id string) (tokenRecord, bool) {
	view := a.fsm.View()
	rec := view.Get(api.Secret, SystemNamespace, tokenSecretName(id))
	if rec == nil {
		return tokenRecord{}, false
	}
	c := &a.tokens
	c.mu.Lock()
	hit, ok := c.byID[id]
	c.mu.Unlock()
	if ok && hit.version == rec.Version {
		return hit.rec, true
	}
	s, _, err := a.readSecret(view, SystemNamespace, tokenSecretName(id))
	if err != nil || s == nil {
		return tokenRecord{}, false
	}
	t, err := tokenRecordOf(s)
	if err != nil {
		a.logger.Warn("unreadable token record", "err", err)
		return tokenRecord{}, false
	}
	c.mu.Lock()
	if c.byID == nil || len(c.byID) >= tokenCacheMax {
		c.byID = map[string]cachedToken{}
	}
	c.byID[id] = cachedToken{version: rec.Version, rec: t}
	c.mu.Unlock()
	return t, true
}

// authenticateUserToken checks a user token against its record. Unknown
// ids and wrong secrets get one answer, so probing ids reveals nothing. A
// token this server does not know yet is looked up again after a
// linearizable read, so a token works on every server as soon as it was
// created.
func (a *Agent) authenticateUserToken(ctx context.Context, s string) (Principal, error) {
	tok, err := parseUserToken(s)
	if err != nil {
		return Principal{}, errUnauthenticated(err.Error())
	}
	rec, ok := a.tokenRecord(tok.id)
	if !ok {
		rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		if a.linearizableRead(rctx) == nil {
			rec, ok = a.tokenRecord(tok.id)
		}
		cancel()
	}
	if !ok || !rec.isUser() || subtle.ConstantTimeCompare(hashUserSecret(tok.id, tok.secret), rec.SecretHash) != 1 {
		return Principal{}, errUnauthenticated("user token rejected: unknown token or wrong secret")
	}
	now := time.Now()
	switch {
	case !rec.RevokedAt.IsZero():
		return Principal{}, errUnauthenticated(fmt.Sprintf("user token %s was revoked at %s", tok.id, rec.RevokedAt.UTC().Format(time.RFC3339)))
	case !now.Before(rec.ExpiresAt):
		return Principal{}, errUnauthenticated(fmt.Sprintf("user token %s expired at %s", tok.id, rec.ExpiresAt.UTC().Format(time.RFC3339)))
	}
	return Principal{Name: rec.User, Role: AccessRole(rec.Role)}, nil
}
