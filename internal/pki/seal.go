package pki

import (
	"bytes"
	"crypto"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"fmt"
)

// SealedCA is the cluster CA as it is replicated through Raft and kept in
// snapshots: the certificate in clear, the private key in a versioned,
// authenticated envelope that only holders of the cluster secret can open.
// It must never be served by the API: only servers read it, from their FSM.
type SealedCA struct {
	CertPEM   []byte `json:"cert"`
	SealedKey []byte `json:"sealedKey"`
}

// Envelope format, version 1 (all lengths in bytes):
//
//	magic "orchcak" (7) | version 0x01 (1) | salt (32) | nonce (12) | AES-256-GCM ciphertext+tag
//
// The key is HKDF-SHA256(secret, salt, "orch ca key v1"), fresh per seal
// because the salt is. The additional data is the header (magic, version,
// salt) and the SHA-256 of the CA certificate, so an envelope opens only
// against the certificate it was sealed with and any edit to it fails.
// The plaintext is the key's PKCS #8 DER. A future version (for instance a
// memory-hard KDF for human-chosen secrets) takes a new version byte; Open
// keeps reading every older one.
const (
	sealMagic    = "orchcak"
	sealV1       = 1
	sealSaltLen  = 32
	sealNonceLen = 12
	sealV1Info   = "orch ca key v1"
	sealHeadLen  = len(sealMagic) + 1 + sealSaltLen
)

var (
	// ErrSealed means a sealed CA key cannot be opened with the secret
	// given: the secret is wrong, or the envelope or certificate was altered.
	ErrSealed = errors.New("cannot open the sealed CA key: wrong cluster secret, or the sealed key or CA certificate was altered")
	// ErrSealFormat means the bytes are not a sealed CA key this version reads.
	ErrSealFormat = errors.New("not a sealed CA key in a known format")
	// ErrNoSecret means sealing or opening was asked with an empty secret.
	ErrNoSecret = errors.New("the cluster secret is empty")
)

// Seal encrypts the CA key under secret (the cluster secret).
func (ca *CA) Seal(secret []byte) (SealedCA, error) {
	if ca.Key == nil {
		return SealedCA{}, ErrNoCAKey
	}
	if len(secret) == 0 {
		return SealedCA{}, ErrNoSecret
	}
	plain, err := x509.MarshalPKCS8PrivateKey(ca.Key)
	if err != nil {
		return SealedCA{}, err
	}
	head := make([]byte, sealHeadLen, sealHeadLen+sealNonceLen+len(plain)+16)
	copy(head, sealMagic)
	head[len(sealMagic)] = sealV1
	rand.Read(head[len(sealMagic)+1:])
	aead, err := sealAEAD(secret, head[len(sealMagic)+1:])
	if err != nil {
		return SealedCA{}, err
	}
	nonce := make([]byte, sealNonceLen)
	rand.Read(nonce)
	out := append(head, nonce...)
	out = aead.Seal(out, nonce, plain, sealAD(head, ca.Cert))
	clear(plain)
	return SealedCA{CertPEM: CertPEM(ca.Cert), SealedKey: out}, nil
}

// Open decrypts the CA key with secret and checks that it is the key of
// the sealed certificate.
func (s SealedCA) Open(secret []byte) (*CA, error) {
	if len(secret) == 0 {
		return nil, ErrNoSecret
	}
	cert, err := ParseCertPEM(s.CertPEM)
	if err != nil {
		return nil, fmt.Errorf("%w: certificate: %v", ErrSealFormat, err)
	}
	b := s.SealedKey
	if len(b) < sealHeadLen || !bytes.Equal(b[:len(sealMagic)], []byte(sealMagic)) {
		return nil, ErrSealFormat
	}
	if v := b[len(sealMagic)]; v != sealV1 {
		return nil, fmt.Errorf("%w: version %d (this orchd reads version %d)", ErrSealFormat, v, sealV1)
	}
	if len(b) < sealHeadLen+sealNonceLen+16 {
		return nil, fmt.Errorf("%w: truncated", ErrSealFormat)
	}
	head, nonce, ct := b[:sealHeadLen], b[sealHeadLen:sealHeadLen+sealNonceLen], b[sealHeadLen+sealNonceLen:]
	aead, err := sealAEAD(secret, head[len(sealMagic)+1:])
	if err != nil {
		return nil, err
	}
	plain, err := aead.Open(nil, nonce, ct, sealAD(head, cert))
	if err != nil {
		return nil, ErrSealed
	}
	defer clear(plain)
	key, err := parsePKCS8Signer(plain)
	if err != nil {
		return nil, fmt.Errorf("%w: key: %v", ErrSealFormat, err)
	}
	if !publicKeyEqual(key.Public(), cert.PublicKey) {
		return nil, fmt.Errorf("%w: the key does not belong to the certificate", ErrSealed)
	}
	return &CA{Cert: cert, Key: key}, nil
}

func sealAEAD(secret, salt []byte) (cipher.AEAD, error) {
	k, err := hkdf.Key(sha256.New, secret, salt, sealV1Info, 32)
	if err != nil {
		return nil, err
	}
	block, err := aes.NewCipher(k)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

func sealAD(head []byte, cert *x509.Certificate) []byte {
	sum := sha256.Sum256(cert.Raw)
	return append(append([]byte(nil), head...), sum[:]...)
}

func publicKeyEqual(a, b crypto.PublicKey) bool {
	ka, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && ka.Equal(b)
}
