package node

import (
	"context"
	"fmt"
	"slices"
	"time"

	"orch.dev/orch/internal/gossipmeta"
)

// A member follows the cluster's gossip keyring (gossipmeta.Keyring): the
// servers keep it in Raft, and a worker or simulator fetches it over its
// authenticated API channel, applies it to its memberlist, keeps it on
// disk for its next start and announces the ids of the keys it holds, so
// that a rotation can tell when every member took a step.

// KeyringFetcher asks the servers for the keyring.
type KeyringFetcher func(ctx context.Context) (gossipmeta.Keyring, error)

// SetKeyring makes this member's keys k (never an older version than the
// one it has) and, when path is set, keeps k there (0600) before it
// announces the new key ids: a member that announced a step has it on disk
// for its next start. It reports whether anything changed.
func (m *Membership) SetKeyring(k gossipmeta.Keyring, path string) (bool, error) {
	m.ringMu.Lock()
	defer m.ringMu.Unlock()
	if m.ring == nil || k.Version < m.version {
		return false, nil
	}
	m.d.mu.Lock()
	announced := slices.Equal(m.d.meta.Keys, k.IDs())
	m.d.mu.Unlock()
	if announced {
		m.version = k.Version
		return false, nil
	}
	if !slices.Equal(gossipmeta.RingIDs(m.ring), k.IDs()) {
		if err := gossipmeta.Apply(m.ring, k); err != nil {
			return false, err
		}
	}
	if path != "" {
		if err := gossipmeta.SaveKeyring(path, k); err != nil {
			// Announce nothing (the rotation waits); the next round
			// tries again.
			return false, fmt.Errorf("keeping the gossip keyring in %s: %w", path, err)
		}
	}
	m.version = k.Version
	m.d.mu.Lock()
	m.d.meta.Keys = k.IDs()
	m.d.mu.Unlock()
	if err := m.ml.UpdateNode(2 * time.Second); err != nil && m.log != nil {
		m.log.Warn("announcing the gossip keys", "err", err)
	}
	return true, nil
}

// FollowKeyring fetches the keyring every `every` until ctx ends, applies
// it and, when path is set, keeps it there (0600).
func (m *Membership) FollowKeyring(ctx context.Context, fetch KeyringFetcher, path string, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		fctx, cancel := context.WithTimeout(ctx, every+5*time.Second)
		k, err := fetch(fctx)
		cancel()
		if err == nil {
			changed, aerr := m.SetKeyring(k, path)
			switch {
			case aerr != nil:
				m.log.Error("cannot apply the cluster's gossip keyring", "err", aerr)
			case changed:
				m.log.Info("gossip keyring changed", "keys", k.IDs(), "primary", gossipmeta.KeyID(k.Primary))
			}
		} else if ctx.Err() == nil {
			m.log.Debug("fetching the gossip keyring", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
