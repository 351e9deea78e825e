package join

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"orch.dev/orch/internal/pki"
	"orch.dev/orch/internal/pki/pkitest"
)

func TestVerify(t *testing.T) {
	ca := pkitest.NewCA(t, "c")
	now := time.Now()
	s, rec, err := Generate(pki.RoleServer, time.Hour, true, ca.Cert, now)
	if err != nil {
		t.Fatal(err)
	}
	tok, _ := Parse(s)
	used := rec
	used.UsedAt, used.UsedBy = now, "s2"
	multi := rec
	multi.SingleUse = false
	multi.UsedAt = now // ignored: not single-use
	revoked := rec
	revoked.RevokedAt = now
	noHash := rec
	noHash.SecretHash = nil
	otherID := rec
	otherID.ID = "ffffffffffffffff" // the hash is bound to the id

	cases := []struct {
		name   string
		rec    Record
		secret string
		at     time.Time
		want   error
	}{
		{"good", rec, tok.Secret, now, nil},
		{"just before expiry", rec, tok.Secret, rec.ExpiresAt.Add(-time.Nanosecond), nil},
		{"at expiry", rec, tok.Secret, rec.ExpiresAt, ErrExpired},
		{"wrong secret", rec, goodSecret, now, ErrBadSecret},
		{"empty secret", rec, "", now, ErrBadSecret},
		{"wrong secret, expired", rec, goodSecret, rec.ExpiresAt.Add(time.Hour), ErrBadSecret},
		{"used", used, tok.Secret, now, ErrUsed},
		{"multi-use, used before", multi, tok.Secret, now, nil},
		{"revoked", revoked, tok.Secret, now, ErrRevoked},
		{"record without hash", noHash, tok.Secret, now, ErrBadSecret},
		{"hash of another id", otherID, tok.Secret, now, ErrBadSecret},
	}
	for _, c := range cases {
		if err := Verify(c.rec, c.secret, c.at); !errors.Is(err, c.want) || (c.want == nil) != (err == nil) {
			t.Errorf("%s: got %v, want %v", c.name, err, c.want)
		}
	}
}

func TestMemStoreConsumeOnce(t *testing.T) {
	ca := pkitest.NewCA(t, "c")
	_, rec, _ := Generate(pki.RoleWorker, time.Hour, true, ca.Cert, time.Now())
	st := NewMemStore()
	st.Put(rec)
	var wg sync.WaitGroup
	var mu sync.Mutex
	wins := 0
	for i := range 16 {
		wg.Go(func() {
			err := st.Consume(context.Background(), rec.ID, "w", time.Now())
			if err == nil {
				mu.Lock()
				wins++
				mu.Unlock()
			} else if !errors.Is(err, ErrUsed) {
				t.Errorf("consumer %d: %v", i, err)
			}
		})
	}
	wg.Wait()
	if wins != 1 {
		t.Fatalf("%d consumers won, want 1", wins)
	}
	if err := st.Consume(context.Background(), "nope", "w", time.Now()); !errors.Is(err, ErrUnknownToken) {
		t.Errorf("unknown token: %v", err)
	}
	if err := st.Revoke(rec.ID, time.Now()); err != nil {
		t.Fatal(err)
	}
	if l := st.List(); len(l) != 1 || l[0].RevokedAt.IsZero() || l[0].UsedBy != "w" {
		t.Errorf("list %+v", l)
	}
}
