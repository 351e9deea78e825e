package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"

	"orch.dev/orch/fsm"
)

// bookmarkInterval is how often a watch that asked for bookmarks is told the
// current resourceVersion, so that a resumed watch starts close to now even
// when its objects did not change.
const bookmarkInterval = 5 * time.Second

// maxWatchWrite is about how many bytes of events a watch sends at once.
const maxWatchWrite = 256 << 10

// serveWatch streams {"type":...,"object":...} lines. Without a
// resourceVersion it first sends the current state as ADDED events (read
// linearizably unless stale); with one, it replays the changes after it from
// this server's history, or answers 410 Gone when they are no longer held.
func (a *Agent) serveWatch(w http.ResponseWriter, r *http.Request, info requestInfo, q url.Values) {
	ls, fs, err := selectors(info.Kind, q)
	if err != nil {
		writeError(w, err)
		return
	}
	m := &matcher{kind: info.Kind, namespace: info.Namespace, labels: ls, fields: fs, hidden: hiddenNamespace(PrincipalOf(r))}
	ctx := r.Context()
	if s := q.Get("timeoutSeconds"); s != "" {
		secs, err := strconv.Atoi(s)
		if err != nil || secs < 0 {
			writeError(w, apierrors.NewBadRequest("timeoutSeconds: must be a non-negative integer"))
			return
		}
		if secs > 0 {
			var cancel func()
			ctx, cancel = context.WithTimeout(ctx, time.Duration(secs)*time.Second)
			defer cancel()
		}
	}
	history := a.fsm.History()
	var cursor uint64
	var initial []*fsm.Record
	switch rv := q.Get("resourceVersion"); rv {
	case "", "0":
		view, err := a.readView(ctx, q)
		if err != nil {
			writeError(w, err)
			return
		}
		cursor = view.Index()
		m.each(view, "", func(rec *fsm.Record) bool {
			initial = append(initial, a.listedRecord(rec))
			return true
		})
	default:
		if cursor, err = fsm.ParseRV(rv); err != nil {
			writeError(w, apierrors.NewBadRequest(err.Error()))
			return
		}
		if base := history.Base(); cursor < base {
			writeError(w, apierrors.NewResourceExpired(fmt.Sprintf("too old resource version: %d (%d)", cursor, base)))
			return
		}
	}
	flusher, _ := w.(http.Flusher)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	if flusher != nil {
		flusher.Flush() // the client learns the watch started before any event
	}
	var out bytes.Buffer
	send := func() bool {
		if out.Len() == 0 {
			return true
		}
		_, err := w.Write(out.Bytes())
		out.Reset()
		if flusher != nil {
			flusher.Flush()
		}
		return err == nil
	}
	for _, rec := range initial {
		writeEvent(&out, fsm.Added, rec.JSON())
		if out.Len() >= maxWatchWrite && !send() {
			return
		}
	}
	if !send() {
		return
	}
	var bookmarks <-chan time.Time
	if q.Get("allowWatchBookmarks") == "true" {
		t := time.NewTicker(bookmarkInterval)
		defer t.Stop()
		bookmarks = t.C
	}
	var buf []fsm.Event
	for {
		evs, wake, err := history.Since(cursor, buf[:0])
		if errors.Is(err, fsm.ErrGone) {
			st := toStatus(err).ErrStatus
			st.Kind, st.APIVersion = "Status", "v1"
			writeEventValue(&out, "ERROR", st)
			send()
			return
		}
		if err != nil {
			return
		}
		buf = evs
		for _, e := range evs {
			cursor = e.Index()
			if t, ok := visibleChange(m, e); ok {
				writeEvent(&out, t, a.listedRecord(e.Record).JSON())
			}
			// A watcher that fell behind gets up to the whole history at
			// once: send it in pieces rather than hold it all.
			if out.Len() >= maxWatchWrite && !send() {
				return
			}
		}
		if !send() {
			return
		}
		select {
		case <-wake:
		case <-ctx.Done():
			return
		case <-bookmarks:
			fmt.Fprintf(&out, `{"type":"BOOKMARK","object":{"kind":%q,"apiVersion":%q,"metadata":{"resourceVersion":"%d"}}}`+"\n",
				info.Kind.Kind, info.Kind.APIVersion(), cursor)
			if !send() {
				return
			}
		}
	}
}

// visibleChange translates a change into what a filtered watch reports: an
// object entering the selector is ADDED, one leaving it is DELETED.
func visibleChange(m *matcher, e fsm.Event) (fsm.EventType, bool) {
	cur := m.matches(e.Record)
	switch e.Type {
	case fsm.Modified:
		prev := e.Prev != nil && m.matches(e.Prev)
		switch {
		case cur && prev:
			return fsm.Modified, true
		case cur:
			return fsm.Added, true
		case prev:
			return fsm.Deleted, true
		}
		return "", false
	default:
		return e.Type, cur
	}
}

func writeEvent(out *bytes.Buffer, t fsm.EventType, obj []byte) {
	out.WriteString(`{"type":"`)
	out.WriteString(string(t))
	out.WriteString(`","object":`)
	out.Write(obj)
	out.WriteString("}\n")
}

func writeEventValue(out *bytes.Buffer, t string, v any) {
	b, _ := json.Marshal(v)
	out.WriteString(`{"type":"` + t + `","object":`)
	out.Write(b)
	out.WriteString("}\n")
}
