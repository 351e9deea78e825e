package agent

import (
	"encoding/json"
	"fmt"
	"sync"
	"testing"
)

// Concurrent writes share Raft entries, and each keeps its own outcome: a
// create of an existing name fails without failing its batch neighbours.
func TestConcurrentWritesAreBatchedIndependently(t *testing.T) {
	c := startCluster(t, 3, "")
	l := c.leader()
	if code, body := do(t, l, "POST", cmPath, "", `{"metadata":{"name":"taken"}}`); code != 201 {
		t.Fatalf("setup: %d %s", code, body)
	}
	const n = 64
	var wg sync.WaitGroup
	codes := make([]int, n)
	rvs := make([]string, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			name := fmt.Sprintf("cm-%d", i)
			if i%16 == 0 {
				name = "taken"
			}
			code, body := do(t, l, "POST", cmPath, "", `{"metadata":{"name":"`+name+`"}}`)
			codes[i] = code
			var m struct {
				Metadata struct{ ResourceVersion string } `json:"metadata"`
			}
			json.Unmarshal([]byte(body), &m)
			rvs[i] = m.Metadata.ResourceVersion
		}()
	}
	wg.Wait()
	distinct := map[string]bool{}
	for i := range n {
		want := 201
		if i%16 == 0 {
			want = 409
		}
		if codes[i] != want {
			t.Fatalf("create %d: %d, want %d", i, codes[i], want)
		}
		if want == 201 {
			distinct[rvs[i]] = true
		}
	}
	if len(distinct) >= n-n/16 {
		t.Fatalf("%d creates took %d Raft entries: concurrent writes were not batched", n-n/16, len(distinct))
	}
	t.Logf("%d concurrent creates committed in %d Raft entries", n-n/16, len(distinct))
}
