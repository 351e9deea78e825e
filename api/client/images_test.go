package client

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
)

// An upload from BodyAt is sent whole, with its length, on every attempt:
// a retry after "unavailable" re-reads it from the start.
func TestImportImagesResendsTheWholeArchive(t *testing.T) {
	archive := bytes.Repeat([]byte("0123456789"), 100_000)
	var mu sync.Mutex
	var got [][]byte
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		got = append(got, b)
		n := len(got)
		mu.Unlock()
		if r.URL.Path != ImagesImportPath || r.URL.Query().Get("node") != "w1" || r.ContentLength != int64(len(archive)) {
			t.Errorf("%s %s, Content-Length %d", r.Method, r.URL, r.ContentLength)
		}
		if n == 1 {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		io.WriteString(w, `{"nodes":[{"node":"w1","images":["orch.test/web:v1"]},{"node":"w2","error":"boom"}]}`)
	}))
	defer srv.Close()
	c := newClient(t, srv.URL)
	report, err := c.ImportImages(context.Background(), io.NewSectionReader(bytes.NewReader(archive), 0, int64(len(archive))), "w1")
	if err != nil || len(report) != 2 || report[0].Images[0] != "orch.test/web:v1" || report[1].Error != "boom" {
		t.Fatalf("report %+v, err %v", report, err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 2 || !bytes.Equal(got[0], archive) || !bytes.Equal(got[1], archive) {
		t.Fatalf("%d attempts; bodies equal to the archive: %v", len(got), len(got) == 2 && bytes.Equal(got[1], archive))
	}
}

// A NoResend call fails over from a server that refused the connection
// (nothing was sent) but is never sent twice.
func TestNoResendSendsOnce(t *testing.T) {
	var mu sync.Mutex
	calls := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		calls++
		n := calls
		mu.Unlock()
		if n == 1 {
			conn, _, _ := w.(http.Hijacker).Hijack()
			conn.Close() // the connection breaks: did the command run?
			return
		}
		io.WriteString(w, "ran")
	}))
	defer srv.Close()
	count := func() int {
		mu.Lock()
		defer mu.Unlock()
		return calls
	}
	c := newClient(t, deadServer(t), srv.URL)
	req := Request{Method: http.MethodPost, Path: "/exec", NoResend: true}
	if _, err := c.Do(context.Background(), req); err == nil || count() != 1 {
		t.Fatalf("after a broken connection: err %v, %d calls", err, count())
	}
	resp, err := c.Do(context.Background(), req)
	if err != nil || string(resp.Body) != "ran" || count() != 2 {
		t.Fatalf("second call: %v, %d calls", err, count())
	}
}
