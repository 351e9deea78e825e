package agent

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// The batch endpoint carries several independent API writes in one HTTP
// request, so that a client with many writes in flight pays the per-request
// costs of HTTP (system calls, TLS records, net/http's goroutines) once per
// batch instead of once per write: the Go client sends its concurrent
// writes this way while earlier ones are still on the wire.
//
// The body is a pipeline of HTTP/1.1 requests (Content-Type
// application/http, RFC 9112 section 10.2); the answer is the pipeline of
// their responses, in the same order. Each request goes through the whole
// API handler as if it had come alone: authentication (a request without
// an Authorization header uses the batch's, and the batch's client
// certificate counts for all), authorisation, admission, audit, forwarding
// to the leader. They run concurrently, so nothing orders them: a client
// batches only writes that are in flight together.
const (
	batchPath        = "/v1/batch"
	batchContentType = "application/http"
	// Limits of one batch: its body, and how many requests it carries.
	maxBatchBodyBytes = 16 << 20
	maxBatchRequests  = 1024
)

// batchMethods are the requests a batch may carry: writes, which answer
// with one bounded body (no watches, no streams, no nested batches).
var batchMethods = map[string]bool{http.MethodPost: true, http.MethodPut: true, http.MethodPatch: true, http.MethodDelete: true}

func (a *Agent) registerBatch(mux *http.ServeMux, api func() http.Handler) {
	mux.HandleFunc("POST "+batchPath, func(w http.ResponseWriter, r *http.Request) { a.serveBatch(w, r, api()) })
}

func (a *Agent) serveBatch(w http.ResponseWriter, r *http.Request, api http.Handler) {
	if ct := r.Header.Get("Content-Type"); ct != batchContentType {
		writeError(w, &apierrors.StatusError{ErrStatus: metav1.Status{Status: metav1.StatusFailure, Code: http.StatusUnsupportedMediaType,
			Reason: metav1.StatusReasonUnsupportedMediaType, Message: fmt.Sprintf("a batch is sent as %s, not %q", batchContentType, ct)}})
		return
	}
	subs, err := readBatch(w, r)
	if err != nil {
		writeError(w, err)
		return
	}
	a.batches.Add(1)
	a.batchedWrites.Add(uint64(len(subs)))
	answers := make([]bufferedResponse, len(subs))
	var wg sync.WaitGroup
	for i, sub := range subs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			answers[i].header = http.Header{}
			api.ServeHTTP(&answers[i], sub)
		}()
	}
	wg.Wait()
	w.Header().Set("Content-Type", batchContentType)
	bw := bufio.NewWriterSize(w, 64<<10)
	for i := range answers {
		writeAnswer(bw, &answers[i])
	}
	bw.Flush()
}

// readBatch parses every request of the batch before any runs: a batch
// that cannot be read changes nothing.
func readBatch(w http.ResponseWriter, r *http.Request) ([]*http.Request, error) {
	br := bufio.NewReader(http.MaxBytesReader(w, r.Body, maxBatchBodyBytes))
	var subs []*http.Request
	for {
		if _, err := br.Peek(1); err == io.EOF {
			return subs, nil
		}
		sub, err := http.ReadRequest(br)
		if err == nil {
			var body []byte
			if body, err = io.ReadAll(sub.Body); err == nil {
				sub.Body = io.NopCloser(bytes.NewReader(body))
			}
		}
		if err != nil {
			var tooBig *http.MaxBytesError
			if errors.As(err, &tooBig) {
				return nil, apierrors.NewRequestEntityTooLargeError(fmt.Sprintf("a batch is limited to %d bytes", maxBatchBodyBytes))
			}
			return nil, apierrors.NewBadRequest(fmt.Sprintf("batch request %d: %v", len(subs)+1, err))
		}
		if len(subs) == maxBatchRequests {
			return nil, apierrors.NewRequestEntityTooLargeError(fmt.Sprintf("a batch carries at most %d requests", maxBatchRequests))
		}
		if !batchMethods[sub.Method] || sub.URL.Path == batchPath {
			return nil, apierrors.NewBadRequest(fmt.Sprintf("batch request %d: %s %s: a batch carries only API writes (POST, PUT, PATCH, DELETE)", len(subs)+1, sub.Method, sub.URL.Path))
		}
		sub = sub.WithContext(r.Context())
		sub.TLS, sub.RemoteAddr = r.TLS, r.RemoteAddr
		sub.Header.Del(forwardedHeader) // only a server's own forwarding sets it
		if sub.Header.Get("Authorization") == "" {
			if auth := r.Header.Get("Authorization"); auth != "" {
				sub.Header.Set("Authorization", auth)
			}
		}
		subs = append(subs, sub)
	}
}

// writeAnswer writes the recorded response to one request of a batch in
// HTTP/1.1 wire format.
func writeAnswer(w *bufio.Writer, b *bufferedResponse) {
	code := b.code
	if code == 0 {
		code = http.StatusOK
	}
	w.WriteString("HTTP/1.1 " + strconv.Itoa(code) + " " + http.StatusText(code) + "\r\n")
	b.header.Del("Content-Length")
	b.header.Del("Transfer-Encoding")
	b.header.Write(w)
	w.WriteString("Content-Length: " + strconv.Itoa(b.body.Len()) + "\r\n\r\n")
	w.Write(b.body.Bytes())
}
