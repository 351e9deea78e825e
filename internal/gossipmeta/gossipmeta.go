// Package gossipmeta is the metadata every gossip member announces: the
// contract between servers, workers and simulators, which find each other
// (and the API servers) through memberlist.
package gossipmeta

import (
	"crypto/hkdf"
	"crypto/sha256"
	"encoding/json"
)

// Member roles.
const (
	RoleServer = "server"
	RoleWorker = "worker"
)

// Meta is gossiped with every member (memberlist caps it at 512 bytes).
type Meta struct {
	Role    string `json:"r"`
	HTTP    string `json:"h,omitempty"`  // API address of a server, host:port
	Raft    string `json:"ra,omitempty"` // Raft address of a server
	Expect  int    `json:"e,omitempty"`  // --bootstrap-expect of a server
	Version string `json:"v,omitempty"`
	// Keys are the ids (KeyID) of the gossip keys the member holds, the
	// primary's first: how a rotation knows every member took a step.
	Keys []string `json:"k,omitempty"`
}

// Encode is the wire form.
func (m Meta) Encode() []byte {
	b, _ := json.Marshal(m)
	return b
}

// Decode reads a member's metadata.
func Decode(b []byte) (Meta, error) {
	var m Meta
	if len(b) == 0 {
		return m, nil
	}
	err := json.Unmarshal(b, &m)
	return m, err
}

// Key derives memberlist's AES key from the cluster token.
func Key(token string) ([]byte, error) {
	return hkdf.Key(sha256.New, []byte(token), nil, "orch gossip key v1", 32)
}
