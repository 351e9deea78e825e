package agent

import (
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// wedgedPipeline behaves like a NetworkTransport pipeline whose decoder has
// stopped: after `free` calls, AppendEntries blocks until Close.
type wedgedPipeline struct {
	free      int
	calls     int
	closed    chan struct{}
	closeOnce sync.Once
}

func (p *wedgedPipeline) AppendEntries(*raft.AppendEntriesRequest, *raft.AppendEntriesResponse) (raft.AppendFuture, error) {
	p.calls++
	if p.calls <= p.free {
		return nil, nil
	}
	<-p.closed
	return nil, raft.ErrPipelineShutdown
}

func (p *wedgedPipeline) Consumer() <-chan raft.AppendFuture { return nil }

func (p *wedgedPipeline) Close() error {
	p.closeOnce.Do(func() { close(p.closed) })
	return nil
}

func TestWatchdogPipelineReleasesWedgedAppend(t *testing.T) {
	inner := &wedgedPipeline{free: 3, closed: make(chan struct{})}
	w := newWatchdogPipeline(inner, 50*time.Millisecond)
	for i := range 3 {
		if _, err := w.AppendEntries(&raft.AppendEntriesRequest{}, &raft.AppendEntriesResponse{}); err != nil {
			t.Fatalf("call %d on a healthy pipeline: %v", i, err)
		}
	}
	select {
	case <-inner.closed:
		t.Fatal("the watchdog closed a pipeline whose calls all returned at once")
	default:
	}

	done := make(chan error, 1)
	go func() {
		_, err := w.AppendEntries(&raft.AppendEntriesRequest{}, &raft.AppendEntriesResponse{})
		done <- err
	}()
	select {
	case err := <-done:
		if !errors.Is(err, raft.ErrPipelineShutdown) {
			t.Fatalf("wedged call returned %v, want ErrPipelineShutdown", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a wedged AppendEntries was not released by the watchdog")
	}
}

func TestWatchdogTransportKeepsRaftsOptionalInterfaces(t *testing.T) {
	var tr raft.Transport = &watchdogTransport{}
	if _, ok := tr.(raft.WithPreVote); !ok {
		t.Error("watchdogTransport lost WithPreVote: raft would disable pre-vote")
	}
	if _, ok := tr.(raft.WithClose); !ok {
		t.Error("watchdogTransport lost WithClose: raft would not close it on shutdown")
	}
}
