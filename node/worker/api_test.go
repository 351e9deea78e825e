package worker

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"orch.dev/orch/node/kubelet"
	"orch.dev/orch/node/runtime"
	"orch.dev/orch/node/runtime/fake"
	"orch.dev/orch/node/worker/execstream"
)

// pods maps "ns/name/container" (and ".../previous") to container IDs.
type pods map[string]string

func (p pods) Container(ns, name, container string, previous bool) (string, error) {
	if container == "" {
		return "", fmt.Errorf("%w for pod %s", kubelet.ErrContainerName, name)
	}
	key := ns + "/" + name + "/" + container
	if previous {
		key += "/previous"
	}
	if _, ok := p[ns+"/"+name+"/"+container]; !ok {
		return "", kubelet.ErrPodNotFound
	}
	id, ok := p[key]
	if !ok {
		return "", kubelet.ErrContainerNotFound
	}
	return id, nil
}

func newAPI(t *testing.T, token string) (*httptest.Server, *fake.Runtime, pods) {
	rt := fake.New(fake.Options{Images: []string{"orch.test/web:v1"}})
	ctx := context.Background()
	sb, err := rt.CreateSandbox(ctx, runtime.SandboxConfig{Name: "web", Namespace: "default", UID: "u1"})
	if err != nil {
		t.Fatal(err)
	}
	ids := pods{}
	for attempt := range 2 {
		id, err := rt.CreateContainer(ctx, sb.ID, runtime.ContainerConfig{Name: "app", Attempt: attempt, Image: "orch.test/web:v1"})
		if err != nil {
			t.Fatal(err)
		}
		rt.StartContainer(ctx, id)
		rt.WriteLog(id, fmt.Sprintf("attempt %d line 1\nattempt %d line 2\n", attempt, attempt))
		if attempt == 0 {
			rt.Exit(id, 1)
			ids["default/web/app/previous"] = id
		} else {
			ids["default/web/app"] = id
		}
	}
	rt.SetExec(func(ctx context.Context, c runtime.ContainerStatus, cmd []string, stdout, stderr io.Writer) (int, error) {
		if cmd[0] == "missing" {
			return 0, fmt.Errorf("exec: %w: no such file", runtime.ErrCannotRun)
		}
		fmt.Fprintf(stdout, "out:%s", strings.Join(cmd, " "))
		fmt.Fprint(stderr, "err")
		return 7, nil
	})
	srv := httptest.NewServer((&apiServer{pods: ids, rt: rt, token: token}).handler())
	t.Cleanup(srv.Close)
	return srv, rt, ids
}

func get(t *testing.T, req *http.Request) (int, string) {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// The worker API serves logs (current and previous attempt, tail) and
// exec (separate streams, exit code, a command that cannot run), answers
// bad requests with Kubernetes Status objects, and demands the token.
func TestWorkerAPI(t *testing.T) {
	srv, _, _ := newAPI(t, "s3cret")
	req := func(method, path string) *http.Request {
		r, _ := http.NewRequest(method, srv.URL+path, nil)
		r.Header.Set("Authorization", "Bearer s3cret")
		return r
	}
	for _, tc := range []struct {
		path string
		code int
		body string
	}{
		{"/pods/default/web/log?container=app", 200, "attempt 1 line 1\nattempt 1 line 2\n"},
		{"/pods/default/web/log?container=app&tailLines=1", 200, "attempt 1 line 2\n"},
		{"/pods/default/web/log?container=app&previous=true", 200, "attempt 0 line 1\nattempt 0 line 2\n"},
		{"/pods/default/web/log?container=app&limitBytes=7", 200, "attempt"},
		{"/pods/default/web/log", 400, "a container name must be given"},
		{"/pods/default/web/log?container=app&tailLines=x", 400, "tailLines"},
		{"/pods/default/nope/log?container=app", 404, `pods \"nope\" not found`},
	} {
		code, body := get(t, req(http.MethodGet, tc.path))
		if code != tc.code || !strings.Contains(body, tc.body) {
			t.Errorf("GET %s: %d %q, want %d with %q", tc.path, code, body, tc.code, tc.body)
		}
		if code != 200 {
			var st metav1.Status
			if err := json.Unmarshal([]byte(body), &st); err != nil || st.Kind != "Status" || int(st.Code) != code {
				t.Errorf("GET %s: error body is not a Status: %q", tc.path, body)
			}
		}
	}

	resp, err := http.DefaultClient.Do(req(http.MethodPost, "/pods/default/web/exec?container=app&command=echo&command=hi"))
	if err != nil {
		t.Fatal(err)
	}
	var out, errOut bytes.Buffer
	code, err := execstream.Read(resp.Body, &out, &errOut)
	resp.Body.Close()
	if err != nil || code != 7 || out.String() != "out:echo hi" || errOut.String() != "err" || resp.Header.Get("Content-Type") != execstream.ContentType {
		t.Fatalf("exec: code %d err %v stdout %q stderr %q", code, err, out.String(), errOut.String())
	}
	resp, _ = http.DefaultClient.Do(req(http.MethodPost, "/pods/default/web/exec?container=app&command=missing"))
	_, err = execstream.Read(resp.Body, nil, nil)
	resp.Body.Close()
	if err == nil || !strings.Contains(err.Error(), "no such file") {
		t.Fatalf("exec of a missing command: %v", err)
	}
	if code, body := get(t, req(http.MethodPost, "/pods/default/web/exec?container=app")); code != 400 || !strings.Contains(body, "command") {
		t.Fatalf("exec without a command: %d %q", code, body)
	}
	if code, _ := get(t, req(http.MethodPost, "/pods/default/web/exec?container=app&command=sh&stdin=true")); code != 400 {
		t.Fatalf("interactive exec: %d", code)
	}
	noToken, _ := http.NewRequest(http.MethodGet, srv.URL+"/pods/default/web/log?container=app", nil)
	if code, _ := get(t, noToken); code != http.StatusUnauthorized {
		t.Fatalf("without the token: %d", code)
	}
}

// Frames survive any split of the stream; a stream cut before the exit
// frame is an error, not exit code 0.
func TestExecStream(t *testing.T) {
	var buf bytes.Buffer
	w := execstream.NewWriter(&buf)
	w.Stdout().Write([]byte("hello "))
	w.Stderr().Write([]byte("oops"))
	w.Stdout().Write(bytes.Repeat([]byte("x"), 3<<20)) // larger than one frame
	w.Exit(42, nil)
	var out, errOut bytes.Buffer
	code, err := execstream.Read(iotestOneByte(&buf), &out, &errOut)
	if err != nil || code != 42 || !strings.HasPrefix(out.String(), "hello xxx") || out.Len() != 6+3<<20 || errOut.String() != "oops" {
		t.Fatalf("code %d err %v stdout %d bytes stderr %q", code, err, out.Len(), errOut.String())
	}
	var cut bytes.Buffer
	execstream.NewWriter(&cut).Stdout().Write([]byte("partial"))
	if _, err := execstream.Read(&cut, io.Discard, io.Discard); err != execstream.ErrNoExit {
		t.Fatalf("a cut stream: %v", err)
	}
}

// iotestOneByte reads a few bytes at a time.
func iotestOneByte(r io.Reader) io.Reader { return &smallReader{r} }

type smallReader struct{ r io.Reader }

func (s *smallReader) Read(p []byte) (int, error) { return s.r.Read(p[:min(len(p), 3)]) }
