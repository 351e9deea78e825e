package cli

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"orch.dev/orch/api"
	"orch.dev/orch/node/worker/execstream"
)

// fakePodAPI serves pods, a deployment and the log and exec
// subresources the way the API server passes them from a worker, and
// records the log and exec calls.
type fakePodAPI struct {
	t    *testing.T
	srv  *httptest.Server
	pods map[string]*corev1.Pod

	mu    sync.Mutex
	calls []string // "log ?query" / "exec ?query"

	// release, when set, holds a followed log after its first line.
	release chan struct{}
}

func twoContainerPod(name string, annotations map[string]string) *corev1.Pod {
	p := typed(api.Pod, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default", Annotations: annotations,
		Labels: map[string]string{"app": "web"}, CreationTimestamp: ago(time.Hour)},
		Spec: corev1.PodSpec{NodeName: "w1",
			InitContainers: []corev1.Container{{Name: "setup", Image: "busybox"}},
			Containers:     []corev1.Container{{Name: "web", Image: "web"}, {Name: "sidecar", Image: "web"}}},
		Status: corev1.PodStatus{Phase: corev1.PodRunning}})
	return p
}

func newFakePodAPI(t *testing.T) *fakePodAPI {
	f := &fakePodAPI{t: t, pods: map[string]*corev1.Pod{}}
	add := func(p *corev1.Pod) { f.pods[p.Name] = p }
	add(twoContainerPod("web", nil))
	add(twoContainerPod("annotated", map[string]string{defaultContainerAnnotation: "sidecar"}))
	add(twoContainerPod("badannotation", map[string]string{defaultContainerAnnotation: "gone"}))
	single := typed(api.Pod, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "single", Namespace: "default"},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "web"}}}, Status: corev1.PodStatus{Phase: corev1.PodRunning}})
	add(single)
	starting := single.DeepCopy()
	starting.Name, starting.Spec.Containers[0].Name = "starting", "waiting"
	add(starting)
	done := single.DeepCopy()
	done.Name, done.Status.Phase = "done", corev1.PodSucceeded
	add(done)
	// Pods of deployment/web: the one to choose is bound, running, ready
	// the longest.
	ready := func(name string, since time.Duration) *corev1.Pod {
		p := twoContainerPod(name, nil)
		p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue, LastTransitionTime: ago(since)}}
		return p
	}
	pending := twoContainerPod("web-pending", nil)
	pending.Status.Phase, pending.Spec.NodeName = corev1.PodPending, ""
	add(pending)
	add(ready("web-ready-new", time.Minute))
	add(ready("web-ready-old", time.Hour))

	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/v1/namespaces/default/pods/{name}", func(w http.ResponseWriter, r *http.Request) {
		p, ok := f.pods[r.PathValue("name")]
		if !ok {
			writeTestStatus(w, apierrors.NewNotFound(schema.GroupResource{Resource: "pods"}, r.PathValue("name")))
			return
		}
		json.NewEncoder(w).Encode(p)
	})
	mux.HandleFunc("GET /api/v1/namespaces/default/pods", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("labelSelector") != "app=web" {
			t.Errorf("pods listed with %q", r.URL.RawQuery)
		}
		items := []*corev1.Pod{f.pods["web-pending"], f.pods["web-ready-new"], f.pods["web-ready-old"]}
		json.NewEncoder(w).Encode(map[string]any{"kind": "PodList", "apiVersion": "v1", "metadata": map[string]any{}, "items": items})
	})
	mux.HandleFunc("GET /apis/apps/v1/namespaces/default/deployments/web", func(w http.ResponseWriter, r *http.Request) {
		d := typed(api.Deployment, &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "default"},
			Spec: appsv1.DeploymentSpec{Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}}}})
		json.NewEncoder(w).Encode(d)
	})
	mux.HandleFunc("GET /api/v1/namespaces/default/pods/{name}/log", func(w http.ResponseWriter, r *http.Request) {
		f.record("log " + r.PathValue("name") + " " + r.URL.RawQuery)
		if r.URL.Query().Get("container") == "waiting" {
			writeTestStatus(w, apierrors.NewBadRequest(`container "waiting" in pod "web" is waiting to start: ContainerCreating`))
			return
		}
		w.Write([]byte("line 1\n"))
		if r.URL.Query().Get("follow") == "true" && f.release != nil {
			w.(http.Flusher).Flush()
			select {
			case <-f.release:
			case <-r.Context().Done():
				return
			}
		}
		w.Write([]byte("line 2\n"))
	})
	mux.HandleFunc("POST /api/v1/namespaces/default/pods/{name}/exec", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		f.record("exec " + r.PathValue("name") + " " + r.URL.RawQuery)
		cmd := q["command"]
		if cmd[0] == "break" { // the connection breaks before any answer
			conn, _, _ := w.(http.Hijacker).Hijack()
			conn.Close()
			return
		}
		w.Header().Set("Content-Type", execstream.ContentType)
		ew := execstream.NewWriter(w)
		switch cmd[0] {
		case "missing":
			ew.Exit(0, fmt.Errorf(`exec: "missing": executable file not found in $PATH`))
			return
		case "cut":
			ew.Stdout().Write([]byte("partial"))
			return
		}
		fmt.Fprintf(ew.Stdout(), "out:%s\n", strings.Join(cmd, "|"))
		fmt.Fprintf(ew.Stderr(), "err:%s\n", q.Get("container"))
		code, _ := strconv.Atoi(cmd[len(cmd)-1])
		ew.Exit(code, nil)
	})
	f.srv = httptest.NewServer(mux)
	t.Cleanup(f.srv.Close)
	return f
}

func writeTestStatus(w http.ResponseWriter, err *apierrors.StatusError) {
	st := err.ErrStatus
	st.Kind, st.APIVersion = "Status", "v1"
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(int(st.Code))
	json.NewEncoder(w).Encode(st)
}

func (f *fakePodAPI) record(call string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, call)
}

// takeCalls returns the calls so far (decoded queries) and forgets them.
func (f *fakePodAPI) takeCalls() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := f.calls
	f.calls = nil
	for i, c := range out {
		out[i], _ = url.QueryUnescape(c)
	}
	return out
}

// logs picks the container as kubectl does, passes its flags (before or
// after the pod) to the server as the Kubernetes query, and reports
// argument and server errors on one line without calling the log API.
func TestLogs(t *testing.T) {
	f := newFakePodAPI(t)
	const defaulted = "Defaulted container \"web\" out of: web, sidecar, setup (init)\n"
	for _, tc := range []struct {
		args           []string
		code           int
		stdout, stderr string
		call           string // the log call made, "" for none
	}{
		{args: []string{"web"}, stdout: "line 1\nline 2\n", stderr: defaulted, call: "log web container=web"},
		{args: []string{"single"}, stdout: "line 1\nline 2\n", call: "log single container=app"},
		{args: []string{"pod/annotated"}, stdout: "line 1\nline 2\n", call: "log annotated container=sidecar"},
		{args: []string{"web", "-c", "sidecar"}, stdout: "line 1\nline 2\n", call: "log web container=sidecar"},
		{args: []string{"web", "setup"}, stdout: "line 1\nline 2\n", call: "log web container=setup"},
		{args: []string{"web", "-c", "web", "-p", "--tail", "5", "--limit-bytes=100"}, stdout: "line 1\nline 2\n",
			call: "log web container=web&limitBytes=100&previous=true&tailLines=5"},
		{args: []string{"--tail=0", "-f", "single"}, stdout: "line 1\nline 2\n", call: "log single container=app&follow=true&tailLines=0"},
		{args: []string{"deployment/web", "-c", "web"}, stdout: "line 1\nline 2\n", stderr: "Found 3 pods, using pod/web-ready-old\n",
			call: "log web-ready-old container=web"},
		{args: []string{"web", "-c", "nope"}, code: 1,
			stderr: "error: container nope is not valid for pod web out of: web, sidecar, setup (init)\n"},
		{args: []string{"badannotation"}, code: 1,
			stderr: "error: container gone is not valid for pod badannotation out of: web, sidecar, setup (init)\n"},
		{args: []string{"web", "sidecar", "-c", "web"}, code: 1, stderr: "error: only one of -c or an inline [CONTAINER] arg is allowed\n"},
		{args: nil, code: 1, stderr: "error: " + logsUsage + "\n"},
		{args: []string{"a", "b", "c"}, code: 1, stderr: "error: " + logsUsage + "\n"},
		{args: []string{"web", "--tail", "-2"}, code: 1, stderr: "error: --tail must be greater than or equal to -1\n"},
		{args: []string{"missing"}, code: 1, stderr: "Error from server (NotFound): pods \"missing\" not found\n"},
		{args: []string{"starting"}, code: 1, call: "log starting container=waiting",
			stderr: "Error from server (BadRequest): container \"waiting\" in pod \"web\" is waiting to start: ContainerCreating\n"},
	} {
		r := runCLI(t, f.srv.URL, "", append([]string{"logs"}, tc.args...)...)
		calls := f.takeCalls()
		if r.code != tc.code || r.stdout != tc.stdout || r.stderr != tc.stderr {
			t.Errorf("logs %q: exit %d, stdout %q, stderr %q; want %d, %q, %q", tc.args, r.code, r.stdout, r.stderr, tc.code, tc.stdout, tc.stderr)
		}
		want := []string(nil)
		if tc.call != "" {
			want = []string{tc.call}
		}
		if strings.Join(calls, ";") != strings.Join(want, ";") {
			t.Errorf("logs %q: calls %q, want %q", tc.args, calls, want)
		}
	}
}

func TestLogsOfAnUnsupportedKind(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(typed(api.ConfigMap, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "x", Namespace: "default"}}))
	}))
	defer srv.Close()
	mustFail(t, srv.URL, "", "error: cannot choose a pod of configmap/x: only deployments, replica sets, daemon sets and services select pods",
		"logs", "configmap/x")
}

// logs -f prints each line as the server sends it, and ends cleanly
// when interrupted.
func TestLogsFollowStreams(t *testing.T) {
	f := newFakePodAPI(t)
	f.release = make(chan struct{})
	b := startCLI(t, f.srv.URL, "logs", "-f", "single")
	b.waitOutput(t, "line 1\n")
	if strings.Contains(b.out.String(), "line 2") {
		t.Fatal("line 2 printed before the server sent it")
	}
	close(f.release)
	if code := b.wait(t, 10*time.Second); code != 0 || b.out.String() != "line 1\nline 2\n" {
		t.Fatalf("exit %d, stdout %q, stderr %q", code, b.out.String(), b.err.String())
	}
}

// exec passes the command after -- (flags anywhere before it), keeps the
// command's stdout and stderr apart, exits with its exit code, and never
// sends a command twice.
func TestExec(t *testing.T) {
	f := newFakePodAPI(t)
	const defaulted = "Defaulted container \"web\" out of: web, sidecar, setup (init)\n"
	for _, tc := range []struct {
		args           []string
		code           int
		stdout, stderr string
		call           string
	}{
		{args: []string{"web", "--", "sh", "-c", "echo -- x", "0"}, stdout: "out:sh|-c|echo -- x|0\n", stderr: defaulted + "err:web\n",
			call: "exec web command=sh&command=-c&command=echo -- x&command=0&container=web&stderr=true&stdout=true"},
		{args: []string{"web", "-c", "sidecar", "--", "exit", "3"}, code: 3, stdout: "out:exit|3\n",
			stderr: "err:sidecar\ncommand terminated with exit code 3\n",
			call:   "exec web command=exit&command=3&container=sidecar&stderr=true&stdout=true"},
		{args: []string{"-q", "web", "--", "ls", "-l"}, stdout: "out:ls|-l\n", stderr: "err:web\n",
			call: "exec web command=ls&command=-l&container=web&stderr=true&stdout=true"},
		{args: []string{"-n", "default", "annotated", "--", "true"}, stdout: "out:true\n", stderr: "err:sidecar\n",
			call: "exec annotated command=true&container=sidecar&stderr=true&stdout=true"},
		{args: []string{"single", "--", "missing"}, code: 1, stderr: "error: exec: \"missing\": executable file not found in $PATH\n",
			call: "exec single command=missing&container=app&stderr=true&stdout=true"},
		{args: []string{"single", "--", "cut"}, code: 1, stdout: "partial", stderr: "error: " + execstream.ErrNoExit.Error() + "\n",
			call: "exec single command=cut&container=app&stderr=true&stdout=true"},
		{args: []string{"single", "--", "break"}, code: 1, call: "exec single command=break&container=app&stderr=true&stdout=true"},
		{args: []string{"web", "ls"}, code: 1, stderr: "error: exec [POD] [COMMAND] is not supported anymore. Use exec [POD] -- [COMMAND] instead\n"},
		{args: []string{"web"}, code: 1, stderr: "error: you must specify at least one command for the container\n"},
		{args: []string{"web", "--"}, code: 1, stderr: "error: you must specify at least one command for the container\n"},
		{args: []string{"--", "ls"}, code: 1, stderr: "error: " + execUsage + "\n"},
		{args: []string{"-it", "web", "--", "sh"}, code: 1,
			stderr: "error: -i/--stdin and -t/--tty: orch's exec is non-interactive (run a command that needs no input or terminal)\n"},
		{args: []string{"web", "-c", "nope", "--", "ls"}, code: 1,
			stderr: "error: container nope is not valid for pod web out of: web, sidecar, setup (init)\n"},
		{args: []string{"done", "--", "ls"}, code: 1,
			stderr: "error: cannot exec into a container in a completed pod; current phase is Succeeded\n"},
	} {
		r := runCLI(t, f.srv.URL, "", append([]string{"exec"}, tc.args...)...)
		calls := f.takeCalls()
		stderr := r.stderr
		if tc.args[len(tc.args)-1] == "break" && strings.HasPrefix(stderr, "error: ") && strings.Count(stderr, "\n") == 1 {
			stderr = "" // the transport's wording of a closed connection varies
		}
		if r.code != tc.code || r.stdout != tc.stdout || stderr != tc.stderr {
			t.Errorf("exec %q: exit %d, stdout %q, stderr %q; want %d, %q, %q", tc.args, r.code, r.stdout, r.stderr, tc.code, tc.stdout, tc.stderr)
		}
		want := []string(nil)
		if tc.call != "" {
			want = []string{tc.call}
		}
		if strings.Join(calls, ";") != strings.Join(want, ";") {
			t.Errorf("exec %q: calls %q, want %q", tc.args, calls, want)
		}
	}
}
