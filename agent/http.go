package agent

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/http/pprof"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	apierrors "k8s.io/apimachinery/pkg/api/errors"

	"orch.dev/orch/api"
)

func (a *Agent) routes() http.Handler {
	mux := http.NewServeMux()
	ok := func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok") }
	mux.HandleFunc("GET /healthz", ok)
	mux.HandleFunc("GET /livez", ok)
	mux.HandleFunc("GET /readyz", a.serveReady)
	mux.HandleFunc("GET /version", a.serveVersion)
	mux.HandleFunc("GET /api", a.serveAPIVersions)
	mux.HandleFunc("GET /apis", a.serveAPIGroups)
	mux.HandleFunc("GET /api/v1", a.serveResourceList)
	mux.HandleFunc("GET /apis/{group}/{version}", a.serveResourceList)
	mux.HandleFunc("/api/v1/", a.serveResource)
	a.registerPodProxy(mux) // pod log and exec, passed to the pod's worker (http_podproxy.go)
	a.registerImages(mux)   // image archives passed to the workers (http_images.go)
	a.registerJoin(mux)     // join handshake and certificate renewal (tls_join.go)
	mux.HandleFunc("/apis/", a.serveResource)
	var handler http.Handler
	a.registerBatch(mux, func() http.Handler { return handler }) // API writes in one request (batch.go)

	mux.HandleFunc("GET /v1/members", a.serveMembers)
	mux.HandleFunc("POST /v1/heartbeats", a.serveHeartbeats)
	mux.HandleFunc("GET /v1/operator/raft/peers", a.servePeers)
	mux.HandleFunc("DELETE /v1/operator/raft/peers/{id}", a.serveRemovePeer)
	mux.HandleFunc("POST /v1/operator/raft/transfer-leader", a.serveTransferLeader)
	mux.HandleFunc("GET /v1/operator/snapshot", a.serveSnapshotSave)
	mux.HandleFunc("POST /v1/operator/snapshot/restore", a.serveSnapshotRestore)
	a.registerTokens(mux)        // join and user tokens (tokens.go)
	a.registerGossipKeyring(mux) // gossip key rotation (gossip_keyring_api.go)
	a.registerSecretsReseal(mux) // cluster secret change (secrets_rotate.go)
	mux.HandleFunc("GET /internal/v1/status", func(w http.ResponseWriter, _ *http.Request) { writeJSON(w, http.StatusOK, a.status()) })
	mux.HandleFunc("GET /internal/v1/read-index", a.serveReadIndex)

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m := newMetrics(reg, a)
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /debug/pprof/", pprof.Index)
	mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	handler = a.recoverPanics(a.guard(m.instrument(a.refuseWritesWhenDiskLow(mux))))
	return handler
}

func (a *Agent) recoverPanics(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				a.logger.Error("panic serving request", "method", r.Method, "path", r.URL.Path, "panic", fmt.Sprint(v), "stack", string(debug.Stack()))
				writeError(w, apierrors.NewInternalError(fmt.Errorf("internal error")))
			}
		}()
		next.ServeHTTP(w, r)
	})
}

// readBody reads a request body up to the API's limit, in one allocation
// when the client sent a Content-Length.
func readBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	if n := r.ContentLength; n >= 0 && n <= api.MaxRequestBytes {
		b := make([]byte, n)
		if _, err := io.ReadFull(r.Body, b); err != nil {
			return nil, apierrors.NewBadRequest("reading request body: " + err.Error())
		}
		return b, nil
	}
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, api.MaxRequestBytes))
	if err != nil {
		if _, ok := err.(*http.MaxBytesError); ok {
			return nil, apierrors.NewRequestEntityTooLargeError(fmt.Sprintf("limit is %d bytes", api.MaxRequestBytes))
		}
		return nil, apierrors.NewBadRequest("reading request body: " + err.Error())
	}
	return b, nil
}

type metrics struct {
	requests *prometheus.CounterVec
	latency  *prometheus.HistogramVec
	logger   func(method, path string, code int, d time.Duration)
}

func newMetrics(reg *prometheus.Registry, a *Agent) *metrics {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "orch_api_requests_total", Help: "API requests by method and code."}, []string{"method", "code"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "orch_api_request_duration_seconds", Help: "API request latency (watches excluded).",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16)}, []string{"method"}),
		logger: func(method, path string, code int, d time.Duration) {
			a.logger.Debug("request", "method", method, "path", path, "code", code, "duration", d)
		},
	}
	reg.MustRegister(m.requests, m.latency,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "orch_fsm_applied_index", Help: "Last Raft index applied to the state."},
			func() float64 { return float64(a.fsm.AppliedIndex()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "orch_api_batches_total", Help: "Batches of API writes received (each write also counts as a request)."},
			func() float64 { return float64(a.batches.Load()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "orch_api_batched_writes_total", Help: "API writes that arrived in batches."},
			func() float64 { return float64(a.batchedWrites.Load()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "orch_raft_is_leader", Help: "1 on the Raft leader."},
			func() float64 {
				if a.raft != nil && a.raft.State().String() == "Leader" {
					return 1
				}
				return 0
			}))
	return m
}

type statusRecorder struct {
	http.ResponseWriter
	code int
}

func (s *statusRecorder) WriteHeader(code int) {
	s.code = code
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusRecorder) Flush() {
	if f, ok := s.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (m *metrics) instrument(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rec := &statusRecorder{ResponseWriter: w, code: http.StatusOK}
		next.ServeHTTP(rec, r)
		d := time.Since(start)
		m.requests.WithLabelValues(r.Method, strconv.Itoa(rec.code)).Inc()
		if !strings.Contains(r.URL.RawQuery, "watch=") {
			m.latency.WithLabelValues(r.Method).Observe(d.Seconds())
		}
		// Paths and codes only: bodies (which may hold Secrets) are never logged.
		m.logger(r.Method, r.URL.Path, rec.code, d)
	})
}

// bufferedResponse is an http.ResponseWriter that keeps the answer (a
// token handler called in process, each request of a batch).
type bufferedResponse struct {
	header http.Header
	code   int
	body   bytes.Buffer
}

func (b *bufferedResponse) Header() http.Header { return b.header }

func (b *bufferedResponse) WriteHeader(code int) {
	if b.code == 0 {
		b.code = code
	}
}

func (b *bufferedResponse) Write(p []byte) (int, error) {
	b.WriteHeader(http.StatusOK)
	return b.body.Write(p)
}
