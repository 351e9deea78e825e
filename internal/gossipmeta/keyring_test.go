package gossipmeta

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/hashicorp/memberlist"
)

func TestKeyringValidateApplyAndKeep(t *testing.T) {
	a, b, c := NewKey(), NewKey(), NewKey()
	for _, bad := range []struct {
		k    Keyring
		want string
	}{
		{Keyring{}, "0 keys"},
		{Keyring{Keys: [][]byte{a[:16]}, Primary: a[:16]}, "16 bytes"},
		{Keyring{Keys: [][]byte{a, a}, Primary: a}, "twice"},
		{Keyring{Keys: [][]byte{a}, Primary: b}, "primary"},
		{Keyring{Keys: [][]byte{a, b, c, NewKey(), NewKey()}, Primary: a}, "5 keys"},
	} {
		if err := bad.k.Validate(); err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("Validate(%v) = %v, want %q", bad.k.IDs(), err, bad.want)
		}
	}

	ring, err := memberlist.NewKeyring(nil, a)
	if err != nil {
		t.Fatal(err)
	}
	want := Keyring{Keys: [][]byte{b, c}, Primary: c}
	if err := Apply(ring, want); err != nil {
		t.Fatal(err)
	}
	if got := RingIDs(ring); !slices.Equal(got, want.IDs()) || got[0] != KeyID(c) {
		t.Fatalf("ring %v, want %v with %s first", got, want.IDs(), KeyID(c))
	}

	path := filepath.Join(t.TempDir(), "d", "keyring.json")
	if _, ok, err := LoadKeyring(path); ok || err != nil {
		t.Fatalf("no file: %v %v", ok, err)
	}
	want.Version = 7
	if err := SaveKeyring(path, want); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode: %v %v", fi, err)
	}
	got, ok, err := LoadKeyring(path)
	if err != nil || !ok || !got.Equal(want) || got.Version != 7 {
		t.Fatalf("loaded %v v%d %v %v", got.IDs(), got.Version, ok, err)
	}
	os.WriteFile(path, []byte(`{"keys":[]}`), 0o600)
	if _, _, err := LoadKeyring(path); err == nil || !strings.Contains(err.Error(), "delete it") {
		t.Fatalf("a broken file: %v", err)
	}
}
