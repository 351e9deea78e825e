package gossipmeta

import (
	"orch.dev/orch/internal/atomicfile"

	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"

	"github.com/hashicorp/memberlist"
)

// Keyring is the cluster's gossip keys (memberlist's AES-256-GCM keys):
// Primary encrypts what a member sends, every key decrypts what it
// receives. Rotation (`orchctl operator gossip keyring`) installs a key
// everywhere, then makes it primary everywhere, then removes the old one;
// each step waits until every member announces (Meta.Keys) that it took
// the one before. The servers keep the keyring in Raft and members fetch
// it over their authenticated API channel; each keeps a copy in its data
// directory so that a restart speaks the current key.
type Keyring struct {
	Keys    [][]byte `json:"keys"`
	Primary []byte   `json:"primary"`
	// Version is the Raft index of the keyring's last change (0: the
	// default keyring of a cluster that never rotated). A member never
	// goes back to an older version, which a lagging server may serve.
	Version uint64 `json:"version,omitempty"`
}

// KeyLen is the length of a gossip key: AES-256.
const KeyLen = 32

// MaxKeys bounds a keyring, so that every member's announcement of the
// key ids it holds fits memberlist's metadata.
const MaxKeys = 4

// KeyID names a key without revealing it: 8 hex digits of a hash.
func KeyID(key []byte) string {
	sum := sha256.Sum256(append([]byte("orch gossip key id v1\x00"), key...))
	return hex.EncodeToString(sum[:4])
}

// NewKey returns a fresh random gossip key.
func NewKey() []byte {
	k := make([]byte, KeyLen)
	rand.Read(k)
	return k
}

// DefaultKeyring is the keyring of a cluster that never rotated: the key
// derived from the cluster secret.
func DefaultKeyring(clusterSecret string) (Keyring, error) {
	k, err := Key(clusterSecret)
	if err != nil {
		return Keyring{}, err
	}
	return Keyring{Keys: [][]byte{k}, Primary: k}, nil
}

// Validate checks the shape: 1 to MaxKeys distinct 32-byte keys, the
// primary among them.
func (k Keyring) Validate() error {
	if len(k.Keys) == 0 || len(k.Keys) > MaxKeys {
		return fmt.Errorf("gossip keyring: %d keys, want 1 to %d", len(k.Keys), MaxKeys)
	}
	for i, key := range k.Keys {
		if len(key) != KeyLen {
			return fmt.Errorf("gossip keyring: key %d is %d bytes, want %d", i, len(key), KeyLen)
		}
		if slices.IndexFunc(k.Keys[:i], func(o []byte) bool { return bytes.Equal(o, key) }) >= 0 {
			return fmt.Errorf("gossip keyring: key %s appears twice", KeyID(key))
		}
	}
	if !k.Has(k.Primary) {
		return errors.New("gossip keyring: the primary key is not one of the keys")
	}
	return nil
}

// Has reports whether key is in the keyring.
func (k Keyring) Has(key []byte) bool {
	return slices.IndexFunc(k.Keys, func(o []byte) bool { return bytes.Equal(o, key) }) >= 0
}

// ByID finds a key by its id.
func (k Keyring) ByID(id string) ([]byte, bool) {
	for _, key := range k.Keys {
		if KeyID(key) == id {
			return key, true
		}
	}
	return nil, false
}

// IDs are the keys' ids, the primary's first, the others sorted: what a
// member announces in Meta.Keys.
func (k Keyring) IDs() []string {
	return idsOf(k.Keys, k.Primary)
}

func idsOf(keys [][]byte, primary []byte) []string {
	var rest []string
	for _, key := range keys {
		if !bytes.Equal(key, primary) {
			rest = append(rest, KeyID(key))
		}
	}
	slices.Sort(rest)
	if primary == nil {
		return rest
	}
	return append([]string{KeyID(primary)}, rest...)
}

// Equal reports whether two keyrings hold the same keys and primary.
func (k Keyring) Equal(o Keyring) bool { return slices.Equal(k.IDs(), o.IDs()) }

// Memberlist is a new memberlist keyring holding k.
func (k Keyring) Memberlist() (*memberlist.Keyring, error) {
	if err := k.Validate(); err != nil {
		return nil, err
	}
	return memberlist.NewKeyring(k.Keys, k.Primary)
}

// Apply makes ring hold exactly k: new keys first, then the primary, then
// the removals, so that at no moment ring lacks a key k decrypts with.
func Apply(ring *memberlist.Keyring, k Keyring) error {
	if err := k.Validate(); err != nil {
		return err
	}
	for _, key := range k.Keys {
		if err := ring.AddKey(key); err != nil {
			return err
		}
	}
	if err := ring.UseKey(k.Primary); err != nil {
		return err
	}
	for _, key := range ring.GetKeys() {
		if !k.Has(key) {
			if err := ring.RemoveKey(key); err != nil {
				return err
			}
		}
	}
	return nil
}

// RingIDs are the ids a memberlist keyring holds, primary first.
func RingIDs(ring *memberlist.Keyring) []string {
	return idsOf(ring.GetKeys(), ring.GetPrimaryKey())
}

// LoadKeyring reads a keyring file; ok is false when there is none.
func LoadKeyring(path string) (k Keyring, ok bool, err error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return Keyring{}, false, nil
	}
	if err == nil {
		err = json.Unmarshal(b, &k)
	}
	if err == nil {
		err = k.Validate()
	}
	if err != nil {
		return Keyring{}, false, fmt.Errorf("%s: %w (delete it to start from the key of --token or the join token)", path, err)
	}
	return k, true, nil
}

// SaveKeyring writes k to path (0600, atomically).
func SaveKeyring(path string, k Keyring) error {
	b, err := json.Marshal(k)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	return atomicfile.Write(path, b, 0o600)
}
