package cli

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"orch.dev/orch/agent"
	"orch.dev/orch/api"
	"orch.dev/orch/api/client"
	"orch.dev/orch/internal/inproc"
	"orch.dev/orch/internal/pki"
	"orch.dev/orch/internal/pki/pkitest"
)

// fakeWorker is a worker API that records the archives it is sent and
// answers with images, or with a Status after taking the whole upload,
// as the worker does.
type fakeWorker struct {
	srv  *httptest.Server
	fail string // the error to answer with

	mu       sync.Mutex
	received [][]byte
}

// It speaks mutual TLS with a worker certificate of a's CA, as a worker
// does, and accepts only servers.
func newFakeWorker(t *testing.T, a *agent.Agent, fail string) *fakeWorker {
	f := &fakeWorker{fail: fail}
	<-a.TLSReady()
	ca := a.ClusterCA()
	f.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, ok := pki.PeerIdentity(r.TLS)
		if r.Method != http.MethodPost || r.URL.Path != "/images/import" || !ok || id.Role != pki.RoleServer || r.Header.Get("Authorization") != "" {
			t.Errorf("worker called with %s %s, identity %+v, Authorization %q", r.Method, r.URL.Path, id, r.Header.Get("Authorization"))
		}
		b, err := io.ReadAll(r.Body)
		if err != nil {
			t.Errorf("worker reading the upload: %v", err)
		}
		f.mu.Lock()
		f.received = append(f.received, b)
		f.mu.Unlock()
		if f.fail != "" {
			writeTestStatus(w, apierrors.NewBadRequest(f.fail))
			return
		}
		json.NewEncoder(w).Encode(map[string][]string{"images": {"orch.test/web:v1", "orch.test/sidecar:v1"}})
	}))
	cert := pkitest.Node(t, ca, pki.RoleWorker, "w")
	f.srv.TLS = pki.ServerConfig(ca.Cert, cert.Certs, pki.Policy{Roles: []pki.Role{pki.RoleServer}})
	f.srv.TLS.Certificates = []tls.Certificate{cert.TLS()} // else StartTLS puts in its own
	f.srv.StartTLS()
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeWorker) uploads() [][]byte {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([][]byte(nil), f.received...)
}

func (f *fakeWorker) port() int32 {
	_, p, _ := net.SplitHostPort(strings.TrimPrefix(f.srv.URL, "https://"))
	n, _ := strconv.Atoi(p)
	return int32(n)
}

// addNode registers a node whose worker API listens on port.
func addNode(t *testing.T, cl *client.Client, name string, port int32, ready bool, labels map[string]string) {
	t.Helper()
	n := mustCreate(t, cl, api.Node, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}})
	status := corev1.ConditionFalse
	if ready {
		status = corev1.ConditionTrue
	}
	n.Status = corev1.NodeStatus{
		Addresses:       []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "127.0.0.1"}},
		DaemonEndpoints: corev1.NodeDaemonEndpoints{KubeletEndpoint: corev1.DaemonEndpoint{Port: port}},
		Conditions:      []corev1.NodeCondition{{Type: corev1.NodeReady, Status: status}},
	}
	if _, err := cl.UpdateStatus(context.Background(), n); err != nil {
		t.Fatal(err)
	}
}

// testArchive is a tar stream larger than one copy buffer.
func testArchive(t *testing.T) []byte {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	data := bytes.Repeat([]byte("layer "), 200_000)
	tw.WriteHeader(&tar.Header{Name: "blobs/sha256/abc", Mode: 0o644, Size: int64(len(data))})
	tw.Write(data)
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// image import streams the archive through the API server to every Ready
// worker at once, each receiving all of it with the cluster token;
// reports per node; a node that fails (answering an error, or
// unreachable) makes the exit code 1 without holding up the others; not
// Ready nodes are skipped with a warning, simulated ones left out; --node
// picks one node, Ready or not. A file that is not a tar archive is refused
// before anything is sent.
func TestImageImport(t *testing.T) {
	const token = "s3cret"
	c := inproc.Start(t, inproc.Options{Token: token})
	srv := registerCA(t, c.Agents[0])
	cl, err := client.New(client.Config{Servers: []string{srv}, Token: token, TLS: c.TLS()})
	if err != nil {
		t.Fatal(err)
	}
	good := newFakeWorker(t, c.Agents[0], "")
	bad := newFakeWorker(t, c.Agents[0], "import: unexpected EOF")
	notReady := newFakeWorker(t, c.Agents[0], "")
	sim := newFakeWorker(t, c.Agents[0], "")
	addNode(t, cl, "w1", good.port(), true, nil)
	addNode(t, cl, "w2", bad.port(), true, nil)
	addNode(t, cl, "w3", notReady.port(), false, nil)
	addNode(t, cl, "w4", int32(deadPort(t)), true, nil)
	addNode(t, cl, "sim", sim.port(), true, map[string]string{"orch.dev/simulated": "true"})
	dir := t.TempDir()
	archive := testArchive(t)
	file := writeFile(t, dir, "web.tar", string(archive))
	run := func(args ...string) result {
		return runCLI(t, srv, "", append([]string{"--token", token, "image", "import"}, args...)...)
	}

	r := run(file)
	wantErr := []string{
		"error: node/w2: importing " + file + ": import: unexpected EOF",
		"Warning: node/w3 skipped: not Ready",
		"error: node/w4: importing " + file + ": cannot reach the worker at 127.0.0.1:",
	}
	errLines := strings.Split(strings.TrimSpace(r.stderr), "\n")
	if r.code != 1 || r.stdout != "node/w1: imported orch.test/web:v1\nnode/w1: imported orch.test/sidecar:v1\n" || len(errLines) != len(wantErr) {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
	}
	for i, want := range wantErr {
		if !strings.HasPrefix(errLines[i], want) {
			t.Errorf("stderr line %d: %q, want %q...", i+1, errLines[i], want)
		}
	}
	for name, w := range map[string]*fakeWorker{"w1": good, "w2": bad} {
		if up := w.uploads(); len(up) != 1 || !bytes.Equal(up[0], archive) {
			t.Errorf("%s received %d uploads (first %d bytes), want the %d-byte archive once", name, len(up), len(firstOr(up)), len(archive))
		}
	}
	if len(notReady.uploads()) != 0 || len(sim.uploads()) != 0 {
		t.Errorf("a not Ready or simulated node was sent the archive")
	}

	if r := run("--node", "w3", file); r.code != 0 || r.stdout != "node/w3: imported orch.test/web:v1\nnode/w3: imported orch.test/sidecar:v1\n" || r.stderr != "" {
		t.Fatalf("--node w3: exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
	}
	if len(notReady.uploads()) != 1 || len(good.uploads()) != 1 || len(bad.uploads()) != 1 {
		t.Errorf("--node w3 sent the archive elsewhere too")
	}
	mustFail(t, srv, "", "node sim is simulated", "--token", token, "image", "import", "--node", "sim", file)
	mustFail(t, srv, "", `Error from server (NotFound): importing `+file+`: nodes "nope" not found`, "--token", token, "image", "import", file, "--node", "nope")

	notTar := writeFile(t, dir, "notes.tar", strings.Repeat("not a tar archive\n", 100))
	mustFail(t, srv, "", "notes.tar: it is not a tar archive", "--token", token, "image", "import", notTar)
	gz := writeFile(t, dir, "web.tar.gz", "\x1f\x8b\x08\x00rest")
	mustFail(t, srv, "", "web.tar.gz: it is gzip-compressed", "--token", token, "image", "import", gz)
	empty := writeFile(t, dir, "empty.tar", "")
	mustFail(t, srv, "", "empty.tar: the file is empty", "--token", token, "image", "import", empty)
	mustFail(t, srv, "", "no such file", "--token", token, "image", "import", filepath.Join(dir, "missing.tar"))
	if n := len(good.uploads()) + len(bad.uploads()) + len(notReady.uploads()); n != 3 {
		t.Errorf("%d uploads after the refused files, want still 3", n)
	}
}

// With no Ready worker the server says so, and sends nothing.
func TestImageImportWithoutWorkers(t *testing.T) {
	c := inproc.Start(t, inproc.Options{})
	srv := registerCA(t, c.Agents[0])
	w := newFakeWorker(t, c.Agents[0], "")
	addNode(t, c.Client(), "w1", w.port(), false, nil)
	file := writeFile(t, t.TempDir(), "web.tar", string(testArchive(t)))
	start := time.Now()
	mustFail(t, srv, "", "no Ready worker node to import the images into: w1 (not Ready)", "image", "import", file)
	if len(w.uploads()) != 0 {
		t.Error("a not Ready node was sent the archive")
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("the refusal took %s: retried?", d)
	}
}

func firstOr(b [][]byte) []byte {
	if len(b) == 0 {
		return nil
	}
	return b[0]
}

func deadPort(t *testing.T) int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	return port
}
