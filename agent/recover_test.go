package agent

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
)

// bootstrapped makes a data dir whose Raft log holds a three-server
// configuration, as a server that never recorded server.json left it.
func bootstrapped(t *testing.T) string {
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "raft"), 0o700)
	store, err := raftboltdb.NewBoltStore(filepath.Join(dir, "raft", "raft.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	snaps, err := raft.NewFileSnapshotStore(filepath.Join(dir, "raft"), 2, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	_, trans := raft.NewInmemTransport("10.0.0.11:7401")
	conf := raft.DefaultConfig()
	conf.LocalID = "s1"
	var servers []raft.Server
	for _, s := range []string{"s1", "s2", "s3"} {
		servers = append(servers, raft.Server{Suffrage: raft.Voter, ID: raft.ServerID(s), Address: raft.ServerAddress("10.0.0.1" + s[1:] + ":7401")})
	}
	if err := raft.BootstrapCluster(conf, store, store, snaps, trans, raft.Configuration{Servers: servers}); err != nil {
		t.Fatal(err)
	}
	return dir
}

// Without server.json, recover takes the server's address from the Raft
// configuration for the --name given, and refuses a name that is not in it
// or no name at all.
func TestRecoverWithoutIdentityFile(t *testing.T) {
	if _, err := Recover(RecoverOptions{DataDir: bootstrapped(t)}); err == nil || !strings.Contains(err.Error(), "--name: required") {
		t.Fatalf("recover without a name: %v", err)
	}
	if _, err := Recover(RecoverOptions{DataDir: bootstrapped(t), Name: "s9"}); err == nil || !strings.Contains(err.Error(), "not in the Raft configuration") {
		t.Fatalf("recover of a server not in the configuration: %v", err)
	}
	dir := bootstrapped(t)
	res, err := Recover(RecoverOptions{DataDir: dir, Name: "s2"})
	if err != nil {
		t.Fatal(err)
	}
	if res.ID != "s2" || res.Address != "10.0.0.12:7401" || len(res.Previous) != 3 {
		t.Fatalf("recover: %+v", res)
	}
	// What Raft will start with: s2 alone.
	store, err := raftboltdb.NewBoltStore(filepath.Join(dir, "raft", "raft.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	snaps, _ := raft.NewFileSnapshotStore(filepath.Join(dir, "raft"), 2, io.Discard)
	list, err := snaps.List()
	if err != nil || len(list) != 1 {
		t.Fatalf("snapshots after recover: %v %v", list, err)
	}
	if got := list[0].Configuration.Servers; len(got) != 1 || got[0].ID != "s2" || got[0].Address != "10.0.0.12:7401" || got[0].Suffrage != raft.Voter {
		t.Fatalf("configuration after recover: %+v", got)
	}
	if last, _ := store.LastIndex(); last != 0 {
		t.Errorf("the log still holds entries up to %d; recover compacts it into the snapshot", last)
	}
	if _, err := Recover(RecoverOptions{DataDir: t.TempDir()}); !errors.Is(err, ErrNoRaftState) {
		t.Errorf("recover of an empty dir: %v", err)
	}
}
