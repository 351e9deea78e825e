package chaos

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"

	"orch.dev/orch/api"
	"orch.dev/orch/api/client"
)

// Version is one state of a register, as the change stream delivered it.
type Version struct {
	Version uint64
	Value   string
}

// keyWatch follows every change of the registers through one watch
// stream (resumed on any server after a failure), so that the checker
// knows each key's complete sequence of versions: the "final history"
// against which acknowledged writes are checked. It does not relist: if
// the servers no longer hold the history it needs (410 Gone), it says
// so instead of papering over a gap.
type keyWatch struct {
	cl   *client.Client
	ns   string
	keys map[string]bool

	mu       sync.Mutex
	byKey    map[string][]Version
	lastRV   uint64 // every change up to here has been seen
	gap      string // why the history is incomplete ("" = complete)
	resumes  int
	cancel   context.CancelFunc
	finished chan struct{}
}

func startKeyWatch(cl *client.Client, ns string, keys []string, fromRV uint64) *keyWatch {
	ctx, cancel := context.WithCancel(context.Background())
	w := &keyWatch{cl: cl, ns: ns, keys: map[string]bool{}, byKey: map[string][]Version{}, lastRV: fromRV,
		cancel: cancel, finished: make(chan struct{})}
	for _, k := range keys {
		w.keys[k] = true
	}
	go w.run(ctx)
	return w
}

func (w *keyWatch) run(ctx context.Context) {
	defer close(w.finished)
	servers := w.cl.Servers()
	gone, rot := 0, 0 // answers of 410 Gone since the last event; which server to ask next
	for ctx.Err() == nil {
		// A server that restored a snapshot holds the changes only from
		// there on (410 Gone): then each other server is asked in turn.
		pin := ""
		if gone > 0 {
			pin = servers[rot%len(servers)]
		}
		delivered, err := w.stream(ctx, pin)
		if ctx.Err() != nil {
			return
		}
		if delivered {
			gone = 0
		}
		if err == errGone {
			rot++
			if gone++; gone > 2*len(servers) {
				w.mu.Lock()
				w.gap = fmt.Sprintf("no server held the changes after version %d any more (410 Gone)", w.lastRV)
				w.mu.Unlock()
				return
			}
			continue
		}
		w.mu.Lock()
		w.resumes++
		w.mu.Unlock()
		sleepPoll() // back-off between attempts
	}
}

var errGone = fmt.Errorf("410 gone")

type watchEvent struct {
	Type   string          `json:"type"`
	Object json.RawMessage `json:"object"`
}

// stream reads one watch request. It resumes from just before the last
// version seen, because one Raft entry (one version) may change several
// keys; a key's versions strictly increase, so replays are dropped by key.
func (w *keyWatch) stream(ctx context.Context, server string) (delivered bool, err error) {
	w.mu.Lock()
	from := w.lastRV
	w.mu.Unlock()
	if from > 0 {
		from--
	}
	q := url.Values{"watch": {"true"}, "allowWatchBookmarks": {"true"}, "resourceVersion": {strconv.FormatUint(from, 10)}}
	resp, err := w.cl.Do(ctx, client.Request{Method: http.MethodGet, Path: api.ConfigMap.Path(w.ns), Query: q, Stream: true, Server: server})
	if err != nil {
		if isGone(err) {
			return false, errGone
		}
		return false, err
	}
	defer resp.Stream.Close()
	sc := bufio.NewScanner(resp.Stream)
	sc.Buffer(make([]byte, 64<<10), 8<<20)
	for sc.Scan() {
		var ev watchEvent
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			return delivered, err
		}
		if ev.Type == "ERROR" {
			var st struct {
				Code int `json:"code"`
			}
			json.Unmarshal(ev.Object, &st)
			if st.Code == http.StatusGone {
				return delivered, errGone
			}
			return delivered, fmt.Errorf("watch error: %s", ev.Object)
		}
		var cm corev1.ConfigMap
		if err := json.Unmarshal(ev.Object, &cm); err != nil {
			return delivered, err
		}
		if ev.Type == "BOOKMARK" {
			w.advance(cm.ResourceVersion)
			continue
		}
		delivered = true
		rv, _ := strconv.ParseUint(cm.ResourceVersion, 10, 64)
		w.mu.Lock()
		if w.keys[cm.Name] && ev.Type != "DELETED" {
			hist := w.byKey[cm.Name]
			if len(hist) == 0 || rv > hist[len(hist)-1].Version {
				w.byKey[cm.Name] = append(hist, Version{Version: rv, Value: cm.Data["v"]})
			}
		}
		if rv > w.lastRV {
			w.lastRV = rv
		}
		w.mu.Unlock()
	}
	return delivered, sc.Err()
}

func (w *keyWatch) advance(rvs string) {
	rv, _ := strconv.ParseUint(rvs, 10, 64)
	w.mu.Lock()
	if rv > w.lastRV {
		w.lastRV = rv
	}
	w.mu.Unlock()
}

func isGone(err error) bool {
	var code int32
	if se, ok := asStatus(err); ok {
		code = se.ErrStatus.Code
	}
	return code == http.StatusGone
}

// waitFor waits until the stream has delivered every change up to rv.
func (w *keyWatch) waitFor(ctx context.Context, rv uint64, timeout time.Duration) error {
	return poll(ctx, timeout, func() bool {
		w.mu.Lock()
		defer w.mu.Unlock()
		return w.lastRV >= rv || w.gap != ""
	})
}

// stop ends the stream and returns each key's versions, and why they are
// incomplete if they are.
func (w *keyWatch) stop() (map[string][]Version, string, int) {
	w.cancel()
	<-w.finished
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.byKey, w.gap, w.resumes
}
