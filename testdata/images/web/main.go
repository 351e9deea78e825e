// Command web is orch's test web server: it answers with the pod's name,
// hostname and environment, and serves health endpoints whose answers can
// be flipped at run time, so probes and Services can be tested against a
// real process.
//
//	GET  /          "hello from POD_NAME (hostname HOST)"
//	GET  /env       JSON {"hostname": ..., "env": {...}}
//	GET  /healthz   200, or 500 while /tmp/unhealthy exists or after POST /fail/healthz
//	GET  /readyz    200, or 503 while /tmp/unready exists or after POST /fail/readyz
//	POST /fail/{healthz,readyz}, POST /ok/{healthz,readyz}   flip the answers
//	POST /exit?code=N   exit with code N (default 1)
//
// PORT sets the port (default 8080). SIGTERM shuts the server down cleanly
// and exits 0.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
)

var failing = map[string]*atomic.Bool{"healthz": {}, "readyz": {}}

func main() {
	port := os.Getenv("PORT")
	if port == "" {
		port = "8080"
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		host, _ := os.Hostname()
		fmt.Fprintf(w, "hello from %s (hostname %s)\n", os.Getenv("POD_NAME"), host)
	})
	mux.HandleFunc("GET /env", func(w http.ResponseWriter, r *http.Request) {
		host, _ := os.Hostname()
		env := map[string]string{}
		for _, kv := range os.Environ() {
			k, v, _ := strings.Cut(kv, "=")
			env[k] = v
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{"hostname": host, "env": env})
	})
	mux.HandleFunc("GET /healthz", check("healthz", "/tmp/unhealthy", http.StatusInternalServerError))
	mux.HandleFunc("GET /readyz", check("readyz", "/tmp/unready", http.StatusServiceUnavailable))
	mux.HandleFunc("POST /fail/{what}", flip(true))
	mux.HandleFunc("POST /ok/{what}", flip(false))
	mux.HandleFunc("POST /exit", func(w http.ResponseWriter, r *http.Request) {
		code, err := strconv.Atoi(r.URL.Query().Get("code"))
		if err != nil {
			code = 1
		}
		fmt.Printf("exiting with code %d on request\n", code)
		os.Exit(code)
	})

	srv := &http.Server{Addr: ":" + port, Handler: mux}
	go func() {
		sig := make(chan os.Signal, 1)
		signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
		s := <-sig
		fmt.Printf("got %v, shutting down\n", s)
		srv.Shutdown(context.Background())
	}()
	fmt.Printf("web listening on :%s\n", port)
	if err := srv.ListenAndServe(); err != http.ErrServerClosed {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

func check(name, file string, failCode int) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if _, err := os.Stat(file); err == nil || failing[name].Load() {
			http.Error(w, name+" failing", failCode)
			return
		}
		fmt.Fprintln(w, "ok")
	}
}

func flip(fail bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		b, ok := failing[r.PathValue("what")]
		if !ok {
			http.NotFound(w, r)
			return
		}
		b.Store(fail)
		fmt.Fprintln(w, "ok")
	}
}
