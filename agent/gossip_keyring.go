package agent

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"

	"orch.dev/orch/api"
	"orch.dev/orch/fsm"
	"orch.dev/orch/internal/gossipmeta"
)

// Gossip key rotation. The cluster's gossip keyring (gossipmeta.Keyring)
// lives in Raft as the Secret orch-system/gossip-keyring (sealed like any
// Secret); a cluster that never rotated has none and uses the key derived
// from the cluster secret. Every server applies the stored keyring to its
// memberlist as soon as its FSM has it (gossipKeyringLoop), keeps a copy in
// DATA_DIR/gossip-keyring.json (0600) so that a restart speaks the current
// keys before Raft has caught up, and announces the ids of the keys it
// holds, primary first, in its gossip metadata. Workers and simulators
// fetch the keyring over their authenticated API channel
// (GET /v1/gossip/keyring, node.Membership.FollowKeyring) and announce
// theirs the same way. The operator API (gossip_keyring_api.go) changes
// the keyring one safe step at a time and refuses a step some live member
// is not ready for.
const (
	gossipKeyringFile                     = "gossip-keyring.json"
	GossipKeyringSecret                   = "gossip-keyring"
	GossipKeyringType   corev1.SecretType = "orch.dev/gossip-keyring"
	gossipKeyringKey                      = "keyring"
	gossipKeyringEvery                    = 500 * time.Millisecond
)

// initialGossipKeyring is what gossip starts with: the copy an earlier run
// kept, else the key derived from the cluster secret.
func (a *Agent) initialGossipKeyring(secret string) (*gossipmeta.Keyring, error) {
	k, ok, err := gossipmeta.LoadKeyring(filepath.Join(a.cfg.DataDir, gossipKeyringFile))
	if err != nil {
		return nil, err
	}
	if ok {
		a.logger.Info("gossip keyring from the data directory", "keys", k.IDs())
		return &k, nil
	}
	if secret == "" {
		return nil, nil
	}
	k, err = a.defaultGossipKeyring(secret)
	return &k, err
}

// defaultGossipKeyring is the keyring of a cluster that never stored one:
// the key derived from the cluster secret, or, while the cluster secret is
// being changed (--previous-cluster-secret), the previous secret's key as
// primary and the new one's beside it, so that servers restarted with the
// new secret still speak to those not yet restarted and to the workers.
// `orchctl operator secrets reseal` stores the keyring in Raft, after
// which the cluster secret no longer decides the gossip keys.
func (a *Agent) defaultGossipKeyring(secret string) (gossipmeta.Keyring, error) {
	k, err := gossipmeta.DefaultKeyring(secret)
	if err != nil || len(a.cfg.PreviousSecrets) == 0 {
		return k, err
	}
	prev, err := gossipmeta.Key(a.cfg.PreviousSecrets[0])
	if err != nil {
		return k, err
	}
	return gossipmeta.Keyring{Keys: [][]byte{prev, k.Primary}, Primary: prev}, nil
}

// storedGossipKeyring is the cluster's keyring in view: the Secret, or
// the default keyring when there is none.
func (a *Agent) storedGossipKeyring(view *fsm.View) (gossipmeta.Keyring, error) {
	s, version, err := a.readSecret(view, SystemNamespace, GossipKeyringSecret)
	if err != nil {
		return gossipmeta.Keyring{}, err
	}
	if s == nil {
		return a.defaultGossipKeyring(a.clusterSecretValue())
	}
	var k gossipmeta.Keyring
	if err := json.Unmarshal(s.Data[gossipKeyringKey], &k); err != nil {
		return k, fmt.Errorf("%s/%s: %w", SystemNamespace, GossipKeyringSecret, err)
	}
	k.Version = version
	return k, k.Validate()
}

// gossipKeyringSecret is the Secret that stores k.
func gossipKeyringSecret(k gossipmeta.Keyring) *corev1.Secret {
	k.Version = 0
	b, _ := json.Marshal(k)
	s := &corev1.Secret{Type: GossipKeyringType, Data: map[string][]byte{gossipKeyringKey: b}}
	s.Namespace, s.Name = SystemNamespace, GossipKeyringSecret
	return s
}

// gossipKeyringLoop applies the stored keyring to this server's gossip
// whenever it changes.
func (a *Agent) gossipKeyringLoop() {
	if a.gossip.keyring == nil {
		return
	}
	t := time.NewTicker(gossipKeyringEvery)
	defer t.Stop()
	var applied uint64
	for {
		if rec := a.fsm.View().Get(api.Secret, SystemNamespace, GossipKeyringSecret); rec != nil && rec.Version != applied {
			if err := a.applyStoredGossipKeyring(); err != nil {
				a.logger.Error("cannot apply the cluster's gossip keyring", "err", err)
			} else {
				applied = rec.Version
			}
		}
		select {
		case <-a.stop:
			return
		case <-t.C:
		}
	}
}

func (a *Agent) applyStoredGossipKeyring() error {
	k, err := a.storedGossipKeyring(a.fsm.View())
	if err != nil {
		return err
	}
	if !slices.Equal(gossipmeta.RingIDs(a.gossip.keyring), k.IDs()) {
		if err := gossipmeta.Apply(a.gossip.keyring, k); err != nil {
			return err
		}
	}
	// On disk before announced: a server that announced a step speaks it
	// after a restart too. On failure the loop tries again.
	if err := gossipmeta.SaveKeyring(filepath.Join(a.cfg.DataDir, gossipKeyringFile), k); err != nil {
		return fmt.Errorf("keeping the gossip keyring in the data directory: %w", err)
	}
	if !slices.Equal(a.gossip.selfKeys(), k.IDs()) {
		a.gossip.announceKeys(k.IDs())
		a.logger.Info("gossip keyring changed", "keys", k.IDs(), "primary", gossipmeta.KeyID(k.Primary))
	}
	return nil
}

// gossipPrimaryKey is the key this server encrypts gossip with: what a
// node joining with a join token is given.
func (a *Agent) gossipPrimaryKey() ([]byte, error) {
	if a.gossip == nil || a.gossip.keyring == nil {
		return gossipmeta.Key(a.secret)
	}
	return a.gossip.keyring.GetPrimaryKey(), nil
}

// announceKeys puts ids into this member's gossip metadata and spreads it.
func (g *gossip) announceKeys(ids []string) {
	g.selfMu.Lock()
	g.self.Keys = ids
	g.selfMu.Unlock()
	if err := g.ml.UpdateNode(2 * time.Second); err != nil {
		g.logger.Warn("announcing the gossip keys", "err", err)
	}
}

// selfKeys are the key ids this member announces.
func (g *gossip) selfKeys() []string {
	g.selfMu.Lock()
	defer g.selfMu.Unlock()
	return slices.Clone(g.self.Keys)
}

// memberKeys are the live members with the key ids each
// announces (none for a member of a version that does not announce them).
func (a *Agent) memberKeys() []GossipMemberKeys {
	self := a.gossip.ml.LocalNode().Name
	var out []GossipMemberKeys
	for _, m := range a.gossip.Members() {
		if m.Status != StatusAlive {
			continue
		}
		keys := m.meta.Keys
		if m.Name == self {
			keys = a.gossip.selfKeys()
		}
		out = append(out, GossipMemberKeys{Name: m.Name, Role: m.Role, Status: m.Status, Keys: keys})
	}
	return out
}
