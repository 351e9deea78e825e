package client

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"orch.dev/orch/api"
)

// fakeWatchServer scripts list and watch answers.
type fakeWatchServer struct {
	mu      sync.Mutex
	lists   []string // list bodies, served in order
	watches []func(w http.ResponseWriter, rv string)
	rvs     []string // resourceVersion of each watch request
}

func (f *fakeWatchServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	if r.URL.Query().Get("watch") != "true" {
		body := f.lists[0]
		f.lists = f.lists[1:]
		f.mu.Unlock()
		w.Write([]byte(body))
		return
	}
	if len(f.watches) == 0 {
		f.mu.Unlock()
		<-r.Context().Done()
		return
	}
	h := f.watches[0]
	f.watches = f.watches[1:]
	rv := r.URL.Query().Get("resourceVersion")
	f.rvs = append(f.rvs, rv)
	f.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	h(w, rv)
}

func cm(name string, rv int) string {
	return fmt.Sprintf(`{"kind":"ConfigMap","apiVersion":"v1","metadata":{"name":%q,"namespace":"default","resourceVersion":"%d"}}`, name, rv)
}

func ev(t, name string, rv int) string {
	return fmt.Sprintf(`{"type":%q,"object":%s}`+"\n", t, cm(name, rv))
}

func list(rv int, items ...string) string {
	return fmt.Sprintf(`{"kind":"ConfigMapList","apiVersion":"v1","metadata":{"resourceVersion":"%d"},"items":[%s]}`, rv, strings.Join(items, ","))
}

// The watcher lists first, then follows changes; when a batched entry (two
// objects at version 8) is cut in the middle it resumes just before it and
// drops the replayed half; when history is gone (410) it lists again and
// emits exactly the difference.
func TestWatcherResumesAndRelists(t *testing.T) {
	f := &fakeWatchServer{
		lists: []string{
			list(6, cm("a", 5), cm("b", 6)),
			list(12, cm("a", 7), cm("c", 8), cm("d", 8), cm("e", 12)),
		},
	}
	f.watches = []func(http.ResponseWriter, string){
		func(w http.ResponseWriter, rv string) { // cut after half of entry 8
			w.Write([]byte(ev("MODIFIED", "a", 7) + ev("ADDED", "c", 8)))
		},
		func(w http.ResponseWriter, rv string) { // replays entry 8, then history is gone
			w.Write([]byte(ev("ADDED", "c", 8) + ev("ADDED", "d", 8)))
			w.Write([]byte(`{"type":"ERROR","object":{"kind":"Status","apiVersion":"v1","status":"Failure","reason":"Expired","code":410}}` + "\n"))
		},
	}
	srv := httptest.NewServer(f)
	defer srv.Close()
	c := newClient(t, srv.URL)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	w, err := c.Watch(ctx, api.ConfigMap, "default", ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	want := []string{"ADDED a 5", "ADDED b 6", "MODIFIED a 7", "ADDED c 8", "ADDED d 8", "ADDED e 12", "DELETED b 6"}
	var got []string
	for len(got) < len(want) {
		select {
		case e, ok := <-w.Events():
			if !ok {
				t.Fatalf("watch ended early: %v (got %v)", w.Err(), got)
			}
			got = append(got, fmt.Sprintf("%s %s %s", e.Type, e.Object.GetName(), e.Object.GetResourceVersion()))
		case <-ctx.Done():
			t.Fatalf("timed out; got %v", got)
		}
	}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("events\n got %v\nwant %v", got, want)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	// First watch from the list's version; the resume from just before the
	// cut entry (8 -> 7) so that its other half is replayed.
	if len(f.rvs) < 2 || f.rvs[0] != "6" || f.rvs[1] != "7" {
		t.Fatalf("watch resourceVersions %v, want [6 7 ...]", f.rvs)
	}
}

// Watch returns before its consumer reads, however many objects the
// initial list holds.
func TestWatchDoesNotBlockOnALargeInitialList(t *testing.T) {
	var items []string
	for i := range 1000 {
		items = append(items, cm(fmt.Sprintf("cm-%d", i), i+1))
	}
	f := &fakeWatchServer{lists: []string{list(1000, items...)}}
	srv := httptest.NewServer(f)
	defer srv.Close()
	c := newClient(t, srv.URL)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	returned := make(chan *Watcher, 1)
	go func() {
		w, err := c.Watch(ctx, api.ConfigMap, "default", ListOptions{})
		if err != nil {
			t.Error(err)
		}
		returned <- w
	}()
	var w *Watcher
	select {
	case w = <-returned:
	case <-ctx.Done():
		t.Fatal("Watch blocked before anyone read its events")
	}
	defer w.Stop()
	for i := range 1000 {
		e := <-w.Events()
		if e.Type != Added || e.Object.GetName() != fmt.Sprintf("cm-%d", i) {
			t.Fatalf("event %d: %s %s", i, e.Type, e.Object.GetName())
		}
	}
}

// One entry may change one object twice (a pod created and bound in one
// batched entry): both events reach the consumer, and a stream resumed in
// the middle of that entry drops exactly what was already delivered.
func TestWatcherDeliversTwoChangesOfOneObjectInOneEntry(t *testing.T) {
	f := &fakeWatchServer{lists: []string{list(6, cm("a", 5))}}
	f.watches = []func(http.ResponseWriter, string){
		func(w http.ResponseWriter, rv string) { // cut after c's two changes
			w.Write([]byte(ev("ADDED", "c", 8) + ev("MODIFIED", "c", 8)))
		},
		func(w http.ResponseWriter, rv string) { // replays entry 8 whole
			w.Write([]byte(ev("ADDED", "c", 8) + ev("MODIFIED", "c", 8) + ev("ADDED", "d", 8) + ev("MODIFIED", "c", 9)))
		},
	}
	srv := httptest.NewServer(f)
	defer srv.Close()
	c := newClient(t, srv.URL)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	w, err := c.Watch(ctx, api.ConfigMap, "default", ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	want := []string{"ADDED a 5", "ADDED c 8", "MODIFIED c 8", "ADDED d 8", "MODIFIED c 9"}
	var got []string
	for len(got) < len(want) {
		select {
		case e, ok := <-w.Events():
			if !ok {
				t.Fatalf("watch ended early: %v (got %v)", w.Err(), got)
			}
			got = append(got, fmt.Sprintf("%s %s %s", e.Type, e.Object.GetName(), e.Object.GetResourceVersion()))
		case <-ctx.Done():
			t.Fatalf("timed out; got %v", got)
		}
	}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("events\n got %v\nwant %v", got, want)
	}
}
