package agent

import (
	"context"
	"time"

	corev1 "k8s.io/api/core/v1"

	"orch.dev/orch/api"
	"orch.dev/orch/fsm"
)

// The leader deletes token records whose expiry passed more than
// TokenExpiryGrace ago. An expired token is refused from the moment it
// expires (join.Verify, tokens_auth.go), whether or not its record still
// exists; the grace only keeps the record a while, so that `orchctl
// operator token list` shows it as expired and a late join attempt is told
// "expired" rather than "unknown token", and so that a server whose clock
// runs a little ahead of another's never deletes a record the other still
// considers valid. Deletes are conditional on the record's uid, and go
// through Raft like any write.
const (
	// DefaultTokenExpiryGrace is how long an expired token's record is kept.
	DefaultTokenExpiryGrace = 10 * time.Minute
	// defaultTokenPruneInterval is how often the leader looks for records to delete.
	defaultTokenPruneInterval = time.Minute
)

// TokenPruneConfig tunes the expired-token cleanup (tests shorten it).
type TokenPruneConfig struct {
	Grace    time.Duration // DefaultTokenExpiryGrace when 0
	Interval time.Duration // defaultTokenPruneInterval when 0
}

func (c TokenPruneConfig) grace() time.Duration {
	if c.Grace > 0 {
		return c.Grace
	}
	return DefaultTokenExpiryGrace
}

func (c TokenPruneConfig) interval() time.Duration {
	if c.Interval > 0 {
		return c.Interval
	}
	return defaultTokenPruneInterval
}

// pruneExpiredTokens is a leader-only loop.
func (a *Agent) pruneExpiredTokens(ctx context.Context, _ *Agent) {
	t := time.NewTicker(a.cfg.TokenPrune.interval())
	defer t.Stop()
	for {
		a.pruneExpiredTokensOnce(ctx, time.Now())
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// expiredTokenRecord is a token record due for deletion.
type expiredTokenRecord struct {
	name, uid, id string
	expired       time.Time
}

// dueTokenRecords lists the records in view whose expiry is more than
// grace before now. A record that cannot be read is left alone (and
// reported by token list).
func (a *Agent) dueTokenRecords(view *fsm.View, now time.Time, grace time.Duration) []expiredTokenRecord {
	var due []expiredTokenRecord
	view.List(api.Secret, SystemNamespace, func(rec *fsm.Record) bool {
		s := rec.Obj.(*corev1.Secret)
		if s.Type != SecretTypeToken {
			return true
		}
		open, err := a.secrets().decryptSecret(s)
		if err != nil {
			return true
		}
		t, err := tokenRecordOf(open)
		if err == nil && now.Sub(t.ExpiresAt) > grace {
			due = append(due, expiredTokenRecord{name: s.Name, uid: string(s.UID), id: t.ID, expired: t.ExpiresAt})
		}
		return true
	})
	return due
}

func (a *Agent) pruneExpiredTokensOnce(ctx context.Context, now time.Time) {
	for _, d := range a.dueTokenRecords(a.fsm.View(), now, a.cfg.TokenPrune.grace()) {
		if ctx.Err() != nil {
			return
		}
		_, err := a.Delete(ctx, api.Secret, SystemNamespace, d.name, DeleteOptions{UID: d.uid})
		if err != nil {
			// Gone or replaced meanwhile, or leadership lost: the next
			// round (of this leader or the next) looks again.
			a.logger.Debug("deleting an expired token record", "id", d.id, "err", err)
			continue
		}
		a.logger.Info("deleted expired token record", "id", d.id, "expired", d.expired.UTC())
	}
}
