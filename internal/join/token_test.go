package join

import (
	"errors"
	"strings"
	"testing"
	"time"

	"orch.dev/orch/internal/pki"
	"orch.dev/orch/internal/pki/pkitest"
)

func TestGenerateParse(t *testing.T) {
	ca := pkitest.NewCA(t, "c")
	now := time.Now()
	s, rec, err := Generate(pki.RoleWorker, time.Hour, true, ca.Cert, now)
	if err != nil {
		t.Fatal(err)
	}
	if len(s) != 120 || !strings.HasPrefix(s, "orch1.") {
		t.Errorf("token %q: length %d", s, len(s))
	}
	tok, err := Parse("  " + s + "\n")
	if err != nil {
		t.Fatal(err)
	}
	if tok.String() != s || tok.ID != rec.ID || tok.CAHash != pki.Fingerprint(ca.Cert) || rec.CAHash != tok.CAHash {
		t.Errorf("parsed %+v from %q, record %+v", tok, s, rec)
	}
	if rec.Role != pki.RoleWorker || !rec.SingleUse || !rec.ExpiresAt.Equal(now.Add(time.Hour)) || !rec.CreatedAt.Equal(now) {
		t.Errorf("record %+v", rec)
	}
	if strings.Contains(string(rec.SecretHash), tok.Secret) || len(rec.SecretHash) != 32 {
		t.Error("record holds the secret, or a hash of the wrong size")
	}
	if r := tok.Redacted(); strings.Contains(r, tok.Secret) || !strings.Contains(r, tok.ID) {
		t.Errorf("redacted %q", r)
	}
	s2, _, _ := Generate(pki.RoleWorker, time.Hour, true, ca.Cert, now)
	if s2 == s {
		t.Error("two tokens are identical")
	}
	for _, c := range []struct {
		role pki.Role
		ttl  time.Duration
	}{{pki.RoleUser, time.Hour}, {"", time.Hour}, {pki.RoleServer, 0}, {pki.RoleServer, -time.Second}} {
		if _, _, err := Generate(c.role, c.ttl, false, ca.Cert, now); err == nil {
			t.Errorf("Generate(%q, %v) succeeded", c.role, c.ttl)
		}
	}
}

const (
	goodID     = "0123456789abcdef"
	goodSecret = "00112233445566778899aabbccddeeff"
	goodCA     = "ffeeddccbbaa99887766554433221100ffeeddccbbaa99887766554433221100"
)

func TestParseErrors(t *testing.T) {
	cases := []struct {
		in, want string
	}{
		{"", "want 4 parts"},
		{"orch1." + goodID + "." + goodSecret, "got 3"},
		{"orch1." + goodID + "." + goodSecret + "." + goodCA + ".x", "got 5"},
		{"orch2." + goodID + "." + goodSecret + "." + goodCA, `version "orch2"`},
		{"SWMTKN-1-abc." + goodID + "." + goodSecret + "." + goodCA, "not an orch token"},
		{"orch1.0123." + goodSecret + "." + goodCA, "the id must be 16 lowercase hex digits (got 4"},
		{"orch1." + goodID + ".00112233445566778899AABBCCDDEEFF." + goodCA, "the secret must be 32"},
		{"orch1." + goodID + "." + goodSecret + "x." + goodCA, "the secret must be 32 lowercase hex digits (got 33"},
		{"orch1." + goodID + "." + goodSecret + "." + goodCA[:63], "the CA hash must be 64"},
		{"orch1." + goodID + "." + goodSecret + "." + goodCA[:63] + "g", "the CA hash"},
		{"orch1." + goodID + ". " + goodSecret[1:] + "." + goodCA, "the secret"},
	}
	for _, c := range cases {
		_, err := Parse(c.in)
		if !errors.Is(err, ErrTokenFormat) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Parse(%q) = %v, want an error containing %q", c.in, err, c.want)
		}
		if err != nil && strings.Contains(err.Error(), goodSecret[:20]) {
			t.Errorf("Parse(%q) error repeats the secret: %v", c.in, err)
		}
	}
	if _, err := Parse("orch1." + goodID + "." + goodSecret + "." + goodCA); err != nil {
		t.Errorf("good token: %v", err)
	}
}

func FuzzParseToken(f *testing.F) {
	for _, s := range []string{
		"orch1." + goodID + "." + goodSecret + "." + goodCA,
		" orch1." + goodID + "." + goodSecret + "." + goodCA + "\n",
		"orch1...",
		"orch1." + goodID + "." + goodSecret,
		"SWMTKN-1-3pu6hszjas19xyp7ghgosyx9k8atbfcr8p2is99znpy26u2lkl-1awxwuwd3z9j1z3puu7rcgdbx",
		"",
		"orch1.\x00.\xff.é",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		tok, err := Parse(s)
		if err != nil {
			if !errors.Is(err, ErrTokenFormat) {
				t.Fatalf("error not ErrTokenFormat: %v", err)
			}
			// An error does not depend on the secret: the same input
			// with another secret of the same shape gets the same error.
			if parts := strings.Split(strings.TrimSpace(s), "."); len(parts) == 4 {
				parts[2] = scramble(parts[2])
				if _, err2 := Parse(strings.Join(parts, ".")); err2 == nil || err2.Error() != err.Error() {
					t.Fatalf("error depends on the secret: %v / %v", err, err2)
				}
			}
			return
		}
		if tok.String() != strings.TrimSpace(s) {
			t.Fatalf("String() = %q, input %q", tok.String(), s)
		}
		again, err := Parse(tok.String())
		if err != nil || again != tok {
			t.Fatalf("round trip: %+v, %v", again, err)
		}
	})
}

// scramble maps each byte of s to a different byte that Parse treats
// alike: lowercase hex digits to other ones, anything else to 'z'.
func scramble(s string) string {
	const hexDigits = "0123456789abcdef"
	b := []byte(s)
	for i, c := range b {
		if k := strings.IndexByte(hexDigits, c); k >= 0 {
			b[i] = hexDigits[(k+7)%16]
		} else {
			b[i] = 'z'
			if c == 'z' {
				b[i] = 'y'
			}
		}
	}
	return string(b)
}
