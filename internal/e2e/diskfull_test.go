package e2e

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	"go.etcd.io/bbolt"

	"orch.dev/orch/api/client"
	"orch.dev/orch/fsm"
	"orch.dev/orch/internal/testcluster"
)

// mountTmpfs mounts a tmpfs of size bytes on dir for the rest of the test
// (unmounted in cleanup, whatever happens), or skips the test when this
// machine does not allow it.
func mountTmpfs(t *testing.T, dir string, size int64) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, fmt.Sprintf("size=%d,mode=0700", size)); err != nil {
		t.Skipf("cannot mount a tmpfs to fill (needs root): %v", err)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(dir, 0); err != nil {
			// A process may still hold it: detach it lazily.
			if err := syscall.Unmount(dir, syscall.MNT_DETACH); err != nil {
				t.Errorf("unmount %s: %v", dir, err)
			}
		}
	})
}

// fill writes a file of zeros in dir until only keep bytes are free (or the
// filesystem is full when keep is 0).
func fill(t *testing.T, dir, name string, keep int64) {
	t.Helper()
	f, err := os.Create(filepath.Join(dir, name))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	chunk := make([]byte, 64<<10)
	for {
		var st syscall.Statfs_t
		if err := syscall.Statfs(dir, &st); err != nil {
			t.Fatal(err)
		}
		free := int64(st.Bavail) * int64(st.Bsize)
		if free <= keep {
			return
		}
		n := min(int64(len(chunk)), free-keep)
		if _, err := f.Write(chunk[:n]); err != nil {
			if errors.Is(err, syscall.ENOSPC) && keep == 0 {
				return
			}
			t.Fatal(err)
		}
	}
}

// A server whose disk fills: as leader it hands leadership over, it refuses
// the writes sent to it with an error naming its disk (clients go to the
// other servers and see no failure), the cluster keeps writing (and changes
// leader) while its disk is completely full, and when space returns it
// catches up. Its Raft log and snapshots are intact afterwards.
func TestDiskFullServer(t *testing.T) {
	const size, reserve = 48 << 20, 12 << 20
	// Frequent Raft snapshots, so that some are attempted on the full disk.
	c := testcluster.Start(t, testcluster.Options{Fast: true, Args: []string{"--min-free-disk", fmt.Sprint(reserve),
		"--snapshot-threshold", "64", "--raft-trailing-logs", "64", "--raft-snapshot-interval", "100ms"},
		Prepare: func(s *testcluster.Server) error {
			if s.Name == "s1" {
				mountTmpfs(t, s.DataDir, size)
			}
			return nil
		}})
	s1 := c.Servers[0]
	ctx := context.Background()
	cl := c.Client()
	if _, err := cl.Do(ctx, clientPost("/v1/operator/raft/transfer-leader?to=s1")); err != nil {
		t.Fatal(err)
	}
	c.Eventually(10*time.Second, "s1 to lead", func() bool { return c.Leader() == s1 })
	w := startWriters(cl, 4, "disk")
	w.waitFor(t, 100)

	// Below the reserve: s1 hands leadership over and refuses writes.
	fill(t, s1.DataDir, "fill-reserve", reserve/2)
	c.WaitLeader(s1, 15*time.Second)
	code, body := post(t, c.HTTPClient(), s1.URL()+"/api/v1/namespaces/default/configmaps", `{"metadata":{"name":"direct"}}`)
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "insufficient storage on server s1: its data dir "+s1.DataDir) {
		t.Fatalf("a write sent to the full server: %d %s", code, body)
	}
	if code, body := get(t, c.HTTPClient(), s1.URL()+"/readyz"); code != http.StatusServiceUnavailable || !strings.Contains(body, "data dir almost full") {
		t.Errorf("readyz of the full server: %d %s", code, body)
	}
	w.waitFor(t, 100)

	// Completely full: its log store fails; the others go on.
	fill(t, s1.DataDir, "fill-all", 0)
	w.waitFor(t, 300)
	if s1.Exited() {
		t.Fatal("the full server exited")
	}
	if !s1.LogContains("no space left on device") {
		t.Fatal("s1 never ran out of space: the test did not fill its disk")
	}
	// A new term while s1 has no byte left: Raft must persist it (it panics
	// when it cannot); bbolt's freed pages leave room for that write.
	l := c.Leader()
	if _, err := cl.Do(ctx, clientPost("/v1/operator/raft/transfer-leader")); err != nil {
		t.Fatal(err)
	}
	c.WaitLeader(l, 10*time.Second)
	w.waitFor(t, 100)
	if s1.Exited() || s1.LogContains("failed to save current term") {
		t.Fatal("s1 could not persist a new term on its full disk")
	}

	// Space returns: s1 catches up and takes writes again.
	os.Remove(filepath.Join(s1.DataDir, "fill-all"))
	os.Remove(filepath.Join(s1.DataDir, "fill-reserve"))
	c.Eventually(30*time.Second, "s1 ready again", func() bool {
		code, _ := get(t, c.HTTPClient(), s1.URL()+"/readyz")
		return code == http.StatusOK
	})
	if _, err := c.Client(s1.URL()).Create(ctx, configMap("via-s1-after", nil)); err != nil {
		t.Fatalf("write through s1 after space returned: %v", err)
	}
	w.waitFor(t, 100)
	acked, failed := w.stop()
	for _, err := range failed {
		t.Errorf("client saw a failed write: %v", err)
	}
	t.Logf("%d acknowledged writes while s1's disk filled and emptied, longest stall %s", acked.Len(), w.maxGap)
	assertEverywhere(t, c, acked)

	// Nothing on s1's disk is damaged: the log passes bbolt's consistency
	// check, every snapshot decodes, and s1 restarts with all the writes.
	s1.Kill()
	checkRaftData(t, filepath.Join(s1.DataDir, "raft"))
	if err := s1.Start(); err != nil {
		t.Fatal(err)
	}
	c.WaitVoters(3, 30*time.Second)
	assertEverywhere(t, c, acked)
}

// checkRaftData verifies a stopped server's Raft log and snapshots.
func checkRaftData(t *testing.T, dir string) {
	t.Helper()
	db, err := bbolt.Open(filepath.Join(dir, "raft.db"), 0o600, &bbolt.Options{ReadOnly: true, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	err = db.View(func(tx *bbolt.Tx) error {
		for err := range tx.Check() {
			return err
		}
		return nil
	})
	db.Close()
	if err != nil {
		t.Fatalf("raft.db fails bbolt's consistency check: %v", err)
	}
	store, err := raftboltdb.New(raftboltdb.Options{Path: filepath.Join(dir, "raft.db"), BoltOptions: &bbolt.Options{ReadOnly: true, Timeout: time.Second}})
	if err != nil {
		t.Fatal(err)
	}
	first, _ := store.FirstIndex()
	last, _ := store.LastIndex()
	for i := first; i <= last && first > 0; i++ {
		var l raft.Log
		if err := store.GetLog(i, &l); err != nil {
			t.Fatalf("log entry %d of %d..%d: %v", i, first, last, err)
		}
	}
	store.Close()
	snaps, err := raft.NewFileSnapshotStore(dir, 2, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	list, err := snaps.List()
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range list {
		_, rc, err := snaps.Open(m.ID)
		if err != nil {
			t.Fatalf("snapshot %s: %v", m.ID, err)
		}
		_, index, err := fsm.ReadSnapshot(rc)
		rc.Close()
		if err != nil || index == 0 {
			t.Fatalf("snapshot %s does not decode: %v", m.ID, err)
		}
	}
	t.Logf("raft.db holds entries %d..%d, all readable; %d snapshots decode", first, last, len(list))
}

func clientPost(path string) client.Request {
	p, q, _ := strings.Cut(path, "?")
	r := client.Request{Method: http.MethodPost, Path: p}
	if q != "" {
		k, v, _ := strings.Cut(q, "=")
		r.Query = map[string][]string{k: {v}}
	}
	return r
}

func post(t *testing.T, hc *http.Client, url, body string) (int, string) {
	t.Helper()
	resp, err := hc.Post(url, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func get(t *testing.T, hc *http.Client, url string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	resp, err := hc.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}
