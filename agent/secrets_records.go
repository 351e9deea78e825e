package agent

import (
	"fmt"
	"sync"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"

	"orch.dev/orch/api"
	"orch.dev/orch/fsm"
)

// Where the API meets encrypted Secrets (secrets_crypt.go): objects are
// sealed on their way to Raft and opened on their way to a caller.

// secretBoxOnce derives the Secret keys on first use, once Start has
// settled the cluster secret.
type secretBoxOnce struct {
	once sync.Once
	box  *secretBox
}

// secrets is this server's secretBox (nil when it has no cluster secret).
func (a *Agent) secrets() *secretBox {
	a.box.once.Do(func() {
		box, err := newSecretBox(append([]string{a.clusterSecretValue()}, a.cfg.PreviousSecrets...)...)
		if err != nil {
			panic(fmt.Sprintf("deriving the Secret encryption key: %v", err)) // AES-256 and GCM always construct
		}
		a.box.box = box
	})
	return a.box.box
}

// clusterSecretValue is the cluster secret: --token, or the one Start
// generated for a lone server.
func (a *Agent) clusterSecretValue() string {
	if a.secret != "" {
		return a.secret
	}
	return a.cfg.Token
}

// sealForProposal is obj as it is proposed: a Secret with its values
// sealed. On an update, values that did not change keep their stored
// ciphertext.
func (a *Agent) sealForProposal(obj api.Object, update bool) api.Object {
	s, ok := obj.(*corev1.Secret)
	box := a.secrets()
	if !ok || box == nil {
		return obj
	}
	var prev *corev1.Secret
	if update {
		if rec := a.fsm.View().Get(api.Secret, s.Namespace, s.Name); rec != nil {
			prev = rec.Obj.(*corev1.Secret)
		}
	}
	return box.encryptSecret(s, prev)
}

// servedRecord is rec as callers see it: a Secret's values opened. Other
// records, and Secrets holding no sealed value, are returned as they are
// (with their cached encodings).
func (a *Agent) servedRecord(rec *fsm.Record) (*fsm.Record, error) {
	if rec == nil || rec.Kind != api.Secret {
		return rec, nil
	}
	s := rec.Obj.(*corev1.Secret)
	open, err := a.secrets().decryptSecret(s)
	if err != nil {
		a.logger.Error("cannot decrypt a stored Secret", "namespace", s.Namespace, "name", s.Name, "err", err)
		return nil, apierrors.NewInternalError(err)
	}
	if open == s {
		return rec, nil
	}
	return &fsm.Record{Kind: rec.Kind, Key: rec.Key, Obj: open, Version: rec.Version, Owners: rec.Owners}, nil
}

// listedRecord is servedRecord for lists and watches, which cannot fail
// for one item: a Secret that does not open is served without its data
// (and the failure logged), never with ciphertext.
func (a *Agent) listedRecord(rec *fsm.Record) *fsm.Record {
	if rec.Kind != api.Secret {
		return rec
	}
	if open, err := a.servedRecord(rec); err == nil {
		return open
	}
	s := rec.Obj.(*corev1.Secret).DeepCopy()
	s.Data = nil
	return &fsm.Record{Kind: rec.Kind, Key: rec.Key, Obj: s, Version: rec.Version, Owners: rec.Owners}
}

// readSecret is the stored Secret ns/name with its values opened, for the
// server's own use (token records); nil when it does not exist.
func (a *Agent) readSecret(view *fsm.View, ns, name string) (*corev1.Secret, uint64, error) {
	rec := view.Get(api.Secret, ns, name)
	if rec == nil {
		return nil, 0, nil
	}
	open, err := a.secrets().decryptSecret(rec.Obj.(*corev1.Secret))
	if err != nil {
		return nil, 0, err
	}
	return open, rec.Version, nil
}
