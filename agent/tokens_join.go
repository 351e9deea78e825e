package agent

import (
	"context"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"

	"orch.dev/orch/internal/join"
)

// JoinTokens is the join.Store of this cluster: join token records from
// orch-system, read linearizably (a token created a moment ago on another
// server is found), and single-use tokens consumed by a compare-and-set
// update through Raft, so that of two concurrent joins with one token
// exactly one succeeds.
func (a *Agent) JoinTokens() join.Store { return joinTokenStore{a: a} }

type joinTokenStore struct{ a *Agent }

// Get implements join.Store. User tokens are not join tokens.
func (s joinTokenStore) Get(ctx context.Context, id string) (join.Record, error) {
	if err := s.a.linearizableRead(ctx); err != nil {
		return join.Record{}, err
	}
	rec, ok := s.a.tokenRecord(id)
	if !ok || rec.isUser() {
		return join.Record{}, join.ErrUnknownToken
	}
	return rec.Record, nil
}

// Consume implements join.Store.
func (s joinTokenStore) Consume(ctx context.Context, id, node string, at time.Time) error {
	err := s.a.updateTokenRecord(ctx, id, func(t *tokenRecord) (bool, error) {
		if t.isUser() {
			return false, join.ErrUnknownToken
		}
		return true, t.MarkUsed(node, at)
	})
	if apierrors.IsNotFound(err) {
		return join.ErrUnknownToken
	}
	return err
}
