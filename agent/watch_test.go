package agent

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"
)

type watchLine struct {
	Type   string `json:"type"`
	Object struct {
		Code     int `json:"code"`
		Metadata struct {
			Name            string `json:"name"`
			ResourceVersion string `json:"resourceVersion"`
		} `json:"metadata"`
	} `json:"object"`
}

// openWatch starts a watch and returns its events one by one.
func openWatch(t *testing.T, a *Agent, query string) (<-chan watchLine, func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := newAPIRequest(ctx, a, "GET", cmPath+"?watch=true&"+query, nil)
	resp, err := apiHTTPClient(a).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 {
		t.Fatalf("watch: %s", resp.Status)
	}
	ch := make(chan watchLine, 100)
	go func() {
		defer close(ch)
		defer resp.Body.Close()
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			var l watchLine
			json.Unmarshal(sc.Bytes(), &l)
			ch <- l
		}
	}()
	return ch, cancel
}

func next(t *testing.T, ch <-chan watchLine) watchLine {
	t.Helper()
	select {
	case l, ok := <-ch:
		if !ok {
			t.Fatal("watch closed")
		}
		return l
	case <-time.After(10 * time.Second):
		t.Fatal("no watch event within 10s")
	}
	return watchLine{}
}

// A label-selected watch on a follower reports an object entering the
// selector as ADDED and leaving it as DELETED, as Kubernetes does.
func TestWatchReportsSelectorTransitions(t *testing.T) {
	c := startCluster(t, 3, "")
	l, f := c.leader(), c.follower()
	events, stop := openWatch(t, f, "labelSelector=tier%3Dweb&resourceVersion=1")
	defer stop()
	steps := []struct {
		method, path, ctype, body string
		want                      string // expected event, "" for none
	}{
		{"POST", cmPath, "", `{"metadata":{"name":"a"}}`, ""},
		{"PATCH", cmPath + "/a", "application/merge-patch+json", `{"metadata":{"labels":{"tier":"web"}}}`, "ADDED a"},
		{"PATCH", cmPath + "/a", "application/merge-patch+json", `{"data":{"k":"v"}}`, "MODIFIED a"},
		{"PATCH", cmPath + "/a", "application/merge-patch+json", `{"metadata":{"labels":{"tier":null}}}`, "DELETED a"},
		{"POST", cmPath, "", `{"metadata":{"name":"b","labels":{"tier":"web"}}}`, "ADDED b"},
		{"DELETE", cmPath + "/b", "", "", "DELETED b"},
	}
	var want []string
	for _, s := range steps {
		if code, body := do(t, l, s.method, s.path, s.ctype, s.body); code >= 300 {
			t.Fatalf("%s %s: %d %s", s.method, s.path, code, body)
		}
		if s.want != "" {
			want = append(want, s.want)
		}
	}
	var got []string
	for range want {
		e := next(t, events)
		got = append(got, e.Type+" "+e.Object.Metadata.Name)
	}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("events %v, want %v", got, want)
	}
}

// A watch from a version older than the retained history gets 410 Gone.
func TestWatchFromTooOldVersionIsGone(t *testing.T) {
	c := startCluster(t, 1, "", func(cfg *Config) { cfg.WatchHistory = 4 })
	a := c.agents[0]
	for _, n := range []string{"a", "b", "c", "d", "e", "f"} {
		if code, _ := do(t, a, "POST", cmPath, "", `{"metadata":{"name":"`+n+`"}}`); code != 201 {
			t.Fatal("create failed")
		}
	}
	code, body := do(t, a, "GET", cmPath+"?watch=true&resourceVersion=2", "", "")
	if code != http.StatusGone || !strings.Contains(body, "Expired") {
		t.Fatalf("got %d %s, want 410 Expired", code, body)
	}
	// A recent version is served: the last create is replayed.
	base := a.fsm.History().Base()
	events, stop := openWatch(t, a, "resourceVersion="+itoa(base))
	defer stop()
	if e := next(t, events); e.Type != "ADDED" {
		t.Fatalf("first event from the retained history: %+v", e)
	}
}

func itoa(n uint64) string { return strings.TrimSpace(strings.Replace(jsonNumber(n), `"`, "", -1)) }

func jsonNumber(n uint64) string { b, _ := json.Marshal(n); return string(b) }
