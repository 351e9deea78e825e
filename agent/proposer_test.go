package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"orch.dev/orch/fsm"
)

// fakeFuture is a raft.ApplyFuture answered by the test.
type fakeFuture struct {
	raft.ApplyFuture
	done chan struct{}
	err  error
	resp any
}

func (f *fakeFuture) Error() error  { <-f.done; return f.err }
func (f *fakeFuture) Response() any { return f.resp }

// While Raft holds one entry, the proposals that arrive are batched into
// the next entry, and every proposer gets its own command's result.
func TestProposerBatchesWhileRaftIsBusy(t *testing.T) {
	stop := make(chan struct{})
	defer close(stop)
	entries := make(chan []byte, 10)
	futures := make(chan *fakeFuture, 10)
	p := newProposer(func(data []byte) raft.ApplyFuture {
		f := &fakeFuture{done: make(chan struct{})}
		entries <- data
		futures <- f
		return f
	}, stop, 1)
	go p.run()

	type outcome struct {
		name string
		res  *fsm.Result
		err  error
	}
	results := make(chan outcome, 10)
	propose := func(name string) {
		go func() {
			res, err := p.propose(context.Background(), &fsm.Delete{Kind: "ConfigMap", Namespace: "default", Name: name})
			results <- outcome{name, res, err}
		}()
	}
	propose("first")
	first := <-futures // Raft is now busy with the first entry
	if cmd, _ := fsm.Decode(<-entries); cmd.(*fsm.Delete).Name != "first" {
		t.Fatalf("first entry: %+v", cmd)
	}
	for i := range 5 {
		propose(fmt.Sprintf("b%d", i))
	}
	for len(p.in) < 5 {
		time.Sleep(time.Millisecond) // wait until all five are queued
	}
	first.resp = &fsm.Result{Deleted: true}
	close(first.done)
	if r := <-results; r.name != "first" || r.err != nil || !r.res.Deleted {
		t.Fatalf("first proposal: %+v", r)
	}

	second := <-futures
	cmd, err := fsm.Decode(<-entries)
	if err != nil {
		t.Fatal(err)
	}
	batch, ok := cmd.(*fsm.Batch)
	if !ok || len(batch.Commands) != 5 {
		t.Fatalf("second entry is %T with %v: want one batch of 5", cmd, cmd)
	}
	sub := make([]*fsm.Result, 5)
	for i, c := range batch.Commands {
		sub[i] = &fsm.Result{Deleted: true}
		if c.(*fsm.Delete).Name == "b3" {
			sub[i] = &fsm.Result{Err: fsm.ErrNotFound}
		}
	}
	second.resp = &fsm.Result{Batch: sub}
	close(second.done)
	for range 5 {
		r := <-results
		if (r.name == "b3") != errors.Is(r.err, fsm.ErrNotFound) {
			t.Fatalf("%s got %v: results were routed to the wrong proposers", r.name, r.err)
		}
	}
}

// A Raft error reaches every proposer of the batch; a lost leadership is
// reported as an unknown outcome.
func TestProposerPropagatesRaftErrors(t *testing.T) {
	stop := make(chan struct{})
	defer close(stop)
	p := newProposer(func([]byte) raft.ApplyFuture {
		f := &fakeFuture{done: make(chan struct{}), err: raft.ErrLeadershipLost}
		close(f.done)
		return f
	}, stop, 1)
	go p.run()
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := p.propose(context.Background(), &fsm.Delete{Kind: "ConfigMap", Namespace: "default", Name: fmt.Sprint(i)})
			if !errors.Is(err, errOutcomeUnknown) {
				t.Errorf("proposal %d: %v, want errOutcomeUnknown", i, err)
			}
		}()
	}
	wg.Wait()
}

// Through the real cluster: concurrent creates each get their own outcome,
// a create of an existing name fails without failing its neighbours.
func TestConcurrentWritesKeepTheirOwnOutcome(t *testing.T) {
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
	entries := map[string]bool{}
	for i := range n {
		want := 201
		if i%16 == 0 {
			want = 409
		}
		if codes[i] != want {
			t.Fatalf("create %d: %d, want %d", i, codes[i], want)
		}
		entries[rvs[i]] = true
	}
	t.Logf("%d concurrent creates committed in %d Raft entries", n-n/16, len(entries))
}
