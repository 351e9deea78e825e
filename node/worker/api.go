package worker

import (
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"orch.dev/orch/node/kubelet"
	"orch.dev/orch/node/runtime"
	"orch.dev/orch/node/worker/execstream"
)

// The worker API (port 7403) is what kube-apiserver reaches kubelet for:
//
//	GET  /pods/{namespace}/{name}/log?container=&follow=&previous=&tailLines=&limitBytes=
//	POST /pods/{namespace}/{name}/exec?container=&command=...   (an execstream answer)
//	POST /images/import   (body: an OCI or docker image archive) -> {"images": [names]}
//
// The API server proxies /api/v1/namespaces/{ns}/pods/{name}/log and
// .../exec here with the same query, and POST /v1/images/import's upload
// to every worker. When the cluster has a token, every
// call must carry it as a bearer token.

// containers finds a pod's containers; *kubelet.Kubelet is one.
type containers interface {
	Container(namespace, name, container string, previous bool) (string, error)
}

type apiServer struct {
	pods  containers
	rt    runtime.Runtime
	token string
	log   *slog.Logger
}

func (s *apiServer) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte("ok")) })
	mux.HandleFunc("GET /pods/{ns}/{name}/log", s.serveLogs)
	mux.HandleFunc("POST /pods/{ns}/{name}/exec", s.serveExec)
	mux.HandleFunc("POST /images/import", s.serveImageImport)
	if s.token == "" {
		return mux
	}
	want := []byte("Bearer " + s.token)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/healthz" && subtle.ConstantTimeCompare([]byte(r.Header.Get("Authorization")), want) != 1 {
			writeStatus(w, apierrors.NewUnauthorized("a valid bearer token is required"))
			return
		}
		mux.ServeHTTP(w, r)
	})
}

var podsResource = schema.GroupResource{Resource: "pods"}

// lookup resolves the request's container to a runtime container ID.
func (s *apiServer) lookup(r *http.Request, previous bool) (string, error) {
	ns, name := r.PathValue("ns"), r.PathValue("name")
	id, err := s.pods.Container(ns, name, r.URL.Query().Get("container"), previous)
	switch {
	case errors.Is(err, kubelet.ErrPodNotFound):
		return "", apierrors.NewNotFound(podsResource, name)
	case err != nil:
		return "", apierrors.NewBadRequest(err.Error())
	}
	return id, nil
}

func (s *apiServer) serveLogs(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	var opts runtime.LogOptions
	var err error
	opts.Follow, err = boolParam(q.Get("follow"), "follow")
	if err == nil {
		opts.TailLines, err = intParam(q.Get("tailLines"), "tailLines")
	}
	var limit int
	if err == nil {
		limit, err = intParam(q.Get("limitBytes"), "limitBytes")
		opts.LimitBytes = int64(limit)
	}
	var previous bool
	if err == nil {
		previous, err = boolParam(q.Get("previous"), "previous")
	}
	if err != nil {
		writeStatus(w, apierrors.NewBadRequest(err.Error()))
		return
	}
	id, err := s.lookup(r, previous)
	if err != nil {
		writeStatus(w, err)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if q.Get("tailLines") == "0" && !opts.Follow {
		return // none of the lines (TailLines 0 means all)
	}
	fw := &flushWriter{w: w}
	if f, ok := w.(http.Flusher); ok && opts.Follow {
		fw.f = f
	}
	if err := s.rt.Logs(r.Context(), id, opts, fw); err != nil && !fw.wrote && r.Context().Err() == nil {
		if errors.Is(err, runtime.ErrNotFound) {
			writeStatus(w, apierrors.NewNotFound(podsResource, r.PathValue("name")))
			return
		}
		writeStatus(w, apierrors.NewInternalError(err))
	}
}

func (s *apiServer) serveExec(w http.ResponseWriter, r *http.Request) {
	cmd := r.URL.Query()["command"]
	if len(cmd) == 0 {
		writeStatus(w, apierrors.NewBadRequest("command: at least one is required"))
		return
	}
	for _, p := range []string{"stdin", "tty"} {
		if v, _ := boolParam(r.URL.Query().Get(p), p); v {
			writeStatus(w, apierrors.NewBadRequest(p+": interactive exec is not supported"))
			return
		}
	}
	id, err := s.lookup(r, false)
	if err != nil {
		writeStatus(w, err)
		return
	}
	w.Header().Set("Content-Type", execstream.ContentType)
	w.WriteHeader(http.StatusOK)
	ew := execstream.NewWriter(w)
	code, err := s.rt.Exec(r.Context(), id, cmd, ew.Stdout(), ew.Stderr())
	ew.Exit(code, err)
}

// serveImageImport stores the images of the archive in the body.
func (s *apiServer) serveImageImport(w http.ResponseWriter, r *http.Request) {
	names, err := s.rt.ImportImages(r.Context(), r.Body)
	if err != nil {
		if r.Context().Err() == nil {
			// Take the rest of the upload, so that the sender reads this
			// answer rather than a connection reset under its writes.
			io.Copy(io.Discard, r.Body)
			writeStatus(w, apierrors.NewBadRequest(err.Error()))
		}
		return
	}
	if s.log != nil {
		s.log.Info("imported images", "images", names, "from", "the API")
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(map[string][]string{"images": names})
}

func boolParam(v, name string) (bool, error) {
	if v == "" {
		return false, nil
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		return false, fmt.Errorf("%s: %q is not a boolean", name, v)
	}
	return b, nil
}

func intParam(v, name string) (int, error) {
	if v == "" {
		return 0, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("%s: %q is not a non-negative integer", name, v)
	}
	return n, nil
}

// flushWriter flushes after every write when following a log.
type flushWriter struct {
	w     http.ResponseWriter
	f     http.Flusher
	wrote bool
}

func (f *flushWriter) Write(p []byte) (int, error) {
	f.wrote = true
	n, err := f.w.Write(p)
	if f.f != nil {
		f.f.Flush()
	}
	return n, err
}

// writeStatus answers with a Kubernetes Status.
func writeStatus(w http.ResponseWriter, err error) {
	var st metav1.Status
	var se apierrors.APIStatus
	if errors.As(err, &se) {
		st = se.Status()
	} else {
		st = apierrors.NewInternalError(err).Status()
	}
	st.Kind, st.APIVersion = "Status", "v1"
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(int(st.Code))
	json.NewEncoder(w).Encode(st)
}
