package agent

import (
	"bytes"
	"errors"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func plainSecret(ns, name string, data map[string]string) *corev1.Secret {
	s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Type: corev1.SecretTypeOpaque, Data: map[string][]byte{}}
	for k, v := range data {
		s.Data[k] = []byte(v)
	}
	return s
}

func mustBox(t *testing.T, secrets ...string) *secretBox {
	t.Helper()
	b, err := newSecretBox(secrets...)
	if err != nil || b == nil {
		t.Fatalf("newSecretBox: %v, %v", b, err)
	}
	return b
}

func TestSecretValuesAreSealedAndOpen(t *testing.T) {
	box := mustBox(t, "cluster-secret-1")
	plain := plainSecret("default", "db", map[string]string{"password": "hunter2-value", "user": "admin"})
	sealed := box.encryptSecret(plain, nil)
	if string(plain.Data["password"]) != "hunter2-value" {
		t.Fatal("encryptSecret changed its argument")
	}
	for k, v := range sealed.Data {
		if !isSealed(v) || bytes.Contains(v, plain.Data[k]) {
			t.Fatalf("key %s not sealed: %q", k, v)
		}
	}
	open, err := box.decryptSecret(sealed)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range plain.Data {
		if !bytes.Equal(open.Data[k], v) {
			t.Fatalf("key %s: got %q, want %q", k, open.Data[k], v)
		}
	}
	// Two seals of one value differ (random nonces)...
	again := box.encryptSecret(plain, nil)
	if bytes.Equal(again.Data["password"], sealed.Data["password"]) {
		t.Fatal("two seals produced the same ciphertext")
	}
	// ...but an update that keeps a value keeps its ciphertext, so that a
	// no-op update stays a no-op in the FSM; a changed value is resealed.
	changed := plainSecret("default", "db", map[string]string{"password": "hunter2-value", "user": "root"})
	upd := box.encryptSecret(changed, sealed)
	if !bytes.Equal(upd.Data["password"], sealed.Data["password"]) {
		t.Fatal("unchanged value was resealed")
	}
	if bytes.Equal(upd.Data["user"], sealed.Data["user"]) {
		t.Fatal("changed value kept the old ciphertext")
	}
}

func TestSealedValuesAreBoundToTheirSecretAndKey(t *testing.T) {
	box := mustBox(t, "cluster-secret-1")
	sealed := box.encryptSecret(plainSecret("default", "db", map[string]string{"password": "pw", "other": "x"}), nil)
	moved := sealed.DeepCopy()
	moved.Name = "db2"
	if _, err := box.decryptSecret(moved); !errors.Is(err, errSecretKey) {
		t.Fatalf("value moved to another Secret opened: %v", err)
	}
	swapped := sealed.DeepCopy()
	swapped.Data["other"] = sealed.Data["password"]
	if _, err := box.decryptSecret(swapped); !errors.Is(err, errSecretKey) {
		t.Fatalf("value moved to another key opened: %v", err)
	}
	flipped := sealed.DeepCopy()
	flipped.Data["password"][len(flipped.Data["password"])-1] ^= 1
	if _, err := box.decryptSecret(flipped); !errors.Is(err, errSecretKey) {
		t.Fatalf("altered value opened: %v", err)
	}
	if _, err := mustBox(t, "another-cluster").decryptSecret(sealed); !errors.Is(err, errSecretKey) {
		t.Fatalf("another cluster's key opened it: %v", err)
	}
	var none *secretBox
	if _, err := none.decryptSecret(sealed); !errors.Is(err, errSecretKey) {
		t.Fatalf("a server without keys opened it: %v", err)
	}
}

// A server given a new cluster secret and the old one seals with the new
// key and still opens what the old one sealed.
func TestSecretKeysRotate(t *testing.T) {
	old := mustBox(t, "secret-2025")
	rotated := mustBox(t, "secret-2026", "secret-2025")
	s := old.encryptSecret(plainSecret("ns", "a", map[string]string{"k": "v"}), nil)
	open, err := rotated.decryptSecret(s)
	if err != nil || string(open.Data["k"]) != "v" {
		t.Fatalf("rotated box cannot open an old value: %v", err)
	}
	fresh := rotated.encryptSecret(open, nil)
	if string(fresh.Data["k"][len(sealedPrefix):len(sealedPrefix)+secretKeyIDLen]) != rotated.current.id || rotated.current.id == old.current.id {
		t.Fatalf("rotated box does not seal with the new key: %q", fresh.Data["k"])
	}
	// A reseal (an update with the same values, prev sealed with the old
	// key) seals again with the new key; one already under the new key
	// keeps its ciphertext.
	if !rotated.needsReseal(s) || rotated.needsReseal(fresh) || !rotated.needsReseal(plainSecret("ns", "a", map[string]string{"k": "v"})) {
		t.Fatal("needsReseal: want true for the old key and plaintext, false for the new key")
	}
	resealed := rotated.encryptSecret(open, s)
	if !rotated.sealedWithCurrent(resealed.Data["k"]) {
		t.Fatalf("an update of a value sealed with the old key kept the old ciphertext: %q", resealed.Data["k"])
	}
	if again := rotated.encryptSecret(open, resealed); !bytes.Equal(again.Data["k"], resealed.Data["k"]) {
		t.Fatal("an unchanged value under the current key was sealed again")
	}
}

// Plaintext from before encryption is served as it is; the cluster CA is
// stored as it is; a server without a cluster secret stores plaintext.
func TestUnsealedSecrets(t *testing.T) {
	box := mustBox(t, "s")
	legacy := plainSecret("default", "old", map[string]string{"k": "plain"})
	if open, err := box.decryptSecret(legacy); err != nil || open != legacy {
		t.Fatalf("legacy plaintext: %v %v", open, err)
	}
	ca := plainSecret(SystemNamespace, ClusterCASecret, map[string]string{"ca.crt": "PEM"})
	ca.Type = ClusterCAType
	if got := box.encryptSecret(ca, nil); got != ca {
		t.Fatal("the cluster CA Secret was sealed")
	}
	var none *secretBox
	if got := none.encryptSecret(legacy, nil); got != legacy {
		t.Fatal("a nil box sealed")
	}
	if b, err := newSecretBox("", ""); b != nil || err != nil {
		t.Fatalf("no secrets: %v %v", b, err)
	}
}
