package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"orch.dev/orch/api"
	"orch.dev/orch/fsm"
	"orch.dev/orch/internal/pki"
)

// Cluster security state lives as Secrets in the reserved namespace
// orch-system, so snapshots, restore and recover carry it.
const (
	ClusterCASecret = "cluster-ca"
	// ClusterCAType is the Secret type of orch-system/cluster-ca: data
	// ca.crt (PEM) and ca.sealed (pki.SealedCA as JSON, the key sealed
	// with the cluster secret).
	ClusterCAType = "orch.dev/cluster-ca"
)

// storeClusterCA runs on the leader: it keeps orch-system/cluster-ca equal
// to the CA this server uses.
func (a *Agent) storeClusterCA(ctx context.Context, _ *Agent) {
	select {
	case <-a.tls.Ready():
	case <-ctx.Done():
		return
	}
	for ctx.Err() == nil {
		err := a.writeClusterCA(ctx)
		if err == nil {
			return
		}
		a.logger.Warn("storing the cluster CA as a Secret", "err", err)
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
}

func (a *Agent) writeClusterCA(ctx context.Context) error {
	ca, sealed := a.tls.CA(), a.tls.Sealed()
	certPEM := pki.CertPEM(ca.Cert)
	if a.fsm.View().Get(api.Namespace, "", SystemNamespace) == nil {
		ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: SystemNamespace}}
		api.Namespace.SetTypeMeta(ns)
		if _, err := a.Create(ctx, ns); err != nil && !errors.Is(err, fsm.ErrAlreadyExists) {
			return err
		}
	}
	want := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: SystemNamespace, Name: ClusterCASecret},
		Type: ClusterCAType, Data: map[string][]byte{"ca.crt": certPEM, "ca.sealed": sealed}}
	api.Secret.SetTypeMeta(want)
	rec := a.fsm.View().Get(api.Secret, SystemNamespace, ClusterCASecret)
	if rec == nil {
		_, err := a.Create(ctx, want)
		if errors.Is(err, fsm.ErrAlreadyExists) {
			return errors.New("created concurrently; checking again")
		}
		return err
	}
	have := rec.Obj.(*corev1.Secret)
	if bytes.Equal(have.Data["ca.crt"], certPEM) {
		if sealedWith(have.Data["ca.sealed"], a.secret) {
			return nil
		}
		// Sealed with a previous cluster secret (--previous-cluster-secret):
		// store it sealed with the current one, which restores need.
		a.logger.Info("re-sealing the orch-system/cluster-ca Secret with the current cluster secret")
		want.ResourceVersion = have.ResourceVersion
		_, err := a.Update(ctx, want, false)
		return err
	}
	a.logger.Error("the orch-system/cluster-ca Secret names another CA than this server's; replacing it (was the state restored from another cluster?)")
	want.ResourceVersion = have.ResourceVersion
	_, err := a.Update(ctx, want, false)
	return err
}

// sealedWith reports whether a sealed CA opens with secret.
func sealedWith(sealed []byte, secret string) bool {
	var s pki.SealedCA
	if json.Unmarshal(sealed, &s) != nil {
		return false
	}
	_, err := s.Open([]byte(secret))
	return err == nil
}
