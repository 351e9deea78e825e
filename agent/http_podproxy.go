package agent

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"

	"orch.dev/orch/api"
)

// Pod logs and exec are served by the worker that runs the pod, as
// kube-apiserver passes them to kubelet: any server looks the pod and its
// node up in its local state (a stale read is enough to find a node) and
// streams the worker API's answer back, over mutual TLS with this server's
// certificate (the worker API accepts only servers). The worker API address is the node's InternalIP and its
// status.daemonEndpoints.kubeletEndpoint.port.
//
//	GET  /api/v1/namespaces/{ns}/pods/{name}/log   -> GET  https://NODE:7403/pods/{ns}/{name}/log
//	POST /api/v1/namespaces/{ns}/pods/{name}/exec  -> POST https://NODE:7403/pods/{ns}/{name}/exec
//
// The query (container, follow, previous, tailLines, limitBytes; command)
// passes through unchanged.

// registerPodProxy adds the log and exec routes to mux (more specific than
// the generic resource routes, so they win).
func (a *Agent) registerPodProxy(mux *http.ServeMux) {
	mux.HandleFunc("GET /api/v1/namespaces/{ns}/pods/{name}/log", a.servePodProxy("log"))
	mux.HandleFunc("POST /api/v1/namespaces/{ns}/pods/{name}/exec", a.servePodProxy("exec"))
}

func (a *Agent) servePodProxy(sub string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		ns, name := r.PathValue("ns"), r.PathValue("name")
		target, err := a.workerURL(ns, name)
		if err != nil {
			writeError(w, err)
			return
		}
		target.Path += "/" + sub
		target.RawQuery = r.URL.RawQuery
		req, err := http.NewRequestWithContext(r.Context(), r.Method, target.String(), nil)
		if err != nil {
			writeError(w, err)
			return
		}
		resp, err := a.workerClient.Do(req)
		if err != nil {
			if r.Context().Err() == nil {
				writeError(w, apierrors.NewServiceUnavailable(fmt.Sprintf("cannot reach the worker of pod %s/%s at %s: %v", ns, name, target.Host, err)))
			}
			return
		}
		defer resp.Body.Close()
		for _, h := range []string{"Content-Type", "Content-Length"} {
			if v := resp.Header.Get(h); v != "" {
				w.Header().Set(h, v)
			}
		}
		w.WriteHeader(resp.StatusCode)
		flusher, _ := w.(http.Flusher)
		buf := make([]byte, 32<<10)
		for {
			n, err := resp.Body.Read(buf)
			if n > 0 {
				if _, werr := w.Write(buf[:n]); werr != nil {
					return
				}
				if flusher != nil {
					flusher.Flush()
				}
			}
			if err != nil {
				if !errors.Is(err, io.EOF) && r.Context().Err() == nil {
					a.logger.Debug("pod proxy stream ended", "pod", ns+"/"+name, "err", err)
				}
				return
			}
		}
	}
}

// workerURL is the worker API base URL for a pod: http://NODE:PORT/pods/NS/NAME.
func (a *Agent) workerURL(ns, name string) (*url.URL, error) {
	view := a.fsm.View()
	rec := view.Get(api.Pod, ns, name)
	if rec == nil {
		return nil, apierrors.NewNotFound(groupResource(api.Pod), name)
	}
	pod := rec.Obj.(*corev1.Pod)
	if pod.Spec.NodeName == "" {
		return nil, apierrors.NewBadRequest(fmt.Sprintf("pod %s does not have a host assigned", name))
	}
	nrec := view.Get(api.Node, "", pod.Spec.NodeName)
	if nrec == nil {
		return nil, apierrors.NewServiceUnavailable(fmt.Sprintf("node %s of pod %s does not exist", pod.Spec.NodeName, name))
	}
	node := nrec.Obj.(*corev1.Node)
	if node.Labels["orch.dev/simulated"] == "true" {
		return nil, apierrors.NewBadRequest(fmt.Sprintf("pod %s runs on the simulated node %s: nothing runs, there are no logs and no exec", name, node.Name))
	}
	var host string
	for _, addr := range node.Status.Addresses {
		if addr.Type == corev1.NodeInternalIP {
			host = addr.Address
			break
		}
	}
	if host == "" {
		return nil, apierrors.NewServiceUnavailable(fmt.Sprintf("node %s reports no InternalIP address", node.Name))
	}
	port := int(node.Status.DaemonEndpoints.KubeletEndpoint.Port)
	if port == 0 {
		port = DefaultWorkerPort
	}
	return &url.URL{Scheme: a.workerScheme(), Host: net.JoinHostPort(host, strconv.Itoa(port)),
		Path: "/pods/" + url.PathEscape(ns) + "/" + url.PathEscape(name)}, nil
}
