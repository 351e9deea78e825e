package agent

import (
	"errors"
	"strings"
	"testing"
	"time"

	"orch.dev/orch/internal/join"
	"orch.dev/orch/internal/pki"
)

func TestParseUserToken(t *testing.T) {
	good := newUserToken()
	if got, err := parseUserToken(good.String()); err != nil || got != good {
		t.Fatalf("round trip: %v %v", got, err)
	}
	if len(good.String()) != 55 {
		t.Fatalf("token length %d", len(good.String()))
	}
	id, secret := strings.Repeat("a", 16), strings.Repeat("b", 32)
	for _, bad := range []string{
		"", "orchu", "orchu.", "orchu." + id, "orchu." + id + ".",
		"orchu." + id + "." + secret + ".x",           // a fourth part
		"orch1." + id + "." + secret,                  // a join token's prefix
		"orchu." + strings.ToUpper(id) + "." + secret, // upper case
		"orchu." + id[:15] + "." + secret,             // short id
		"orchu." + id + "." + secret[:31],             // short secret
		"orchu." + id + "." + secret[:31] + "g",       // not hex
		" orchu." + id + "." + secret,                 // white space
		"orchu." + id + "." + secret + "\n",           // white space
		"orchu." + id + "." + strings.Repeat("é", 16), // not ASCII
	} {
		if _, err := parseUserToken(bad); !errors.Is(err, errUserTokenFormat) {
			t.Errorf("%q: accepted (%v)", bad, err)
		}
	}
}

// FuzzParseUserToken: the parser never panics, accepts only tokens that
// print back the same, and never repeats a secret in an error.
func FuzzParseUserToken(f *testing.F) {
	f.Add(newUserToken().String())
	f.Add("orchu." + strings.Repeat("0", 16) + "." + strings.Repeat("f", 32))
	f.Add("orchu..")
	f.Add("orchu.0123456789abcdef.zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz")
	f.Add("orch1.0123456789abcdef.0123456789abcdef0123456789abcdef." + strings.Repeat("0", 64))
	f.Fuzz(func(t *testing.T, s string) {
		tok, err := parseUserToken(s)
		if err != nil {
			if parts := strings.Split(s, "."); len(parts) == 3 && len(parts[2]) >= 8 && strings.Contains(err.Error(), parts[2]) {
				t.Fatalf("error repeats the secret: %v", err)
			}
			return
		}
		if tok.String() != s {
			t.Fatalf("accepted %q, prints %q", s, tok.String())
		}
	})
}

func TestTokenRecordsRoundTripThroughSecrets(t *testing.T) {
	now := time.Date(2026, 11, 27, 10, 0, 0, 123, time.UTC)
	tok := newUserToken()
	rec := tokenRecord{Record: join.Record{ID: tok.id, SecretHash: hashUserSecret(tok.id, tok.secret), Role: "view",
		CreatedAt: now, ExpiresAt: now.Add(time.Hour), RevokedAt: now.Add(time.Minute)}, User: "alice", CreatedBy: "cluster-admin"}
	s := rec.toSecret()
	if s.Namespace != SystemNamespace || s.Name != "token-"+tok.id || s.Type != SecretTypeToken {
		t.Fatalf("secret %s/%s type %s", s.Namespace, s.Name, s.Type)
	}
	for k, v := range s.Data {
		if strings.Contains(string(v), tok.secret) {
			t.Fatalf("record field %s holds the secret", k)
		}
	}
	back, err := tokenRecordOf(s)
	if err != nil {
		t.Fatal(err)
	}
	if back.ID != rec.ID || back.User != "alice" || back.Role != "view" || !back.ExpiresAt.Equal(rec.ExpiresAt) ||
		!back.RevokedAt.Equal(rec.RevokedAt) || !back.UsedAt.IsZero() || string(back.SecretHash) != string(rec.SecretHash) || !back.isUser() {
		t.Fatalf("round trip: %+v, want %+v", back, rec)
	}
	if i := back.info(now); i.Status != "revoked" || i.RevokedAt == nil {
		t.Fatalf("info: %+v", i)
	}
	joinRec := tokenRecord{Record: join.Record{ID: "0123456789abcdef", SecretHash: []byte{1}, Role: pki.RoleWorker,
		CreatedAt: now, ExpiresAt: now.Add(time.Hour), SingleUse: true, UsedAt: now, UsedBy: "n1"}}
	if back, err := tokenRecordOf(joinRec.toSecret()); err != nil || back.isUser() || !back.SingleUse || back.UsedBy != "n1" {
		t.Fatalf("join record: %+v %v", back, err)
	}
	if i := joinRec.info(now); i.Status != "used" {
		t.Fatalf("info: %+v", i)
	}
	for name, breakIt := range map[string]func(m map[string][]byte){
		"no hash":      func(m map[string][]byte) { delete(m, tkSecretHash) },
		"bad role":     func(m map[string][]byte) { m[tkRole] = []byte("root") },
		"no user":      func(m map[string][]byte) { delete(m, tkUser) },
		"bad expiry":   func(m map[string][]byte) { m[tkExpiresAt] = []byte("tomorrow") },
		"id mismatch":  func(m map[string][]byte) { m[tkID] = []byte("ffffffffffffffff") },
		"no createdAt": func(m map[string][]byte) { delete(m, tkCreatedAt) },
	} {
		s := rec.toSecret()
		breakIt(s.Data)
		if _, err := tokenRecordOf(s); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
