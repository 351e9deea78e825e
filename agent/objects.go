package agent

import (
	"bufio"
	"context"
	"encoding/base64"
	"fmt"
	"net/http"
	"net/url"
	"strconv"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"orch.dev/orch/api"
	"orch.dev/orch/fsm"
)

func (a *Agent) serveResource(w http.ResponseWriter, r *http.Request) {
	info, ok := parseResourcePath(r.URL.Path)
	if !ok {
		writeError(w, notFoundPath())
		return
	}
	q := r.URL.Query()
	a.setLeaderHeader(w)
	switch {
	case info.Subresource == "eviction" || info.Subresource == "binding":
		if r.Method != http.MethodPost {
			writeError(w, apierrors.NewMethodNotSupported(groupResource(info.Kind), r.Method))
		} else if info.Subresource == "eviction" {
			a.serveEviction(w, r, info)
		} else {
			a.serveBinding(w, r, info)
		}
	case r.Method == http.MethodGet && info.Name != "":
		a.serveGet(w, r, info, q)
	case r.Method == http.MethodGet && (q.Get("watch") == "true" || q.Get("watch") == "1"):
		a.serveWatch(w, r, info, q)
	case r.Method == http.MethodGet:
		a.serveList(w, r, info, q)
	case r.Method == http.MethodPost && info.Name == "" && (info.Namespace != "" || !info.Kind.Namespaced):
		a.serveCreate(w, r, info, q)
	case r.Method == http.MethodPut && info.Name != "":
		a.serveUpdate(w, r, info, q)
	case r.Method == http.MethodPatch && info.Name != "":
		a.servePatch(w, r, info, q)
	case r.Method == http.MethodDelete && info.Name != "" && info.Subresource == "":
		a.serveDelete(w, r, info, q)
	case r.Method == http.MethodDelete && info.Name == "":
		a.serveDeleteCollection(w, r, info, q)
	default:
		writeError(w, apierrors.NewMethodNotSupported(groupResource(info.Kind), r.Method))
	}
}

func notFoundPath() *apierrors.StatusError {
	s := apierrors.NewNotFound(schema.GroupResource{}, "")
	s.ErrStatus.Message = "the server could not find the requested resource"
	return s
}

// readView waits until the local state may serve the read: linearizable by
// default; with stale=true (or resourceVersion=0) any state; with another
// resourceVersion, a state at least that new.
func (a *Agent) readView(ctx context.Context, q url.Values) (*fsm.View, error) {
	rv := q.Get("resourceVersion")
	switch {
	case q.Get("stale") == "true" || rv == "0":
	case rv != "":
		n, err := fsm.ParseRV(rv)
		if err != nil {
			return nil, apierrors.NewBadRequest(err.Error())
		}
		wctx, cancel := context.WithTimeout(ctx, a.cfg.LeaderWait)
		defer cancel()
		if err := a.fsm.WaitApplied(wctx, n); err != nil {
			return nil, apierrors.NewTimeoutError(fmt.Sprintf("Too large resource version: %d, current: %d", n, a.fsm.AppliedIndex()), 1)
		}
	default:
		if err := a.linearizableRead(ctx); err != nil {
			return nil, err
		}
	}
	return a.fsm.View(), nil
}

func (a *Agent) serveGet(w http.ResponseWriter, r *http.Request, info requestInfo, q url.Values) {
	view, err := a.readView(r.Context(), q)
	if err != nil {
		writeError(w, err)
		return
	}
	rec, err := a.servedRecord(view.Get(info.Kind, info.Namespace, info.Name))
	if err != nil {
		writeError(w, err)
		return
	}
	if rec == nil {
		writeError(w, apierrors.NewNotFound(groupResource(info.Kind), info.Name))
		return
	}
	writeObject(w, r, http.StatusOK, rec)
}

// writeObject answers with rec in the encoding the client accepts: JSON,
// or Kubernetes' protobuf (which Go clients ask for).
func writeObject(w http.ResponseWriter, r *http.Request, code int, rec *fsm.Record) {
	if !api.IsProtobuf(r.Header.Get("Accept")) {
		writeRaw(w, code, rec.JSON())
		return
	}
	b, err := api.EncodeProto(rec.Kind, rec.Obj)
	if err != nil {
		writeError(w, err)
		return
	}
	w.Header().Set("Content-Type", api.ProtobufContentType)
	w.WriteHeader(code)
	w.Write(b)
}

// decodeBody reads a request object of kind k in the body's encoding.
func decodeBody(k *api.Kind, r *http.Request, body []byte) (api.Object, error) {
	if api.IsProtobuf(r.Header.Get("Content-Type")) {
		return api.DecodeProto(k, body)
	}
	return api.DecodeJSON(k, body)
}

// selectors parses labelSelector and fieldSelector.
func selectors(k *api.Kind, q url.Values) (labels.Selector, fields.Selector, error) {
	ls, err := labels.Parse(q.Get("labelSelector"))
	if err != nil {
		return nil, nil, apierrors.NewBadRequest("labelSelector: " + err.Error())
	}
	fs, err := api.ParseFieldSelector(k, q.Get("fieldSelector"))
	if err != nil {
		return nil, nil, apierrors.NewBadRequest("fieldSelector: " + err.Error())
	}
	return ls, fs, nil
}

// matcher reports whether a record passes a request's namespace and selectors.
type matcher struct {
	kind      *api.Kind
	namespace string
	labels    labels.Selector
	fields    fields.Selector
	hidden    string // a namespace the caller may not see (authz.go), or ""
}

func (m *matcher) matches(rec *fsm.Record) bool {
	if rec.Kind != m.kind || (m.namespace != "" && rec.Obj.GetNamespace() != m.namespace) {
		return false
	}
	if m.hidden != "" && (rec.Obj.GetNamespace() == m.hidden || rec.Kind == api.Namespace && rec.Obj.GetName() == m.hidden) {
		return false
	}
	if !m.labels.Empty() && !m.labels.Matches(labels.Set(rec.Obj.GetLabels())) {
		return false
	}
	return m.fields.Empty() || m.fields.Matches(api.FieldSet(rec.Obj))
}

// each visits the matching records, using the pod node index when the
// field selector pins spec.nodeName (how every worker lists its pods).
func (m *matcher) each(view *fsm.View, after string, fn func(*fsm.Record) bool) {
	visit := func(rec *fsm.Record) bool {
		if !m.matches(rec) {
			return true
		}
		return fn(rec)
	}
	if node, ok := m.fields.RequiresExactMatch("spec.nodeName"); ok && m.kind == api.Pod && after == "" {
		view.PodsOnNode(node, visit)
		return
	}
	if after != "" {
		view.ListFrom(m.kind, m.namespace, after, visit)
		return
	}
	view.List(m.kind, m.namespace, visit)
}

func (a *Agent) serveList(w http.ResponseWriter, r *http.Request, info requestInfo, q url.Values) {
	ls, fs, err := selectors(info.Kind, q)
	if err != nil {
		writeError(w, err)
		return
	}
	limit := 0
	if s := q.Get("limit"); s != "" {
		if limit, err = strconv.Atoi(s); err != nil || limit < 0 {
			writeError(w, apierrors.NewBadRequest("limit: must be a non-negative integer"))
			return
		}
	}
	after := ""
	if c := q.Get("continue"); c != "" {
		b, err := base64.RawURLEncoding.DecodeString(c)
		if err != nil {
			writeError(w, apierrors.NewBadRequest("continue: invalid token"))
			return
		}
		after = string(b)
	}
	view, err := a.readView(r.Context(), q)
	if err != nil {
		writeError(w, err)
		return
	}
	m := &matcher{kind: info.Kind, namespace: info.Namespace, labels: ls, fields: fs, hidden: hiddenNamespace(PrincipalOf(r))}
	// The items come first (a page needs its continue token, known only at
	// its end); they are the cached encodings, referenced, not copied.
	var items []*fsm.Record
	last, more := "", false
	m.each(view, after, func(rec *fsm.Record) bool {
		if limit > 0 && len(items) == limit {
			more = true
			return false
		}
		items = append(items, a.listedRecord(rec))
		last = rec.Key
		return true
	})
	if api.IsProtobuf(r.Header.Get("Accept")) {
		writeProtoList(w, info.Kind, view, items, more, last)
		return
	}
	meta := fmt.Sprintf(`{"resourceVersion":"%d"`, view.Index())
	if more {
		meta += fmt.Sprintf(`,"continue":%q`, base64.RawURLEncoding.EncodeToString([]byte(last)))
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	bw := bufio.NewWriterSize(w, 64<<10)
	fmt.Fprintf(bw, `{"kind":%q,"apiVersion":%q,"metadata":%s},"items":[`, info.Kind.ListKind(), info.Kind.APIVersion(), meta)
	for i, rec := range items {
		if i > 0 {
			bw.WriteByte(',')
		}
		bw.Write(rec.JSON())
	}
	bw.WriteString("]}\n")
	bw.Flush()
}

func writeProtoList(w http.ResponseWriter, k *api.Kind, view *fsm.View, items []*fsm.Record, more bool, last string) {
	meta := metav1.ListMeta{ResourceVersion: strconv.FormatUint(view.Index(), 10)}
	if more {
		meta.Continue = base64.RawURLEncoding.EncodeToString([]byte(last))
	}
	objs := make([]api.Object, len(items))
	for i, rec := range items {
		objs[i] = rec.Obj
	}
	b, err := api.EncodeProtoList(k, meta, objs)
	if err != nil {
		writeError(w, err)
		return
	}
	w.Header().Set("Content-Type", api.ProtobufContentType)
	w.WriteHeader(http.StatusOK)
	w.Write(b)
}
