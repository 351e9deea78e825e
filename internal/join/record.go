package join

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"orch.dev/orch/internal/pki"
)

// Record is what the cluster keeps of a join token (in Raft, once wired):
// never the secret, only its hash.
type Record struct {
	ID         string    `json:"id"`
	SecretHash []byte    `json:"secretHash"`
	Role       pki.Role  `json:"role"`
	CAHash     string    `json:"caHash"`
	CreatedAt  time.Time `json:"createdAt"`
	ExpiresAt  time.Time `json:"expiresAt"`
	SingleUse  bool      `json:"singleUse,omitempty"`
	// UsedAt and UsedBy record the join that consumed a single-use token.
	UsedAt    time.Time `json:"usedAt,omitzero"`
	UsedBy    string    `json:"usedBy,omitempty"`
	RevokedAt time.Time `json:"revokedAt,omitzero"`
}

// Why a token is refused. Only ErrBadSecret and ErrUnknownToken may be
// answered to someone who has not proved they hold the secret, and both
// with the same message (see the handler), so that probing ids reveals
// nothing.
var (
	ErrUnknownToken = errors.New("unknown join token")
	ErrBadSecret    = errors.New("join token secret does not match")
	ErrExpired      = errors.New("join token has expired")
	ErrUsed         = errors.New("single-use join token was already used")
	ErrRevoked      = errors.New("join token was revoked")
)

// Verify checks a presented secret against rec at now: the secret (in
// constant time), then revocation, expiry and single use.
func Verify(rec Record, secret string, now time.Time) error {
	if len(rec.SecretHash) == 0 || subtle.ConstantTimeCompare(hashSecret(rec.ID, secret), rec.SecretHash) != 1 {
		return ErrBadSecret
	}
	switch {
	case !rec.RevokedAt.IsZero():
		return fmt.Errorf("%w at %s", ErrRevoked, rec.RevokedAt.UTC().Format(time.RFC3339))
	case !now.Before(rec.ExpiresAt):
		return fmt.Errorf("%w at %s", ErrExpired, rec.ExpiresAt.UTC().Format(time.RFC3339))
	case rec.SingleUse && !rec.UsedAt.IsZero():
		return fmt.Errorf("%w (by %s at %s)", ErrUsed, rec.UsedBy, rec.UsedAt.UTC().Format(time.RFC3339))
	}
	return nil
}

// MarkUsed records that node consumed single-use rec at at, refusing a
// second use. It is pure so the FSM can apply it deterministically, with the
// time chosen before the entry was proposed.
func (rec *Record) MarkUsed(node string, at time.Time) error {
	switch {
	case !rec.RevokedAt.IsZero():
		return ErrRevoked
	case !rec.UsedAt.IsZero():
		return fmt.Errorf("%w (by %s)", ErrUsed, rec.UsedBy)
	}
	rec.UsedAt, rec.UsedBy = at, node
	return nil
}

// Store is where the join handler finds token records. The cluster's
// implementation reads the FSM and proposes Consume through Raft.
type Store interface {
	// Get returns the record of token id, or an error wrapping
	// ErrUnknownToken.
	Get(ctx context.Context, id string) (Record, error)
	// Consume marks single-use token id used by node at at. It must be
	// atomic: of two Consumes of one token, one fails with ErrUsed.
	Consume(ctx context.Context, id, node string, at time.Time) error
}

// MemStore is a Store in memory, for tests and single-process use.
type MemStore struct {
	mu   sync.Mutex
	recs map[string]Record
}

// NewMemStore returns an empty store.
func NewMemStore() *MemStore { return &MemStore{recs: map[string]Record{}} }

// Put adds or replaces a record.
func (s *MemStore) Put(rec Record) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.recs[rec.ID] = rec
}

// Get implements Store.
func (s *MemStore) Get(_ context.Context, id string) (Record, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	rec, ok := s.recs[id]
	if !ok {
		return Record{}, ErrUnknownToken
	}
	return rec, nil
}

// Consume implements Store.
func (s *MemStore) Consume(_ context.Context, id, node string, at time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	rec, ok := s.recs[id]
	if !ok {
		return ErrUnknownToken
	}
	if err := rec.MarkUsed(node, at); err != nil {
		return err
	}
	s.recs[id] = rec
	return nil
}

// Revoke marks token id revoked at at.
func (s *MemStore) Revoke(id string, at time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	rec, ok := s.recs[id]
	if !ok {
		return ErrUnknownToken
	}
	rec.RevokedAt = at
	s.recs[id] = rec
	return nil
}

// List returns the records ordered by id.
func (s *MemStore) List() []Record {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Record, 0, len(s.recs))
	for _, r := range s.recs {
		out = append(out, r)
	}
	slices.SortFunc(out, func(a, b Record) int { return strings.Compare(a.ID, b.ID) })
	return out
}
