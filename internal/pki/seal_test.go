package pki_test

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"encoding/json"
	"errors"
	"testing"

	"orch.dev/orch/internal/pki"
	"orch.dev/orch/internal/pki/pkitest"
)

func TestSealOpen(t *testing.T) {
	ca := pkitest.NewCA(t, "c")
	secret := []byte("cluster secret 1")
	s, err := ca.Seal(secret)
	if err != nil {
		t.Fatal(err)
	}
	// It travels as JSON inside a Raft entry and a snapshot.
	b, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	var back pki.SealedCA
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	opened, err := back.Open(secret)
	if err != nil {
		t.Fatal(err)
	}
	if !opened.Cert.Equal(ca.Cert) || !opened.Key.Public().(interface{ Equal(crypto.PublicKey) bool }).Equal(ca.Key.Public()) {
		t.Error("opened CA differs")
	}
	if d, _ := ca.Key.(*ecdsa.PrivateKey).Bytes(); bytes.Contains(s.SealedKey, d) {
		t.Error("sealed form contains the key in clear")
	}
	// The opened CA issues.
	key, _ := pki.NewKey()
	if _, err := opened.IssueNode(key.Public(), pki.RoleWorker, pki.NodeRequest{Name: "w"}, pki.IssueOptions{Now: ca.Cert.NotBefore.Add(pki.DefaultNodeValidity)}); err != nil {
		t.Errorf("opened CA cannot issue: %v", err)
	}
	// Two seals of the same key differ (fresh salt and nonce).
	s2, _ := ca.Seal(secret)
	if bytes.Equal(s.SealedKey, s2.SealedKey) {
		t.Error("two seals are identical")
	}
}

func TestOpenRefuses(t *testing.T) {
	ca := pkitest.NewCA(t, "c")
	other := pkitest.NewCA(t, "other")
	secret := []byte("right")
	s, _ := ca.Seal(secret)

	if _, err := s.Open([]byte("wrong")); !errors.Is(err, pki.ErrSealed) {
		t.Errorf("wrong secret: %v", err)
	}
	if _, err := s.Open(nil); !errors.Is(err, pki.ErrNoSecret) {
		t.Errorf("empty secret: %v", err)
	}
	if _, err := ca.Seal(nil); !errors.Is(err, pki.ErrNoSecret) {
		t.Errorf("seal with empty secret: %v", err)
	}
	if _, err := (&pki.CA{Cert: ca.Cert}).Seal(secret); !errors.Is(err, pki.ErrNoCAKey) {
		t.Errorf("seal without key: %v", err)
	}
	// The envelope opens only against the certificate it was sealed with.
	swapped := pki.SealedCA{CertPEM: pki.CertPEM(other.Cert), SealedKey: s.SealedKey}
	if _, err := swapped.Open(secret); !errors.Is(err, pki.ErrSealed) {
		t.Errorf("envelope under another certificate: %v", err)
	}
	// Any flipped bit is detected: in the header (salt) as a wrong key, in
	// the magic or version as a format error.
	for i := range s.SealedKey {
		b := bytes.Clone(s.SealedKey)
		b[i] ^= 0x10
		_, err := pki.SealedCA{CertPEM: s.CertPEM, SealedKey: b}.Open(secret)
		if !errors.Is(err, pki.ErrSealed) && !errors.Is(err, pki.ErrSealFormat) {
			t.Fatalf("flipped byte %d: %v", i, err)
		}
	}
	bad := map[string][]byte{
		"empty":     nil,
		"truncated": s.SealedKey[:40],
		"version 2": append(append([]byte("orchcak"), 2), s.SealedKey[8:]...),
		"no magic":  append([]byte("xxxxxxx"), s.SealedKey[7:]...),
	}
	for name, b := range bad {
		if _, err := (pki.SealedCA{CertPEM: s.CertPEM, SealedKey: b}).Open(secret); !errors.Is(err, pki.ErrSealFormat) {
			t.Errorf("%s: %v", name, err)
		}
	}
	if _, err := (pki.SealedCA{CertPEM: []byte("x"), SealedKey: s.SealedKey}).Open(secret); !errors.Is(err, pki.ErrSealFormat) {
		t.Errorf("bad certificate: %v", err)
	}
}
