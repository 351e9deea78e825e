package worker

import (
	"context"
	"errors"
	"net/url"
	"path/filepath"
	"time"

	"orch.dev/orch/internal/gossipmeta"
)

// The worker follows the cluster's gossip keyring (node/keyring.go): it
// fetches it over its API channel every keyringEvery and keeps it in
// DATA_DIR/tls/gossip-keyring.json (0600), which wins over gossip.key and
// the cluster secret at the next start. A worker that was down during a
// rotation and cannot join gossip with the keys it kept asks the servers it
// knew (servers.json) for the current keyring before it tries again.
const (
	keyringFile  = "gossip-keyring.json"
	keyringEvery = 2 * time.Second
)

func (w *Worker) keyringPath() string { return filepath.Join(w.cfg.DataDir, tlsDir, keyringFile) }

var errNoServers = errors.New("no API server known yet")

// fetchKeyring asks the servers for the gossip keyring. A stale read is
// enough: the keyring's version keeps a lagging server from taking the
// worker back to older keys.
func (s *servers) fetchKeyring(ctx context.Context) (gossipmeta.Keyring, error) {
	var k gossipmeta.Keyring
	cl := s.heartbeatClient()
	if cl == nil {
		return k, errNoServers
	}
	err := cl.GetJSON(ctx, "/v1/gossip/keyring", url.Values{"stale": {"true"}}, &k)
	if err == nil {
		err = k.Validate()
	}
	return k, err
}

// keptKeyring is the keyring an earlier run kept, nil when none.
func (w *Worker) keptKeyring() *gossipmeta.Keyring {
	k, ok, err := gossipmeta.LoadKeyring(w.keyringPath())
	if err != nil {
		w.log.Warn("ignoring the kept gossip keyring", "err", err)
	}
	if !ok {
		return nil
	}
	return &k
}

// refreshKeptKeyring fetches the keyring over the API and keeps it, after
// a failed gossip join.
func (w *Worker) refreshKeptKeyring(ctx context.Context) {
	fctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	k, err := w.servers.fetchKeyring(fctx)
	if err != nil {
		return
	}
	if kept := w.keptKeyring(); kept != nil && (kept.Version > k.Version || kept.Equal(k)) {
		return
	}
	if err := gossipmeta.SaveKeyring(w.keyringPath(), k); err != nil {
		w.log.Error("keeping the gossip keyring", "err", err)
		return
	}
	w.log.Info("fetched the gossip keyring over the API", "keys", k.IDs())
}
