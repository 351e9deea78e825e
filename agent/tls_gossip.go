package agent

import (
	"encoding/json"
	"errors"
	"time"

	"orch.dev/orch/internal/gossipmeta"
)

// A server adds gossipmeta.State to memberlist's push-pull exchanges: the
// sealed cluster CA. Gossip is encrypted with the key derived from the
// cluster secret and the CA key is sealed with the secret itself, so a
// member without the secret learns nothing from it. Nothing else travels
// here: no object of the cluster's state ever goes over gossip.

func (a *Agent) gossipLocalState() []byte {
	s := a.tls.Sealed()
	if s == nil {
		return nil
	}
	b, _ := json.Marshal(gossipmeta.State{V: gossipmeta.StateV1, SealedCA: s})
	return b
}

func (a *Agent) gossipMergeState(buf []byte) {
	var st gossipmeta.State
	if err := json.Unmarshal(buf, &st); err != nil || st.V != gossipmeta.StateV1 {
		a.logger.Warn("ignoring gossip state in an unknown format", "err", err)
		return
	}
	if len(st.SealedCA) == 0 {
		return
	}
	had := a.tls.CA() != nil
	err := a.tls.adopt(st.SealedCA, time.Now())
	switch {
	case errors.Is(err, errOtherCA):
		a.logger.Error("a server of this gossip pool holds another cluster CA; ignoring it", "err", err)
	case err != nil:
		a.logger.Error("cannot use the cluster CA a peer sent", "err", err)
	case !had:
		a.logger.Info("received the cluster CA from a peer")
	}
}

// fetchCALoop asks the other servers for the CA until this server has
// it: a server that joins gets it with its first push-pull, but one that
// started before the CA existed must ask again.
func (a *Agent) fetchCALoop() {
	for {
		select {
		case <-a.tls.Ready():
			return
		case <-a.stop:
			return
		case <-time.After(500 * time.Millisecond):
		}
		a.pullFromServers()
	}
}

// pullFromServers runs a push-pull with every live server.
func (a *Agent) pullFromServers() {
	var servers []Member
	for _, m := range a.gossip.Members() {
		if m.Role == RoleServer && m.Status == StatusAlive {
			servers = append(servers, m)
		}
	}
	a.gossip.pull(servers)
}

// ensureCA makes sure this server has the cluster CA before it bootstraps
// Raft: it asks its peers, and when none has one, the first of the
// bootstrapping servers by name creates it while the others wait to
// receive it. It reports whether the CA is there.
func (a *Agent) ensureCA(servers []Member) bool {
	if a.tls.CA() != nil {
		return true
	}
	a.gossip.pull(servers)
	if a.tls.CA() != nil {
		return true
	}
	first := servers[0].Name
	for _, m := range servers {
		first = min(first, m.Name)
	}
	if first != a.cfg.Name {
		a.logger.Info("waiting for the cluster CA from the first server", "server", first)
		return false
	}
	if err := a.tls.create(time.Now()); err != nil {
		a.logger.Error("creating the cluster CA failed", "err", err)
		return false
	}
	return true
}
