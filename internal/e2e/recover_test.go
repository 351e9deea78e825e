package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"orch.dev/orch/api"
	"orch.dev/orch/api/client"
	"orch.dev/orch/internal/testcluster"
)

// The quorum-loss runbook of docs/operations.md, executed: two of three
// servers are lost for good; `orchd recover` on the survivor (refused while
// it runs) makes it the only voter, it serves alone with every write it
// had, and new servers with empty data dirs join it as voters.
func TestRecoverAfterQuorumLoss(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{Fast: true})
	ctx := context.Background()
	for i := range 20 {
		if _, err := c.Client().Create(ctx, configMap(fmt.Sprintf("precious-%d", i), map[string]string{"i": fmt.Sprint(i)})); err != nil {
			t.Fatal(err)
		}
	}
	survivor, lost := c.Servers[0], c.Servers[1:]
	for _, s := range lost {
		s.Kill()
	}

	// Refused while orchd runs on the data dir, and on a dir without Raft state.
	if out, err := c.Orchd("recover", "--data-dir", survivor.DataDir); err == nil || !strings.Contains(out, "an orchd process is running on "+survivor.DataDir) {
		t.Fatalf("recover while orchd runs: %v\n%s", err, out)
	}
	empty := t.TempDir()
	if out, err := c.Orchd("recover", "--data-dir", empty); err == nil || !strings.Contains(out, "no Raft state") {
		t.Fatalf("recover of an empty dir: %v\n%s", err, out)
	}
	if entries, _ := os.ReadDir(empty); len(entries) != 0 {
		t.Fatalf("a refused recover wrote into the empty dir: %v", entries)
	}

	survivor.Stop()
	start := time.Now()
	out, err := c.Orchd("recover", "--data-dir", survivor.DataDir)
	if err != nil || !strings.Contains(out, survivor.Name+" at "+survivor.IP+":7401 is now the only voter") {
		t.Fatalf("recover: %v\n%s", err, out)
	}
	recovered := time.Since(start)
	if err := survivor.Start(); err != nil {
		t.Fatal(err)
	}
	cl := c.Client(survivor.URL())
	c.Eventually(30*time.Second, "a write through the recovered server", func() bool {
		_, err := cl.Create(ctx, configMap("after-recover", nil))
		return err == nil
	})
	serving := time.Since(start)
	t.Logf("orchd recover ran in %s; first acknowledged write %s after the command started (includes the restart)", recovered.Round(time.Millisecond), serving.Round(time.Millisecond))
	peers, err := c.Peers(survivor)
	if err != nil || len(peers) != 1 || !peers[0].Leader || peers[0].ID != survivor.Name {
		t.Fatalf("configuration after recover: %+v %v", peers, err)
	}
	list, err := cl.ListAll(ctx, api.ConfigMap, "default", client.ListOptions{})
	if err != nil || len(list.Items) != 21 {
		t.Fatalf("the recovered server holds %d configmaps (%v), want the 20 written before and 1 after", len(list.Items), err)
	}

	// The lost servers' data dirs are wiped (the runbook requires it); new
	// servers with empty data dirs join and become voters.
	for _, s := range lost {
		os.RemoveAll(s.DataDir)
	}
	added := []*testcluster.Server{c.AddServer(), c.AddServer()}
	c.WaitVoters(3, 60*time.Second)
	for _, s := range added {
		obj, err := c.Client(s.URL()).Get(ctx, api.ConfigMap, "default", "precious-19", false)
		if err != nil || obj.GetName() != "precious-19" {
			t.Fatalf("%s does not serve the recovered state: %v", s.Name, err)
		}
	}
	if _, err := os.Stat(filepath.Join(survivor.DataDir, "server.json")); err != nil {
		t.Errorf("the data dir records no identity: %v", err)
	}
}
