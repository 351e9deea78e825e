package agent

import (
	"encoding/hex"
	"fmt"
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"orch.dev/orch/api"
	"orch.dev/orch/internal/join"
	"orch.dev/orch/internal/pki"
)

// Tokens are kept as Secrets in orch-system, as Kubernetes keeps bootstrap
// tokens in kube-system: one Secret per token, named token-<id>, of type
// orch.dev/token, whose data are the fields of its record. The record
// holds a hash of the token's secret, never the secret. Join tokens (role
// server or worker, format orch1, internal/join) let a node get its
// certificate; user tokens (role admin, edit or view, format orchu) are API
// credentials for a named user. Both expire; join tokens may be single-use.
const (
	// SecretTypeToken is the type of token records.
	SecretTypeToken   corev1.SecretType = "orch.dev/token"
	tokenSecretPrefix                   = "token-"
)

// tokenRecord is join.Record (whose Role, for a user token, is the user's
// access role) with the user a user token authenticates.
type tokenRecord struct {
	join.Record
	User      string // user tokens only
	CreatedBy string // who created the token, for listings and audits
}

// isUser reports whether the record is a user API token.
func (t *tokenRecord) isUser() bool { return AccessRole(t.Role).userRole() }

func tokenSecretName(id string) string { return tokenSecretPrefix + id }

// Data keys of a token record.
const (
	tkID, tkRole, tkUser, tkSecretHash, tkCAHash = "id", "role", "user", "secretHash", "caHash"
	tkCreatedAt, tkCreatedBy, tkExpiresAt        = "createdAt", "createdBy", "expiresAt"
	tkSingleUse, tkUsedAt, tkUsedBy, tkRevokedAt = "singleUse", "usedAt", "usedBy", "revokedAt"
	tokenTimeFormat                              = time.RFC3339Nano
)

// toSecret is the Secret that stores t.
func (t *tokenRecord) toSecret() *corev1.Secret {
	d := map[string][]byte{
		tkID: []byte(t.ID), tkRole: []byte(t.Role), tkSecretHash: []byte(hex.EncodeToString(t.SecretHash)),
		tkCreatedAt: []byte(t.CreatedAt.UTC().Format(tokenTimeFormat)), tkExpiresAt: []byte(t.ExpiresAt.UTC().Format(tokenTimeFormat)),
		tkSingleUse: []byte(strconv.FormatBool(t.SingleUse)),
	}
	set := func(k, v string) {
		if v != "" {
			d[k] = []byte(v)
		}
	}
	setTime := func(k string, v time.Time) {
		if !v.IsZero() {
			d[k] = []byte(v.UTC().Format(tokenTimeFormat))
		}
	}
	set(tkUser, t.User)
	set(tkCAHash, t.CAHash)
	set(tkCreatedBy, t.CreatedBy)
	set(tkUsedBy, t.UsedBy)
	setTime(tkUsedAt, t.UsedAt)
	setTime(tkRevokedAt, t.RevokedAt)
	s := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: SystemNamespace, Name: tokenSecretName(t.ID),
			Labels: map[string]string{"orch.dev/token-role": string(t.Role)}},
		Type: SecretTypeToken,
		Data: d,
	}
	api.Secret.SetTypeMeta(s)
	return s
}

// tokenRecordOf reads a token record from its (decrypted) Secret.
func tokenRecordOf(s *corev1.Secret) (tokenRecord, error) {
	var t tokenRecord
	if s.Type != SecretTypeToken {
		return t, fmt.Errorf("token record %s: not of type %s", s.Name, SecretTypeToken)
	}
	str := func(k string) string { return string(s.Data[k]) }
	var err error
	tm := func(k string, required bool) time.Time {
		v := str(k)
		if v == "" {
			if required && err == nil {
				err = fmt.Errorf("field %q missing", k)
			}
			return time.Time{}
		}
		parsed, perr := time.Parse(tokenTimeFormat, v)
		if perr != nil && err == nil {
			err = fmt.Errorf("field %q: %v", k, perr)
		}
		return parsed
	}
	t.ID, t.Role, t.User, t.CAHash, t.UsedBy, t.CreatedBy = str(tkID), pki.Role(str(tkRole)), str(tkUser), str(tkCAHash), str(tkUsedBy), str(tkCreatedBy)
	t.CreatedAt, t.ExpiresAt = tm(tkCreatedAt, true), tm(tkExpiresAt, true)
	t.UsedAt, t.RevokedAt = tm(tkUsedAt, false), tm(tkRevokedAt, false)
	t.SingleUse = str(tkSingleUse) == "true"
	if h, herr := hex.DecodeString(str(tkSecretHash)); herr != nil || len(h) == 0 {
		err = fmt.Errorf("field %q: not a hex hash", tkSecretHash)
	} else {
		t.SecretHash = h
	}
	switch {
	case err != nil:
	case t.ID == "" || tokenSecretName(t.ID) != s.Name:
		err = fmt.Errorf("field %q does not match the Secret's name", tkID)
	case !t.Role.IsNode() && !t.isUser():
		err = fmt.Errorf("field %q: unknown role %q", tkRole, t.Role)
	case t.isUser() && t.User == "":
		err = fmt.Errorf("field %q missing", tkUser)
	}
	if err != nil {
		return tokenRecord{}, fmt.Errorf("token record %s: %w", s.Name, err)
	}
	return t, nil
}

// TokenInfo is a token as listings show it: never the secret or its hash.
type TokenInfo struct {
	ID        string     `json:"id"`
	Role      string     `json:"role"`
	User      string     `json:"user,omitempty"`
	CreatedAt time.Time  `json:"createdAt"`
	CreatedBy string     `json:"createdBy,omitempty"`
	ExpiresAt time.Time  `json:"expiresAt"`
	SingleUse bool       `json:"singleUse,omitempty"`
	UsedAt    *time.Time `json:"usedAt,omitempty"`
	UsedBy    string     `json:"usedBy,omitempty"`
	RevokedAt *time.Time `json:"revokedAt,omitempty"`
	// Status is valid, expired, used or revoked.
	Status string `json:"status"`
}

func (t *tokenRecord) info(now time.Time) TokenInfo {
	i := TokenInfo{ID: t.ID, Role: string(t.Role), User: t.User, CreatedAt: t.CreatedAt, CreatedBy: t.CreatedBy,
		ExpiresAt: t.ExpiresAt, SingleUse: t.SingleUse, UsedBy: t.UsedBy, Status: "valid"}
	if !t.UsedAt.IsZero() {
		u := t.UsedAt
		i.UsedAt = &u
	}
	if !t.RevokedAt.IsZero() {
		r := t.RevokedAt
		i.RevokedAt = &r
	}
	switch {
	case !t.RevokedAt.IsZero():
		i.Status = "revoked"
	case !now.Before(t.ExpiresAt):
		i.Status = "expired"
	case t.SingleUse && !t.UsedAt.IsZero():
		i.Status = "used"
	}
	return i
}
