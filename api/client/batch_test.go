package client

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// gatedServer answers creates of ConfigMaps, holding plain requests until
// the gate opens, so that a test can fill the client's queue; batch
// answers the batch endpoint (nil: 404, as a server without it).
type gatedServer struct {
	gate     chan struct{}
	plain    atomic.Int32 // creates that came alone
	batched  atomic.Int32 // creates that came in batches
	batches  atomic.Int32
	conns    atomic.Int32 // connections accepted
	batch    func(w http.ResponseWriter, r *http.Request)
	srv      *httptest.Server
	openOnce sync.Once
}

func newGatedServer(t *testing.T, batch func(g *gatedServer, w http.ResponseWriter, r *http.Request)) *gatedServer {
	g := &gatedServer{gate: make(chan struct{})}
	if batch != nil {
		g.batch = func(w http.ResponseWriter, r *http.Request) { batch(g, w, r) }
	}
	g.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == BatchPath {
			g.batches.Add(1)
			if g.batch == nil {
				http.NotFound(w, r)
				return
			}
			g.batch(w, r)
			return
		}
		g.plain.Add(1)
		<-g.gate
		createAnswer(w, r)
	}))
	g.srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			g.conns.Add(1)
		}
	}
	g.srv.Start()
	t.Cleanup(func() { g.open(); g.srv.Close() })
	return g
}

func (g *gatedServer) open() { g.openOnce.Do(func() { close(g.gate) }) }

// createAnswer answers a ConfigMap create with the object.
func createAnswer(w http.ResponseWriter, r *http.Request) {
	obj, err := io.ReadAll(r.Body)
	if err != nil || len(obj) == 0 {
		http.Error(w, fmt.Sprintf("no body (%v, %d bytes, %s %s)", err, len(obj), r.Method, r.URL.Path), http.StatusBadRequest)
		return
	}
	w.Header().Set("Content-Type", r.Header.Get("Content-Type"))
	w.WriteHeader(http.StatusCreated)
	w.Write(obj)
}

// answerBatch answers each request of a batch as createAnswer does. It
// reads the whole batch first: net/http may close a request's body once
// the answer has started.
func answerBatch(g *gatedServer, w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	br := bufio.NewReader(bytes.NewReader(body))
	var answers []*httptest.ResponseRecorder
	for {
		if _, err := br.Peek(1); err != nil {
			break
		}
		sub, err := http.ReadRequest(br)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		g.batched.Add(1)
		rec := httptest.NewRecorder()
		createAnswer(rec, sub)
		answers = append(answers, rec)
	}
	w.Header().Set("Content-Type", batchContentType)
	for _, rec := range answers {
		res := rec.Result()
		res.ContentLength = int64(rec.Body.Len())
		res.Write(w)
	}
}

// configMapNamed is a ConfigMap of 16 KB: a batch's answer is then larger
// than the client's read buffer, as under real load.
func configMapNamed(name string) *corev1.ConfigMap {
	return &corev1.ConfigMap{TypeMeta: metav1.TypeMeta{Kind: "ConfigMap", APIVersion: "v1"},
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"}, Data: map[string]string{"v": strings.Repeat("x", 16<<10)}}
}

// startCreates starts n creates and returns their errors' channel.
func startCreates(c *Client, ctx func(i int) context.Context, n int) chan error {
	errs := make(chan error, n)
	for i := range n {
		go func() {
			obj, err := c.Create(ctx(i), configMapNamed(fmt.Sprint("cm", i)))
			if err == nil && obj.GetName() != fmt.Sprint("cm", i) {
				err = fmt.Errorf("create of cm%d answered %s", i, obj.GetName())
			}
			errs <- err
		}()
	}
	return errs
}

// waitQueued waits until n writes wait in the batcher of server 0.
func waitQueued(t *testing.T, c *Client, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		b := c.batchers[0]
		b.mu.Lock()
		queued := len(b.queue)
		b.mu.Unlock()
		if queued >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d writes queued, want %d", queued, n)
		}
		time.Sleep(time.Millisecond)
	}
}

func background(int) context.Context { return context.Background() }

// queueAndRelease fills every place on the wire to the gated server,
// queues 8 more creates behind them, opens the gate and returns all
// their errors.
func queueAndRelease(t *testing.T, g *gatedServer, c *Client) []error {
	t.Helper()
	errs := startCreates(c, background, defaultBatchAfter+8)
	waitQueued(t, c, 8)
	g.open()
	return collect(errs, defaultBatchAfter+8)
}

// collect receives n errors.
func collect(errs chan error, n int) []error {
	out := make([]error, n)
	for i := range out {
		out[i] = <-errs
	}
	return out
}

// noErrors fails the test on the first error.
func noErrors(t *testing.T, errs []error) {
	t.Helper()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
}

// Writes beyond the ones on the wire queue and go together in one batch;
// each gets its own answer. The batch's connection is kept for later
// requests, as a plain request's is.
func TestQueuedWritesGoInOneBatch(t *testing.T) {
	g := newGatedServer(t, answerBatch)
	c := newClient(t, g.srv.URL)
	noErrors(t, queueAndRelease(t, g, c))
	if g.plain.Load() != defaultBatchAfter || g.batched.Load() != 8 || g.batches.Load() != 1 {
		t.Fatalf("plain %d, batched %d in %d batches; want %d, 8 in 1", g.plain.Load(), g.batched.Load(), g.batches.Load(), defaultBatchAfter)
	}
	// Later rounds reuse the connections: a client that dropped each
	// batch's connection would open one per round. (A connection goes
	// back to the pool a moment after its answer is read, so a round may
	// now and then open one: the bound is loose.)
	conns := g.conns.Load()
	const rounds = 10
	for range rounds {
		noErrors(t, collect(startCreates(c, background, defaultBatchAfter+8), defaultBatchAfter+8))
	}
	if g.batches.Load() < rounds/2 {
		t.Fatalf("only %d batches in %d rounds", g.batches.Load(), rounds)
	}
	if opened := g.conns.Load() - conns; opened > rounds/3 {
		t.Fatalf("%d rounds opened %d new connections: batches' connections are not kept", rounds, opened)
	}
}

// A server without the batch endpoint (an older version) gets every write
// alone, the queued ones included, and no batch after the first try.
func TestServerWithoutBatchesGetsPlainRequests(t *testing.T) {
	g := newGatedServer(t, nil)
	c := newClient(t, g.srv.URL)
	noErrors(t, queueAndRelease(t, g, c))
	if g.plain.Load() != defaultBatchAfter+8 || g.batches.Load() != 1 {
		t.Fatalf("plain %d, batch tries %d; want %d and 1", g.plain.Load(), g.batches.Load(), defaultBatchAfter+8)
	}
	noErrors(t, collect(startCreates(c, background, 2*defaultBatchAfter), 2*defaultBatchAfter))
	if g.batches.Load() != 1 {
		t.Fatalf("the client tried batches again: %d", g.batches.Load())
	}
}

// A batch refused as a whole gives each of its writes that answer.
func TestRefusedBatchAnswersEachWrite(t *testing.T) {
	g := newGatedServer(t, func(_ *gatedServer, w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnauthorized)
		io.WriteString(w, `{"kind":"Status","apiVersion":"v1","status":"Failure","message":"invalid bearer token","reason":"Unauthorized","code":401}`)
	})
	c := newClient(t, g.srv.URL)
	refused := 0
	for _, err := range queueAndRelease(t, g, c) {
		switch {
		case apierrors.IsUnauthorized(err):
			refused++
		case err != nil:
			t.Fatal(err)
		}
	}
	if refused != 8 {
		t.Fatalf("%d writes refused, want the 8 of the batch", refused)
	}
}

// A write whose caller gives up while it waits in the queue is not sent.
func TestCancelledQueuedWriteIsNotSent(t *testing.T) {
	g := newGatedServer(t, answerBatch)
	c := newClient(t, g.srv.URL)
	errs := startCreates(c, background, defaultBatchAfter)
	for g.plain.Load() != defaultBatchAfter {
		time.Sleep(time.Millisecond) // polling until every place on the wire is taken
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancelled := startCreates(c, func(int) context.Context { return ctx }, 1)
	waitQueued(t, c, 1)
	others := startCreates(c, background, 2)
	waitQueued(t, c, 3)
	cancel()
	if err := <-cancelled; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled write: %v", err)
	}
	g.open()
	noErrors(t, collect(errs, defaultBatchAfter))
	noErrors(t, collect(others, 2))
	if g.batched.Load() != 2 {
		t.Fatalf("%d writes sent in batches, want 2 (the cancelled one not among them)", g.batched.Load())
	}
}
