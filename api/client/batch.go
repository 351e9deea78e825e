package client

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
)

// Writes in flight together share HTTP requests: while BatchAfter (16)
// requests to a server are on the wire, further writes to it queue, and
// each answer sends everything queued as one request to the server's batch
// endpoint (agent/batch.go): a pipeline of the queued HTTP requests, whose
// answer is the pipeline of their responses. A lone write still goes out
// at once and alone, as a plain request; under load, a write costs a part
// of one HTTP exchange instead of a whole one (its system calls, TLS
// records and net/http's goroutines on both sides). Each write keeps its
// own request ID, answer, error and retries. Queueing costs latency, so it
// starts only beyond 16: with 4 or 8, 16 concurrent writers lost 8 % of
// their throughput to it, with 16 none (BENCHMARKS.md).
const (
	BatchPath        = "/v1/batch"
	batchContentType = "application/http"

	defaultBatchAfter = 16        // requests to one server on the wire before writes queue
	batchMaxCalls     = 256       // writes in one batch
	batchMaxBytes     = 4 << 20   // encoded writes in one batch
	batchMaxBody      = 256 << 10 // larger writes always go alone
)

// batcher coalesces the writes to one server.
type batcher struct {
	c     *Client
	url   string        // the server's batch endpoint
	after int           // requests on the wire before writes queue
	sent  atomic.Uint64 // writes sent in batches

	mu          sync.Mutex
	inflight    int
	queue       []*batchCall
	unsupported bool // the server has no batch endpoint (an older version)
}

type batchCall struct {
	req  *http.Request
	wire []byte // req in HTTP/1.1 wire format
	resp *http.Response
	err  error
	done chan struct{}
}

func newBatcher(c *Client, server string, after int) *batcher {
	return &batcher{c: c, url: server + BatchPath, after: after}
}

// batchable reports whether req may share a batch: a bounded write.
func batchable(req Request) bool {
	return isWrite(req.Method) && !req.Stream && !req.NoResend && req.BodyAt == nil && len(req.Body) <= batchMaxBody
}

// roundTrip sends hr alone when few requests are on the wire, and in the
// next batch otherwise.
func (b *batcher) roundTrip(hr *http.Request) (*http.Response, error) {
	b.mu.Lock()
	if b.inflight < b.after || b.unsupported {
		b.inflight++
		b.mu.Unlock()
		resp, err := b.c.hc.Do(hr)
		b.release()
		return resp, err
	}
	b.mu.Unlock()

	var wire bytes.Buffer
	if err := hr.Write(&wire); err != nil {
		return nil, err
	}
	call := &batchCall{req: hr, wire: wire.Bytes(), done: make(chan struct{})}
	b.mu.Lock()
	b.queue = append(b.queue, call)
	var batch []*batchCall
	if b.inflight < b.after { // a request ended while this one was encoded
		b.inflight++
		batch = b.takeLocked()
	}
	b.mu.Unlock()
	if batch != nil {
		go b.send(batch)
	}
	select {
	case <-call.done:
		return call.resp, call.err
	case <-hr.Context().Done():
		// The batch may still carry it: as with a plain request cut off
		// after it was sent, the request ID makes a retry safe.
		return nil, hr.Context().Err()
	}
}

// release ends a request on the wire; the queued writes, if any, take its
// place as one batch.
func (b *batcher) release() {
	b.mu.Lock()
	if len(b.queue) == 0 {
		b.inflight--
		b.mu.Unlock()
		return
	}
	batch := b.takeLocked()
	b.mu.Unlock()
	go b.send(batch)
}

// takeLocked removes the next batch from the queue.
func (b *batcher) takeLocked() []*batchCall {
	n, size := 0, 0
	for n < len(b.queue) && n < batchMaxCalls && (n == 0 || size+len(b.queue[n].wire) <= batchMaxBytes) {
		size += len(b.queue[n].wire)
		n++
	}
	batch := b.queue[:n:n]
	b.queue = append([]*batchCall(nil), b.queue[n:]...)
	return batch
}

// send sends one batch, hands each call its answer, and releases its
// place on the wire.
func (b *batcher) send(batch []*batchCall) {
	defer b.release()
	// A write its caller gave up on while it queued is not sent: it fails
	// as a plain request does when cancelled before it went out.
	live := batch[:0:0]
	for _, call := range batch {
		if err := call.req.Context().Err(); err != nil {
			finish([]*batchCall{call}, func(*batchCall) (*http.Response, error) { return nil, err })
			continue
		}
		live = append(live, call)
	}
	batch = live
	switch len(batch) {
	case 0:
		return
	case 1:
		// Alone after all: a plain request, as the server would run it.
		finish(batch, func(call *batchCall) (*http.Response, error) { return b.direct(call.req) })
		return
	}
	size := 0
	for _, call := range batch {
		size += len(call.wire)
	}
	body := make([]byte, 0, size)
	for _, call := range batch {
		body = append(body, call.wire...)
	}
	ctx, cancel := context.WithTimeout(context.Background(), b.c.attempt)
	defer cancel()
	b.sent.Add(uint64(len(batch)))
	resp, err := b.post(ctx, body)
	if err != nil {
		finish(batch, func(*batchCall) (*http.Response, error) { return nil, err })
		return
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusNotFound || resp.StatusCode == http.StatusMethodNotAllowed:
		b.mu.Lock()
		b.unsupported = true
		b.mu.Unlock()
		finish(batch, func(call *batchCall) (*http.Response, error) { return b.direct(call.req) })
	case resp.StatusCode != http.StatusOK:
		// The batch as a whole was refused (authentication, size, a full
		// disk): every write it carried gets that answer.
		whole, rerr := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		finish(batch, func(*batchCall) (*http.Response, error) {
			if rerr != nil {
				return nil, rerr
			}
			return &http.Response{StatusCode: resp.StatusCode, Status: resp.Status, Header: resp.Header.Clone(),
				Body: io.NopCloser(bytes.NewReader(whole)), ContentLength: int64(len(whole))}, nil
		})
	default:
		br := bufio.NewReaderSize(resp.Body, 64<<10)
		var perr error
		finish(batch, func(call *batchCall) (*http.Response, error) {
			if perr != nil {
				return nil, perr
			}
			r, err := readAnswer(br, call.req)
			if err != nil {
				perr = fmt.Errorf("reading the batch's answers: %w", err)
				return nil, perr
			}
			return r, nil
		})
		// Read up to the end of the body (the last chunk's trailer), or
		// net/http closes the connection instead of keeping it for the
		// next request: a new TLS handshake per batch.
		io.Copy(io.Discard, br)
	}
}

// finish gives each call of batch, in order, the answer of fn.
func finish(batch []*batchCall, fn func(*batchCall) (*http.Response, error)) {
	for _, call := range batch {
		call.resp, call.err = fn(call)
		close(call.done)
	}
}

func (b *batcher) post(ctx context.Context, body []byte) (*http.Response, error) {
	hr, err := http.NewRequestWithContext(ctx, http.MethodPost, b.url, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	hr.Header.Set("Content-Type", batchContentType)
	hr.Header.Set("User-Agent", b.c.agent)
	if b.c.token != "" {
		hr.Header.Set("Authorization", "Bearer "+b.c.token)
	}
	return b.c.hc.Do(hr)
}

// direct sends a request that was encoded for a batch on its own.
func (b *batcher) direct(hr *http.Request) (*http.Response, error) {
	if hr.GetBody != nil {
		body, err := hr.GetBody()
		if err != nil {
			return nil, err
		}
		hr.Body = body
	}
	return b.c.hc.Do(hr)
}

// readAnswer reads one response of the batch's answer, body included.
func readAnswer(br *bufio.Reader, req *http.Request) (*http.Response, error) {
	r, err := http.ReadResponse(br, req)
	if err != nil {
		return nil, err
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return nil, err
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	return r, nil
}
