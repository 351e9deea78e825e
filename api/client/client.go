// Package client is the Go client of the orch API, used by orchctl, worker
// agents and proxies. It talks to several servers and fails over between
// them, sends writes to the leader when it knows it, and retries through
// elections and dropped connections. Every write carries a request ID, so a
// retried write is applied at most once (the servers remember the IDs).
package client

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// Config configures a Client.
type Config struct {
	// Servers are base URLs such as http://127.0.0.11:7400.
	Servers []string
	// Token is sent as a bearer token when set.
	Token string
	// TLS: the cluster CA and an optional client certificate (tls.go).
	// With a CA, server addresses without a scheme mean https://.
	TLS TLS
	// RetryFor bounds how long one call keeps retrying across servers and
	// elections before it fails (default 20s).
	RetryFor time.Duration
	// AttemptTimeout bounds one attempt of a non-streaming call (default 30s).
	AttemptTimeout time.Duration
	// HTTPClient overrides the transport (tests).
	HTTPClient *http.Client
	UserAgent  string
	// NoBatching sends every write as a request of its own, even while
	// others are in flight (see batch.go).
	NoBatching bool
	// BatchAfter is how many requests may be on the wire to one server
	// before further writes queue for a batch (default 16).
	BatchAfter int
}

// Client is safe for concurrent use.
type Client struct {
	servers []string
	token   string
	agent   string
	retry   time.Duration
	attempt time.Duration
	hc      *http.Client

	preferred atomic.Int32 // index of the server reads go to first
	leader    atomic.Int32 // index of the leader, -1 when unknown

	mu   sync.Mutex
	down map[int]time.Time // servers that refused connections, until when to skip them
	// rotations[i] lists the servers starting at i (shared, never modified).
	rotations [][]int
	// batchers[i] coalesces the writes to server i; nil without batching.
	batchers []*batcher
}

// Headers shared with the server (see agent/forward.go).
const (
	LeaderHeader    = "X-Orch-Leader"
	RequestIDHeader = "X-Orch-Request-Id"
)

// ParseServers splits a comma-separated list of server URLs, as given in
// ORCH_ADDR or --server, and checks each one.
func ParseServers(list string) ([]string, error) { return parseServers(list, "http") }

// ParseServersScheme is ParseServers with scheme for addresses that have none.
func ParseServersScheme(list, scheme string) ([]string, error) { return parseServers(list, scheme) }

// parseServers is ParseServers with the scheme of addresses that have none.
func parseServers(list, scheme string) ([]string, error) {
	var out []string
	for _, s := range strings.Split(list, ",") {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		if !strings.Contains(s, "://") {
			s = scheme + "://" + s
		}
		u, err := url.Parse(s)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || (u.Path != "" && u.Path != "/") {
			return nil, fmt.Errorf("%q is not a server URL (expected http://HOST:PORT)", s)
		}
		if u.Port() == "" {
			u.Host = net.JoinHostPort(u.Hostname(), "7400")
		}
		out = append(out, u.Scheme+"://"+u.Host)
	}
	if len(out) == 0 {
		return nil, errors.New("no server given")
	}
	return out, nil
}

// New returns a client for cfg.
func New(cfg Config) (*Client, error) {
	if len(cfg.Servers) == 0 {
		return nil, errors.New("no orch server given (set ORCH_ADDR or --server)")
	}
	scheme := "http"
	if cfg.TLS.Enabled() {
		scheme = "https"
	}
	servers, err := parseServers(strings.Join(cfg.Servers, ","), scheme)
	if err != nil {
		return nil, err
	}
	var tlsConfig *tls.Config
	if cfg.TLS.Enabled() {
		if tlsConfig, err = cfg.TLS.Config(); err != nil {
			return nil, err
		}
	}
	c := &Client{servers: servers, token: cfg.Token, agent: cfg.UserAgent, retry: cfg.RetryFor, attempt: cfg.AttemptTimeout,
		hc: cfg.HTTPClient, down: map[int]time.Time{}}
	if c.retry == 0 {
		c.retry = 20 * time.Second
	}
	if c.attempt == 0 {
		c.attempt = 30 * time.Second
	}
	if c.agent == "" {
		c.agent = "orch-client"
	}
	if c.hc == nil {
		c.hc = &http.Client{Transport: &http.Transport{
			DialContext:         (&net.Dialer{Timeout: 2 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			MaxIdleConns:        1024,
			MaxIdleConnsPerHost: 512,
			IdleConnTimeout:     90 * time.Second,
			TLSClientConfig:     tlsConfig,
		}}
	}
	c.leader.Store(-1)
	if !cfg.NoBatching {
		after := cfg.BatchAfter
		if after <= 0 {
			after = defaultBatchAfter
		}
		for _, s := range c.servers {
			c.batchers = append(c.batchers, newBatcher(c, s, after))
		}
	}
	for i := range c.servers {
		r := make([]int, len(c.servers))
		for j := range r {
			r[j] = (i + j) % len(c.servers)
		}
		c.rotations = append(c.rotations, r)
	}
	return c, nil
}

// BatchedWrites is how many writes this client has sent in batches.
func (c *Client) BatchedWrites() uint64 {
	var n uint64
	for _, b := range c.batchers {
		n += b.sent.Load()
	}
	return n
}

// Servers returns the configured server URLs.
func (c *Client) Servers() []string { return append([]string(nil), c.servers...) }

// Request is one API call.
type Request struct {
	Method      string
	Path        string
	Query       url.Values
	Body        []byte
	ContentType string
	// Accept is the encoding wanted for the answer (default JSON).
	Accept string
	// BodyAt, when set, is the body instead of Body: a large upload (an
	// image archive) streamed from a file, read again from its start on
	// every attempt.
	BodyAt *io.SectionReader
	// Stream leaves the response body open (watches, snapshots): the
	// attempt timeout does not apply and the caller must close it.
	Stream bool
	// Server pins the call to one of the configured server URLs ("" = any).
	Server string
	// NoResend is for calls that must not run twice and carry no request
	// ID a server would recognise (exec): they are retried only when the
	// server refused the connection, so nothing was sent.
	NoResend bool
}

// Response is a successful (2xx) answer.
type Response struct {
	Status int
	Header http.Header
	Body   []byte        // when not streaming
	Stream io.ReadCloser // when streaming
	Server string        // which server answered
}

func isWrite(method string) bool {
	return method != http.MethodGet && method != http.MethodHead
}

// Request IDs: a random prefix drawn once per process, then a counter, so
// IDs are unique across clients and restarts without a syscall per write.
var (
	requestPrefix  = randomHex(12)
	requestCounter atomic.Uint64
)

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

func newRequestID() string {
	return requestPrefix + "-" + strconv.FormatUint(requestCounter.Add(1), 36)
}

// order returns the servers to try, best first.
func (c *Client) order(write bool) []int {
	first := int(c.preferred.Load())
	if l := int(c.leader.Load()); write && l >= 0 {
		first = l
	}
	c.mu.Lock()
	anyDown := len(c.down) > 0
	c.mu.Unlock()
	if !anyDown {
		return c.rotations[first]
	}
	now := time.Now()
	var up, down []int
	c.mu.Lock()
	for i := range c.servers {
		idx := (first + i) % len(c.servers)
		if until, ok := c.down[idx]; ok && now.Before(until) {
			down = append(down, idx)
		} else {
			up = append(up, idx)
		}
	}
	c.mu.Unlock()
	return append(up, down...)
}

func (c *Client) markDown(i int) {
	c.mu.Lock()
	c.down[i] = time.Now().Add(3 * time.Second)
	c.mu.Unlock()
}

func (c *Client) markUp(i int) {
	c.mu.Lock()
	delete(c.down, i)
	c.mu.Unlock()
	c.preferred.Store(int32(i))
}

// noteLeader records the leader a server reported, if it is one we know.
func (c *Client) noteLeader(h http.Header) {
	addr := h.Get(LeaderHeader)
	if addr == "" {
		return
	}
	for i, s := range c.servers {
		if strings.HasSuffix(s, "://"+addr) {
			c.leader.Store(int32(i))
			return
		}
	}
}

// Do sends req, retrying on other servers and through elections until it
// gets an answer that is not "unavailable" or RetryFor passes. Non-2xx
// answers become *apierrors.StatusError. When every server refuses
// connections for three rounds in a row the cluster is down, and Do fails
// without waiting for RetryFor. A streamed body lives until the caller
// closes it or ctx ends: RetryFor bounds only the attempts.
func (c *Client) Do(ctx context.Context, req Request) (*Response, error) {
	deadline := time.Now().Add(c.retry)
	header := http.Header{}
	if isWrite(req.Method) {
		header.Set(RequestIDHeader, newRequestID())
	}
	var lastErr error
	backoff := 50 * time.Millisecond
	refusedRounds := 0
	for {
		order := c.order(isWrite(req.Method))
		if req.Server != "" {
			order = c.pin(req.Server)
			if order == nil {
				return nil, fmt.Errorf("%s is not one of the configured servers", req.Server)
			}
		}
		allRefused := true
		for _, i := range order {
			resp, err, retry := c.attemptOnce(ctx, deadline, i, req, header)
			if !retry || (req.NoResend && !errors.Is(err, errRefused)) {
				return resp, err
			}
			// Keep the most telling error: a cancelled attempt says less
			// than the refused connection or Status before it.
			if lastErr == nil || !(errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)) {
				lastErr = err
			}
			if !errors.Is(err, errRefused) {
				allRefused = false
			}
			if ctx.Err() != nil || time.Now().After(deadline) {
				break
			}
		}
		if allRefused {
			refusedRounds++
		} else {
			refusedRounds = 0
		}
		if ctx.Err() != nil || time.Now().After(deadline) || refusedRounds >= 3 {
			return nil, fmt.Errorf("no orch server answered (%s): %w", strings.Join(c.servers, ", "), lastErr)
		}
		select {
		case <-ctx.Done():
		case <-time.After(min(backoff, time.Until(deadline))):
		}
		backoff = min(backoff*2, time.Second)
	}
}

// errRefused marks a server that refused the connection (nothing was sent).
var errRefused = errors.New("connection refused")

func (c *Client) pin(server string) []int {
	for i, s := range c.servers {
		if s == server || strings.TrimPrefix(strings.TrimPrefix(s, "http://"), "https://") == server {
			return []int{i}
		}
	}
	return nil
}

// attemptOnce tries one server. retry reports whether another attempt may
// help: the server was unreachable or unavailable, or the connection broke
// (writes are safe to resend because they carry a request ID). Until the
// response headers arrive the attempt is bounded by the retry deadline (and
// for plain calls by the attempt timeout); a streamed body only by ctx.
func (c *Client) attemptOnce(ctx context.Context, deadline time.Time, i int, req Request, header http.Header) (*Response, error, bool) {
	actx, cancel := context.WithCancel(ctx)
	limit := deadline
	if !req.Stream {
		limit = time.Now().Add(c.attempt)
	}
	timer := time.AfterFunc(time.Until(limit), cancel)
	u := c.servers[i] + req.Path
	if len(req.Query) > 0 {
		u += "?" + req.Query.Encode()
	}
	var reqBody io.Reader = bytes.NewReader(req.Body)
	if req.BodyAt != nil {
		reqBody = io.NewSectionReader(req.BodyAt, 0, req.BodyAt.Size())
	}
	hr, err := http.NewRequestWithContext(actx, req.Method, u, reqBody)
	if err != nil {
		timer.Stop()
		cancel()
		return nil, err, false
	}
	if req.BodyAt != nil {
		hr.ContentLength = req.BodyAt.Size()
	}
	for k, v := range header {
		hr.Header[k] = v
	}
	if req.ContentType != "" {
		hr.Header.Set("Content-Type", req.ContentType)
	} else if req.Body != nil {
		hr.Header.Set("Content-Type", "application/json")
	}
	if req.Accept != "" {
		hr.Header.Set("Accept", req.Accept)
	} else {
		hr.Header.Set("Accept", "application/json")
	}
	hr.Header.Set("User-Agent", c.agent)
	if c.token != "" {
		hr.Header.Set("Authorization", "Bearer "+c.token)
	}
	var resp *http.Response
	if c.batchers != nil && batchable(req) {
		resp, err = c.batchers[i].roundTrip(hr)
	} else {
		resp, err = c.hc.Do(hr)
	}
	if err != nil {
		timer.Stop()
		cancel()
		var op *net.OpError
		if errors.As(err, &op) && op.Op == "dial" {
			c.markDown(i)
			return nil, fmt.Errorf("%s: %w (%v)", c.servers[i], errRefused, op.Err), true
		}
		return nil, fmt.Errorf("%s: %w", c.servers[i], err), true
	}
	c.noteLeader(resp.Header)
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		c.markUp(i)
		out := &Response{Status: resp.StatusCode, Header: resp.Header, Server: c.servers[i]}
		if req.Stream {
			// From here on only ctx (and Close) end the stream.
			if !timer.Stop() {
				cancel()
				resp.Body.Close()
				return nil, fmt.Errorf("%s: %w", c.servers[i], context.DeadlineExceeded), true
			}
			out.Stream = &cancelOnClose{ReadCloser: resp.Body, cancel: cancel}
			return out, nil, false
		}
		defer cancel()
		defer timer.Stop()
		defer resp.Body.Close()
		out.Body, err = io.ReadAll(resp.Body)
		if err != nil {
			return nil, fmt.Errorf("%s: reading response: %w", c.servers[i], err), true
		}
		return out, nil, false
	}
	defer cancel()
	defer timer.Stop()
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	serr := statusError(resp.StatusCode, body)
	switch resp.StatusCode {
	case http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return nil, serr, true
	case http.StatusTooManyRequests:
		// Retried only when the server asks for it (as client-go does): an
		// eviction refused by a disruption budget is an answer, not a
		// transient failure.
		if resp.Header.Get("Retry-After") != "" || (serr.ErrStatus.Details != nil && serr.ErrStatus.Details.RetryAfterSeconds > 0) {
			return nil, serr, true
		}
	case http.StatusInternalServerError:
		if serr.ErrStatus.Reason == metav1.StatusReasonTimeout {
			return nil, serr, true
		}
	}
	c.markUp(i)
	return nil, serr, false
}

type cancelOnClose struct {
	io.ReadCloser
	cancel context.CancelFunc
}

func (c *cancelOnClose) Close() error {
	err := c.ReadCloser.Close()
	c.cancel()
	return err
}

// statusError turns an error answer into a StatusError; a body that is not
// a Status (a proxy's error page, say) is kept as the message.
func statusError(code int, body []byte) *apierrors.StatusError {
	var st metav1.Status
	if err := json.Unmarshal(body, &st); err != nil || st.Kind != "Status" {
		msg := strings.TrimSpace(string(body))
		if msg == "" {
			msg = http.StatusText(code)
		}
		generic := apierrors.NewGenericServerResponse(code, "", schema.GroupResource{}, "", msg, 0, false)
		generic.ErrStatus.Message = msg
		return generic
	}
	if st.Code == 0 {
		st.Code = int32(code)
	}
	return &apierrors.StatusError{ErrStatus: st}
}
