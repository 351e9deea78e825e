package agent

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"

	corev1 "k8s.io/api/core/v1"
)

// Secrets are encrypted at rest: the API server seals every value of a
// Secret's data before it proposes the object, so the Raft log, the FSM's
// state, snapshots and the change history hold only ciphertext, and opens
// them when it serves the Secret to a caller allowed to read it. FSM.Apply
// never encrypts (it stays deterministic); the server that proposes does.
//
// A sealed value is
//
//	"orch:enc:v1:" <key id, 8 hex digits> ":" <nonce, 12 bytes> <AES-256-GCM ciphertext and tag>
//
// The key is derived with HKDF-SHA256 from the cluster secret; its id is a
// hash of the key, so a server holding several keys (the current one and
// those of earlier cluster secrets) opens values sealed with any of them and
// always seals with the current one. The additional data binds a value to
// its namespace, Secret name and data key: a value copied into another
// Secret or key does not open. Values without the prefix are plaintext
// written before encryption (or by a server without a cluster secret) and
// are served as they are.
//
// Secrets of type orch.dev/cluster-ca are stored as they are: ca.crt is
// public and ca.sealed is already sealed with the cluster secret (pki.Seal),
// and servers read them straight from the FSM.
const (
	sealedPrefix   = "orch:enc:v1:"
	secretKeyInfo  = "orch secret encryption v1"
	secretKeyIDLen = 8 // hex digits
	gcmNonceLen    = 12
)

// errSecretKey means a sealed value cannot be opened by this server: it was
// sealed with a key this server does not hold (another cluster secret), or
// it was altered.
var errSecretKey = errors.New("secret value cannot be decrypted with this server's keys")

type secretKey struct {
	id   string
	aead cipher.AEAD
}

// secretBox holds the keys Secrets are sealed with. A nil box (no cluster
// secret: authentication off) stores Secrets in plaintext.
type secretBox struct {
	current *secretKey
	byID    map[string]*secretKey
}

// newSecretBox derives the keys from cluster secrets: the first seals, all
// open. With no non-empty secret it returns nil.
func newSecretBox(clusterSecrets ...string) (*secretBox, error) {
	b := &secretBox{byID: map[string]*secretKey{}}
	for _, s := range clusterSecrets {
		if s == "" {
			continue
		}
		k, err := deriveSecretKey(s)
		if err != nil {
			return nil, err
		}
		if b.current == nil {
			b.current = k
		}
		b.byID[k.id] = k
	}
	if b.current == nil {
		return nil, nil
	}
	return b, nil
}

func deriveSecretKey(clusterSecret string) (*secretKey, error) {
	key, err := hkdf.Key(sha256.New, []byte(clusterSecret), nil, secretKeyInfo, 32)
	if err != nil {
		return nil, err
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(append([]byte("orch secret key id v1\x00"), key...))
	return &secretKey{id: hex.EncodeToString(sum[:])[:secretKeyIDLen], aead: aead}, nil
}

func sealedAD(ns, name, key string) []byte {
	return []byte(ns + "/" + name + "\x00" + key)
}

// isSealed reports whether v carries the sealed-value prefix.
func isSealed(v []byte) bool { return bytes.HasPrefix(v, []byte(sealedPrefix)) }

func (b *secretBox) seal(ns, name, key string, plain []byte) []byte {
	k := b.current
	out := make([]byte, 0, len(sealedPrefix)+secretKeyIDLen+1+gcmNonceLen+len(plain)+k.aead.Overhead())
	out = append(out, sealedPrefix...)
	out = append(out, k.id...)
	out = append(out, ':')
	nonce := make([]byte, gcmNonceLen)
	rand.Read(nonce)
	out = append(out, nonce...)
	return k.aead.Seal(out, nonce, plain, sealedAD(ns, name, key))
}

func (b *secretBox) open(ns, name, key string, v []byte) ([]byte, error) {
	if !isSealed(v) {
		return v, nil
	}
	rest := v[len(sealedPrefix):]
	if len(rest) < secretKeyIDLen+1+gcmNonceLen || rest[secretKeyIDLen] != ':' {
		return nil, fmt.Errorf("%w: malformed sealed value", errSecretKey)
	}
	if b == nil {
		return nil, fmt.Errorf("%w: this server has no cluster secret", errSecretKey)
	}
	k := b.byID[string(rest[:secretKeyIDLen])]
	if k == nil {
		return nil, fmt.Errorf("%w: sealed with key %s, which this server does not hold", errSecretKey, rest[:secretKeyIDLen])
	}
	body := rest[secretKeyIDLen+1:]
	plain, err := k.aead.Open(nil, body[:gcmNonceLen], body[gcmNonceLen:], sealedAD(ns, name, key))
	if err != nil {
		return nil, fmt.Errorf("%w: key %s does not open it (altered?)", errSecretKey, k.id)
	}
	return plain, nil
}

// encryptSecret returns s with every data value sealed, ready to propose
// (s itself is not changed). A value equal to the one prev (the stored
// Secret, sealed with the current key) holds under the same key keeps
// prev's ciphertext, so an update that changes nothing stays a no-op in
// the FSM; a value sealed with a previous key is sealed again (reseal).
func (b *secretBox) encryptSecret(s, prev *corev1.Secret) *corev1.Secret {
	if b == nil || s.Type == ClusterCAType || len(s.Data) == 0 {
		return s
	}
	out := s.DeepCopy()
	for key, v := range s.Data {
		if prev != nil {
			if old, ok := prev.Data[key]; ok && isSealed(old) && b.sealedWithCurrent(old) {
				if plain, err := b.open(prev.Namespace, prev.Name, key, old); err == nil && bytes.Equal(plain, v) && prev.Namespace == s.Namespace && prev.Name == s.Name {
					out.Data[key] = old
					continue
				}
			}
		}
		out.Data[key] = b.seal(s.Namespace, s.Name, key, v)
	}
	return out
}

// decryptSecret returns s with its values opened (s itself, when nothing
// is sealed). The error names the Secret and key, never a value.
func (b *secretBox) decryptSecret(s *corev1.Secret) (*corev1.Secret, error) {
	sealed := false
	for _, v := range s.Data {
		if isSealed(v) {
			sealed = true
			break
		}
	}
	if !sealed {
		return s, nil
	}
	out := s.DeepCopy()
	for key, v := range s.Data {
		plain, err := b.open(s.Namespace, s.Name, key, v)
		if err != nil {
			return nil, fmt.Errorf("secret %s/%s key %q: %w", s.Namespace, s.Name, key, err)
		}
		out.Data[key] = plain
	}
	return out, nil
}

// sealedWithCurrent reports whether a sealed value names the current key.
func (b *secretBox) sealedWithCurrent(v []byte) bool {
	rest := v[len(sealedPrefix):]
	return len(rest) > secretKeyIDLen && string(rest[:secretKeyIDLen]) == b.current.id
}

// needsReseal reports whether any value of s is plaintext or sealed with
// a key other than the current one.
func (b *secretBox) needsReseal(s *corev1.Secret) bool {
	if b == nil || s.Type == ClusterCAType {
		return false
	}
	for _, v := range s.Data {
		if !isSealed(v) || !b.sealedWithCurrent(v) {
			return true
		}
	}
	return false
}
