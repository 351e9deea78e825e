package orchd

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
)

// orchd recover refuses, with one line saying why and without writing
// anything, what it cannot safely recover; the HA flags are checked too.
// (internal/e2e TestRecoverAfterQuorumLoss runs a real recovery.)
func TestRecoverAndHAFlagRefusals(t *testing.T) {
	empty := t.TempDir()
	// A data dir whose Raft log exists but never held state, recorded as s1's.
	fresh := t.TempDir()
	os.MkdirAll(filepath.Join(fresh, "raft"), 0o700)
	store, err := raftboltdb.NewBoltStore(filepath.Join(fresh, "raft", "raft.db"))
	if err != nil {
		t.Fatal(err)
	}
	store.Close()
	os.WriteFile(filepath.Join(fresh, "server.json"), []byte(`{"name":"s1","raftAddress":"127.0.0.1:7401"}`), 0o600)

	dir := t.TempDir()
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"recover"}, "--data-dir: required"},
		{[]string{"recover", "--data-dir", empty}, "no Raft state in " + empty},
		{[]string{"recover", "--data-dir", fresh, "--name", "s2"}, `the data dir ` + fresh + ` belongs to server "s1"`},
		{[]string{"recover", "--data-dir", fresh}, "the server never joined a cluster, nothing to recover"},
		{[]string{"recover", "--data-dir", fresh, "extra"}, `unexpected argument "extra"`},
		{[]string{"agent", "--server", "--name", "s1", "--data-dir", dir, "--snapshot-retain", "0"}, "--snapshot-retain 0"},
		{[]string{"agent", "--server", "--name", "s1", "--data-dir", dir, "--snapshot-interval", "-1s"}, "--snapshot-interval -1s"},
		{[]string{"agent", "--server", "--name", "s1", "--data-dir", dir, "--min-free-disk", "lots"}, `--min-free-disk "lots"`},
		{[]string{"agent", "--server", "--name", "s1", "--data-dir", dir, "--dead-server-cleanup", "-5m"}, "--dead-server-cleanup -5m0s"},
	}
	for _, tc := range cases {
		var stderr bytes.Buffer
		code := Main(append([]string{"orchd"}, tc.args...), &stderr)
		out := strings.TrimSpace(stderr.String())
		if code == 0 || !strings.Contains(out, tc.want) || strings.Count(out, "\n") > 0 {
			t.Errorf("%v: exit %d, output %q; want a non-zero exit and one line containing %q", tc.args, code, out, tc.want)
		}
	}
	if entries, _ := os.ReadDir(empty); len(entries) != 0 {
		t.Errorf("a refused recover wrote into %s: %v", empty, entries)
	}
	if _, err := os.Stat(filepath.Join(fresh, "raft", "snapshots")); err == nil {
		t.Errorf("a refused recover created a snapshot store")
	}
}
