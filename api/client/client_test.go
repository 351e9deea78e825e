package client

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"

	"orch.dev/orch/api"
)

// deadServer returns the URL of a port nothing listens on.
func deadServer(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return "http://" + addr
}

func newClient(t *testing.T, servers ...string) *Client {
	t.Helper()
	c, err := New(Config{Servers: servers, RetryFor: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

const cmJSON = `{"kind":"ConfigMap","apiVersion":"v1","metadata":{"name":"a","namespace":"default","resourceVersion":"5"}}`

func TestFailsOverToAServerThatAnswers(t *testing.T) {
	live := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(cmJSON))
	}))
	defer live.Close()
	c := newClient(t, deadServer(t), live.URL)
	obj, err := c.Get(context.Background(), api.ConfigMap, "default", "a", false)
	if err != nil || obj.GetName() != "a" {
		t.Fatalf("got %v, %v", obj, err)
	}
}

func TestRetriesUnavailableWithTheSameRequestID(t *testing.T) {
	var mu sync.Mutex
	var ids []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		ids = append(ids, r.Header.Get(RequestIDHeader))
		n := len(ids)
		mu.Unlock()
		if n < 3 {
			w.WriteHeader(http.StatusServiceUnavailable)
			w.Write([]byte(`{"kind":"Status","apiVersion":"v1","status":"Failure","reason":"ServiceUnavailable","code":503}`))
			return
		}
		w.WriteHeader(http.StatusCreated)
		w.Write([]byte(cmJSON))
	}))
	defer srv.Close()
	c := newClient(t, srv.URL)
	cm := api.ConfigMap.New()
	cm.SetName("a")
	if _, err := c.Create(context.Background(), cm); err != nil {
		t.Fatal(err)
	}
	if len(ids) != 3 || ids[0] == "" || ids[0] != ids[1] || ids[1] != ids[2] {
		t.Fatalf("a retried write must resend one request ID, got %q", ids)
	}
}

func TestErrorsAreStatusErrors(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/missing") {
			w.WriteHeader(http.StatusNotFound)
			w.Write([]byte(`{"kind":"Status","apiVersion":"v1","status":"Failure","message":"configmaps \"missing\" not found","reason":"NotFound","code":404}`))
			return
		}
		http.Error(w, "teapot", http.StatusTeapot)
	}))
	defer srv.Close()
	c := newClient(t, srv.URL)
	_, err := c.Get(context.Background(), api.ConfigMap, "default", "missing", false)
	if !apierrors.IsNotFound(err) {
		t.Fatalf("want NotFound, got %v", err)
	}
	_, err = c.Get(context.Background(), api.ConfigMap, "default", "other", false)
	var se *apierrors.StatusError
	if !errors.As(err, &se) || se.ErrStatus.Code != http.StatusTeapot || !strings.Contains(se.Error(), "teapot") {
		t.Fatalf("want a StatusError carrying the body, got %v", err)
	}
}

func TestWritesGoToTheReportedLeader(t *testing.T) {
	var leaderHits, followerHits int
	var mu sync.Mutex
	leader := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		leaderHits++
		mu.Unlock()
		w.Write([]byte(cmJSON))
	}))
	defer leader.Close()
	follower := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		followerHits++
		mu.Unlock()
		w.Header().Set(LeaderHeader, strings.TrimPrefix(leader.URL, "http://"))
		w.Write([]byte(cmJSON))
	}))
	defer follower.Close()
	c := newClient(t, follower.URL, leader.URL)
	ctx := context.Background()
	c.Get(ctx, api.ConfigMap, "default", "a", false) // learns the leader from the follower
	cm := api.ConfigMap.New()
	cm.SetName("a")
	for range 3 {
		if _, err := c.Update(ctx, cm); err != nil {
			t.Fatal(err)
		}
	}
	if followerHits != 1 || leaderHits != 3 {
		t.Fatalf("follower %d hits, leader %d: writes should go to the leader", followerHits, leaderHits)
	}
}

func TestParseServers(t *testing.T) {
	got, err := ParseServers(" http://127.0.0.11:7400, 127.0.0.12 ,https://h:1")
	if err != nil || strings.Join(got, ",") != "http://127.0.0.11:7400,http://127.0.0.12:7400,https://h:1" {
		t.Fatalf("got %v %v", got, err)
	}
	for _, bad := range []string{"", "ftp://x", "http://", "http://h:1/path"} {
		if _, err := ParseServers(bad); err == nil {
			t.Errorf("%q: want an error", bad)
		}
	}
}

// A streamed body outlives RetryFor and Do itself: only ctx or Close end it.
func TestStreamOutlivesTheRetryDeadline(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("first\n"))
		w.(http.Flusher).Flush()
		<-release
		w.Write([]byte("second\n"))
	}))
	defer srv.Close()
	c, _ := New(Config{Servers: []string{srv.URL}, RetryFor: 50 * time.Millisecond})
	resp, err := c.Do(context.Background(), Request{Method: http.MethodGet, Path: "/", Stream: true})
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Stream.Close()
	time.Sleep(150 * time.Millisecond) // well past RetryFor: the stream must still be open
	close(release)
	b, err := io.ReadAll(resp.Stream)
	if err != nil || string(b) != "first\nsecond\n" {
		t.Fatalf("stream cut short: %q, %v", b, err)
	}
}

// When every server refuses connections the client says so quickly, naming
// the cause, instead of retrying for the whole RetryFor.
func TestDownClusterFailsFastWithTheCause(t *testing.T) {
	c, _ := New(Config{Servers: []string{deadServer(t), deadServer(t)}, RetryFor: time.Minute})
	start := time.Now()
	_, err := c.Get(context.Background(), api.ConfigMap, "default", "a", false)
	if err == nil || !strings.Contains(err.Error(), "connection refused") {
		t.Fatalf("want connection refused, got %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("took %s to report a down cluster", d)
	}
}

// A 429 is an answer unless the server asks to retry.
func TestTooManyRequestsIsRetriedOnlyWhenAsked(t *testing.T) {
	var calls int
	var mu sync.Mutex
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		calls++
		n := calls
		mu.Unlock()
		if r.URL.Query().Get("retry") == "yes" && n == 1 {
			w.Header().Set("Retry-After", "0")
		}
		if r.URL.Query().Get("retry") == "yes" && n > 1 {
			w.Write([]byte(cmJSON))
			return
		}
		w.WriteHeader(http.StatusTooManyRequests)
		w.Write([]byte(`{"kind":"Status","apiVersion":"v1","status":"Failure","reason":"TooManyRequests","message":"Cannot evict pod","code":429}`))
	}))
	defer srv.Close()
	c := newClient(t, srv.URL)
	_, err := c.Do(context.Background(), Request{Method: http.MethodPost, Path: "/evict"})
	if !apierrors.IsTooManyRequests(err) || calls != 1 {
		t.Fatalf("budget refusal: %v after %d calls, want one call and a TooManyRequests error", err, calls)
	}
	calls = 0
	if _, err := c.Do(context.Background(), Request{Method: http.MethodGet, Path: "/x", Query: map[string][]string{"retry": {"yes"}}}); err != nil || calls != 2 {
		t.Fatalf("Retry-After: %v after %d calls", err, calls)
	}
}
