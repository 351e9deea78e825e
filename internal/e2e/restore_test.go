package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/util/sets"

	"orch.dev/orch/api"
	"orch.dev/orch/api/client"
	"orch.dev/orch/internal/testcluster"
)

// configMapNames lists the ConfigMaps one server holds, linearizably.
func configMapNames(t *testing.T, c *testcluster.Cluster, s *testcluster.Server) sets.Set[string] {
	t.Helper()
	list, err := c.Client(s.URL()).ListAll(context.Background(), api.ConfigMap, "default", client.ListOptions{})
	if err != nil {
		t.Fatalf("%s: %v", s.Name, err)
	}
	names := sets.New[string]()
	for _, o := range list.Items {
		names.Insert(o.GetName())
	}
	return names
}

// `orchctl operator snapshot restore` on real servers: damaged files are
// refused with the problem named and nothing changes; a good one puts every
// server back to the saved state (later objects gone), watches relist, and
// the same file restores into a fresh cluster.
func TestSnapshotRestore(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{Fast: true})
	ctx := context.Background()
	saved := sets.New[string]()
	for i := range 20 {
		name := fmt.Sprintf("before-%d", i)
		if _, err := c.Client().Create(ctx, configMap(name, nil)); err != nil {
			t.Fatal(err)
		}
		saved.Insert(name)
	}
	dir := t.TempDir()
	file := filepath.Join(dir, "site.snap")
	if out, err := c.Orchctl("operator", "snapshot", "save", file); err != nil {
		t.Fatalf("snapshot save: %v\n%s", err, out)
	}
	for i := range 10 {
		if _, err := c.Client().Create(ctx, configMap(fmt.Sprintf("after-%d", i), nil)); err != nil {
			t.Fatal(err)
		}
	}
	current := configMapNames(t, c, c.Servers[0])

	good, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	flipped := append([]byte(nil), good...)
	flipped[len(flipped)/2] ^= 0x40
	for name, tc := range map[string]struct {
		data []byte
		want string
	}{
		"flipped":   {flipped, "invalid snapshot archive"},
		"truncated": {good[:len(good)-len(good)/3], "invalid snapshot archive"},
		"empty":     {nil, "the file is empty"},
	} {
		bad := filepath.Join(dir, name+".snap")
		os.WriteFile(bad, tc.data, 0o600)
		out, err := c.Orchctl("operator", "snapshot", "restore", bad)
		if err == nil || !strings.Contains(out, tc.want) || !strings.Contains(out, "nothing was restored") {
			t.Errorf("restore of a %s file: %v\n%s", name, err, out)
		}
		// The servers refuse it too, whoever sends it.
		_, err = c.Client().Do(ctx, client.Request{Method: "POST", Path: "/v1/operator/snapshot/restore", Body: tc.data})
		if err == nil || !strings.Contains(err.Error(), "the cluster is unchanged") {
			t.Errorf("server-side restore of a %s file: %v", name, err)
		}
		for _, s := range c.Servers {
			if got := configMapNames(t, c, s); !got.Equal(current) {
				t.Fatalf("%s changed after a refused %s restore: %v", s.Name, name, sets.List(got.SymmetricDifference(current)))
			}
		}
	}

	w, err := c.Client(c.Servers[2].URL()).Watch(ctx, api.ConfigMap, "default", client.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	start := time.Now()
	out, err := c.Orchctl("operator", "snapshot", "restore", file)
	if err != nil || !strings.Contains(out, "Restored "+file) {
		t.Fatalf("restore: %v\n%s", err, out)
	}
	t.Logf("restore of %d bytes took %s: %s", len(good), time.Since(start).Round(time.Millisecond), strings.TrimSpace(out))
	for _, s := range c.Servers {
		if got := configMapNames(t, c, s); !got.Equal(saved) {
			t.Errorf("%s after the restore: %d configmaps, differing from the snapshot's in %v", s.Name, got.Len(), sets.List(got.SymmetricDifference(saved)))
		}
	}
	// The watch (on a follower, say) got 410 Gone, listed again and
	// reported the objects the restore removed.
	deleted := sets.New[string]()
	timeout := time.After(30 * time.Second)
	for deleted.Len() < 10 {
		select {
		case e, ok := <-w.Events():
			if !ok {
				t.Fatalf("watch ended: %v", w.Err())
			}
			if e.Type == client.Deleted {
				deleted.Insert(e.Object.GetName())
			}
		case <-timeout:
			t.Fatalf("the watch reported only %v deleted", sets.List(deleted))
		}
	}
	if !deleted.Equal(current.Difference(saved)) {
		t.Errorf("the watch reported %v deleted, want the 10 objects written after the save", sets.List(deleted))
	}
	if _, err := c.Client().Create(ctx, configMap("after-restore", nil)); err != nil {
		t.Fatalf("write after the restore: %v", err)
	}

	// Disaster recovery into a fresh cluster.
	fresh := testcluster.Start(t, testcluster.Options{Servers: 1, Fast: true})
	if out, err := fresh.Orchctl("operator", "snapshot", "restore", file); err != nil {
		t.Fatalf("restore into a fresh cluster: %v\n%s", err, out)
	}
	if got := configMapNames(t, fresh, fresh.Servers[0]); !got.Equal(saved) {
		t.Errorf("fresh cluster after the restore: %v", sets.List(got.SymmetricDifference(saved)))
	}
}
