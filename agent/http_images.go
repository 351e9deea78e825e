package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"orch.dev/orch/api"
	"orch.dev/orch/fsm"
)

// Image delivery without a registry: `orchctl image import FILE.tar`
// uploads an OCI or docker archive to any server, which streams it to the
// worker API of every Ready worker (or of the node named by ?node=) at
// once, as it arrives, without keeping it. The answer reports per node:
//
//	POST /v1/images/import[?node=NAME]   (body: the archive)
//	-> POST https://NODE:7403/images/import on each worker
//	<- {"nodes": [{"node": "w1", "images": ["orch.test/web:v1"]},
//	              {"node": "w2", "error": "..."}, {"node": "w3", "skipped": "not Ready"}]}
//
// Simulated nodes run nothing and are left out. The wire format is
// api/client's ImageImport.

type imageImport struct {
	Node    string   `json:"node"`
	Images  []string `json:"images,omitempty"`
	Error   string   `json:"error,omitempty"`
	Skipped string   `json:"skipped,omitempty"`
}

// imageTarget is one worker the archive goes to.
type imageTarget struct {
	node string
	url  string // worker API base URL
}

// registerImages adds the image import route to mux.
func (a *Agent) registerImages(mux *http.ServeMux) {
	mux.HandleFunc("POST /v1/images/import", a.serveImageImport)
}

func (a *Agent) serveImageImport(w http.ResponseWriter, r *http.Request) {
	targets, report, err := a.imageTargets(r.URL.Query().Get("node"))
	if err != nil {
		// Read the upload first, so that the client sees the answer
		// rather than a connection closed under its upload.
		io.Copy(io.Discard, r.Body)
		writeError(w, err)
		return
	}
	report = append(report, a.fanOutImport(r.Context(), r.Body, targets)...)
	if r.Context().Err() != nil {
		return
	}
	sort.Slice(report, func(i, j int) bool { return report[i].Node < report[j].Node })
	writeJSON(w, http.StatusOK, map[string]any{"nodes": report})
}

// imageTargets lists the workers to send the archive to, and reports the
// Ready-less ones it leaves out. A named node is tried whatever its
// condition: the user asked for it.
func (a *Agent) imageTargets(name string) ([]imageTarget, []imageImport, error) {
	view := a.fsm.View()
	if name != "" {
		rec := view.Get(api.Node, "", name)
		if rec == nil {
			return nil, nil, apierrors.NewNotFound(groupResource(api.Node), name)
		}
		node := rec.Obj.(*corev1.Node)
		if node.Labels["orch.dev/simulated"] == "true" {
			return nil, nil, apierrors.NewBadRequest(fmt.Sprintf("node %s is simulated: it runs nothing and takes no images", name))
		}
		base, err := a.workerBaseURL(node)
		if err != nil {
			return nil, nil, err
		}
		return []imageTarget{{node: name, url: base}}, nil, nil
	}
	var targets []imageTarget
	var skipped []imageImport
	view.List(api.Node, "", func(rec *fsm.Record) bool {
		node := rec.Obj.(*corev1.Node)
		if node.Labels["orch.dev/simulated"] == "true" {
			return true
		}
		if !nodeReady(node) {
			skipped = append(skipped, imageImport{Node: node.Name, Skipped: "not Ready"})
			return true
		}
		base, err := a.workerBaseURL(node)
		if err != nil {
			skipped = append(skipped, imageImport{Node: node.Name, Skipped: err.Error()})
			return true
		}
		targets = append(targets, imageTarget{node: node.Name, url: base})
		return true
	})
	if len(targets) == 0 {
		msg := "no Ready worker node to import the images into"
		if len(skipped) > 0 {
			var names []string
			for _, s := range skipped {
				names = append(names, s.Node+" ("+s.Skipped+")")
			}
			msg += ": " + strings.Join(names, ", ")
		}
		return nil, nil, apierrors.NewBadRequest(msg)
	}
	return targets, skipped, nil
}

func nodeReady(n *corev1.Node) bool {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// workerBaseURL is a node's worker API: its InternalIP and its
// status.daemonEndpoints.kubeletEndpoint.port (as http_podproxy.go finds it).
func (a *Agent) workerBaseURL(node *corev1.Node) (string, error) {
	var host string
	for _, addr := range node.Status.Addresses {
		if addr.Type == corev1.NodeInternalIP {
			host = addr.Address
			break
		}
	}
	if host == "" {
		return "", apierrors.NewServiceUnavailable(fmt.Sprintf("node %s reports no InternalIP address", node.Name))
	}
	port := int(node.Status.DaemonEndpoints.KubeletEndpoint.Port)
	if port == 0 {
		port = DefaultWorkerPort
	}
	return a.workerScheme() + "://" + net.JoinHostPort(host, strconv.Itoa(port)), nil
}

// errWorkerAnswered ends the copy to a worker that has already answered.
var errWorkerAnswered = errors.New("the worker has answered")

// fanOutImport streams body to every target at once through one pipe
// each; a worker that fails or answers early stops receiving, the others
// go on. The copy runs at the pace of the slowest worker.
func (a *Agent) fanOutImport(ctx context.Context, body io.Reader, targets []imageTarget) []imageImport {
	report := make([]imageImport, len(targets))
	pipes := make([]*io.PipeWriter, len(targets))
	var wg sync.WaitGroup
	for i, t := range targets {
		pr, pw := io.Pipe()
		pipes[i] = pw
		wg.Add(1)
		go func() {
			defer wg.Done()
			report[i] = a.importOnWorker(ctx, t, pr)
			pr.CloseWithError(errWorkerAnswered)
		}()
	}
	readErr := copyToAll(body, pipes)
	if readErr != nil {
		readErr = fmt.Errorf("the upload broke: %w", readErr)
	}
	for _, pw := range pipes {
		pw.CloseWithError(readErr) // nil: the worker reads EOF
	}
	wg.Wait()
	return report
}

// copyToAll copies r to every writer until r ends; a writer that fails is
// dropped. It returns r's error, if any.
func copyToAll(r io.Reader, ws []*io.PipeWriter) error {
	live := append([]*io.PipeWriter(nil), ws...)
	buf := make([]byte, 256<<10)
	for {
		n, err := r.Read(buf)
		if n > 0 {
			kept := live[:0]
			for _, w := range live {
				if _, werr := w.Write(buf[:n]); werr == nil {
					kept = append(kept, w)
				}
			}
			live = kept
		}
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// importOnWorker sends one worker the archive read from body.
func (a *Agent) importOnWorker(ctx context.Context, t imageTarget, body io.Reader) imageImport {
	res := imageImport{Node: t.node}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, t.url+"/images/import", body)
	if err != nil {
		res.Error = err.Error()
		return res
	}
	req.Header.Set("Content-Type", "application/x-tar")
	resp, err := a.workerClient.Do(req)
	if err != nil {
		res.Error = fmt.Sprintf("cannot reach the worker at %s: %v", req.URL.Host, err)
		return res
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		res.Error = fmt.Sprintf("reading the worker's answer: %v", err)
		return res
	}
	if resp.StatusCode != http.StatusOK {
		var st metav1.Status
		if json.Unmarshal(b, &st) == nil && st.Message != "" {
			res.Error = st.Message
		} else {
			res.Error = fmt.Sprintf("the worker answered %s: %s", resp.Status, strings.TrimSpace(string(b)))
		}
		return res
	}
	var ans struct {
		Images []string `json:"images"`
	}
	if err := json.Unmarshal(b, &ans); err != nil {
		res.Error = fmt.Sprintf("decoding the worker's answer: %v", err)
		return res
	}
	res.Images = ans.Images
	a.logger.Info("images imported on a worker", "node", t.node, "images", ans.Images)
	return res
}
