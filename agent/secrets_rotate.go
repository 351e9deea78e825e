package agent

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"

	"orch.dev/orch/api"
	"orch.dev/orch/fsm"
	"orch.dev/orch/internal/gossipmeta"
)

// Changing the cluster secret. Servers restarted with a new --token and
// the old one as --previous-cluster-secret open Secrets sealed under
// either (newSecretBox holds every key, seals with the first), re-seal the
// cluster CA with the new secret (clusterTLS.adopt, writeClusterCA) and
// keep gossip on the previous secret's key (defaultGossipKeyring).
//
//	POST /v1/operator/secrets/reseal   (admins) -> ResealResult
//
// rewrites every Secret that holds a value in plaintext or sealed with a
// key other than the current one, through Raft, compare-and-set on the
// version it read; and stores the gossip keyring in Raft when the cluster
// has none, so that gossip no longer depends on the cluster secret. Once
// it reports no failures, --previous-cluster-secret can be dropped.

// ResealResult answers a reseal.
type ResealResult struct {
	Resealed int `json:"resealed"`
	// Failed are Secrets that could not be re-sealed (ns/name: why), such
	// as ones sealed with a secret this server was not given.
	Failed             []string `json:"failed,omitempty"`
	GossipKeyringSaved bool     `json:"gossipKeyringSaved,omitempty"`
}

func (a *Agent) registerSecretsReseal(mux *http.ServeMux) {
	mux.HandleFunc("POST /v1/operator/secrets/reseal", a.serveSecretsReseal)
}

// checkPreviousSecrets refuses previous secrets that cannot be right.
func (c *Config) checkPreviousSecrets() error {
	for _, p := range c.PreviousSecrets {
		switch {
		case p == "":
			return errors.New("--previous-cluster-secret: empty")
		case p == c.Token:
			return errors.New("--previous-cluster-secret: equal to --token (give the secret the cluster ran with before)")
		}
	}
	return nil
}

func (a *Agent) serveSecretsReseal(w http.ResponseWriter, r *http.Request) {
	box := a.secrets()
	if box == nil {
		writeError(w, apierrors.NewBadRequest("this server has no cluster secret: Secrets are not sealed"))
		return
	}
	ctx := r.Context()
	if err := a.linearizableRead(ctx); err != nil {
		writeError(w, err)
		return
	}
	type ref struct{ ns, name string }
	var due []ref
	a.fsm.View().List(api.Secret, "", func(rec *fsm.Record) bool {
		if s := rec.Obj.(*corev1.Secret); box.needsReseal(s) {
			due = append(due, ref{s.Namespace, s.Name})
		}
		return true
	})
	var res ResealResult
	for _, d := range due {
		if err := a.resealSecret(ctx, d.ns, d.name); err != nil {
			if ctx.Err() != nil {
				writeError(w, ctx.Err())
				return
			}
			res.Failed = append(res.Failed, fmt.Sprintf("%s/%s: %v", d.ns, d.name, err))
			continue
		}
		res.Resealed++
	}
	if a.gossip.keyring != nil && a.fsm.View().Get(api.Secret, SystemNamespace, GossipKeyringSecret) == nil {
		err := a.updateGossipKeyring(ctx, func(*gossipmeta.Keyring) (bool, error) { return true, nil })
		if err != nil {
			res.Failed = append(res.Failed, fmt.Sprintf("%s/%s: %v", SystemNamespace, GossipKeyringSecret, err))
		} else {
			res.GossipKeyringSaved = true
		}
	}
	a.logger.Info("Secrets re-sealed with the current cluster secret", "resealed", res.Resealed, "failed", len(res.Failed), "by", PrincipalOf(r).Name)
	writeJSON(w, http.StatusOK, res)
}

// resealSecret writes one Secret again as it is: sealForProposal seals
// every value with the current key.
func (a *Agent) resealSecret(ctx context.Context, ns, name string) error {
	for attempt := 1; ; attempt++ {
		if err := a.linearizableRead(ctx); err != nil {
			return err
		}
		s, version, err := a.readSecret(a.fsm.View(), ns, name)
		if err != nil || s == nil {
			return err // gone meanwhile: nothing to do
		}
		next := s.DeepCopy()
		api.Secret.SetTypeMeta(next)
		next.ResourceVersion = strconv.FormatUint(version, 10)
		err = a.serverRequest(ctx, http.MethodPut, api.Secret.ObjectPath(ns, name), next)
		if apierrors.IsConflict(err) && attempt < 16 {
			continue
		}
		if apierrors.IsNotFound(err) {
			return nil
		}
		return err
	}
}
