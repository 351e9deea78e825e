package agent

import (
	"net/http"

	"orch.dev/orch/internal/join"
	"orch.dev/orch/internal/pki"
)

// Every server answers the join handshake (join.Path) and certificate
// renewal (join.RenewPath): a node with a join token gets a certificate
// of the cluster CA for its role, the CA, and the gossip key; a node with
// a valid certificate gets a new one. The token records are the
// orch-system token Secrets (JoinTokens, tokens_join.go).
func (a *Agent) registerJoin(mux *http.ServeMux) {
	ca := func() (*pki.CA, error) {
		if ca := a.tls.CA(); ca != nil {
			return ca, nil
		}
		return nil, errNoCA
	}
	logger := a.logger.With("component", "join")
	mux.Handle("POST "+join.Path, join.Handler(join.HandlerConfig{CA: ca, Store: a.joinStore(), Logger: logger,
		GossipKey: a.gossipPrimaryKey}))
	mux.Handle("POST "+join.RenewPath, join.RenewHandler(join.RenewConfig{CA: ca, Logger: logger}))
}

// joinStore is where join tokens are looked up: Config.JoinStore (tests),
// else the cluster's token Secrets.
func (a *Agent) joinStore() join.Store {
	if a.cfg.JoinStore != nil {
		return a.cfg.JoinStore
	}
	return a.JoinTokens()
}
