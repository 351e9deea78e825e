package worker

import (
	"net/http"
	"testing"
)

// --tail 0 prints no line (the runtime's TailLines 0 means all of them).
func TestWorkerAPILogsTailZero(t *testing.T) {
	srv, _, _ := newAPI(t, "")
	for path, want := range map[string]string{
		"/pods/default/web/log?container=app&tailLines=0": "",
		"/pods/default/web/log?container=app&tailLines=1": "attempt 1 line 2\n",
	} {
		req, _ := http.NewRequest(http.MethodGet, srv.URL+path, nil)
		if code, body := get(t, req); code != 200 || body != want {
			t.Errorf("GET %s: %d %q, want %q", path, code, body, want)
		}
	}
}
