package agent

import (
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"orch.dev/orch/fsm"
)

// serveEviction is Kubernetes' Eviction API (what `orchctl drain` calls):
// the pod is deleted gracefully unless that would break its Deployment's
// availability budget, in which case the answer is 429 and nothing changes.
func (a *Agent) serveEviction(w http.ResponseWriter, r *http.Request, info requestInfo) {
	body, err := readBody(w, r)
	if err != nil {
		writeError(w, err)
		return
	}
	if !a.onLeader(w, r, body) {
		return
	}
	rid, err := requestID(r)
	if err != nil {
		writeError(w, err)
		return
	}
	var ev policyv1.Eviction
	if len(body) > 0 {
		if err := json.Unmarshal(body, &ev); err != nil {
			writeError(w, apierrors.NewBadRequest("invalid Eviction: "+err.Error()))
			return
		}
	}
	if ev.Name != "" && ev.Name != info.Name {
		writeError(w, apierrors.NewBadRequest(fmt.Sprintf("metadata.name: the eviction names pod %q, the URL %q", ev.Name, info.Name)))
		return
	}
	cmd := &fsm.Evict{Namespace: info.Namespace, Name: info.Name, DeletionTime: time.Now().UnixNano(), RequestID: rid}
	if o := ev.DeleteOptions; o != nil {
		cmd.Grace = o.GracePeriodSeconds
		if o.Preconditions != nil && o.Preconditions.UID != nil {
			cmd.UID = string(*o.Preconditions.UID)
		}
	}
	if _, err := a.propose(r.Context(), cmd); err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusCreated, metav1.Status{TypeMeta: metav1.TypeMeta{Kind: "Status", APIVersion: "v1"}, Status: metav1.StatusSuccess})
}

// serveBinding is Kubernetes' Binding API: it places a pending pod on a
// node, re-checked against the node's capacity and constraints like the
// scheduler's own bindings (409 when it does not fit).
func (a *Agent) serveBinding(w http.ResponseWriter, r *http.Request, info requestInfo) {
	body, err := readBody(w, r)
	if err != nil {
		writeError(w, err)
		return
	}
	if !a.onLeader(w, r, body) {
		return
	}
	rid, err := requestID(r)
	if err != nil {
		writeError(w, err)
		return
	}
	var b corev1.Binding
	if err := json.Unmarshal(body, &b); err != nil {
		writeError(w, apierrors.NewBadRequest("invalid Binding: "+err.Error()))
		return
	}
	if b.Target.Name == "" || (b.Target.Kind != "" && b.Target.Kind != "Node") {
		writeError(w, apierrors.NewBadRequest("target: must name a Node"))
		return
	}
	cmd := &fsm.Bind{Time: time.Now().UnixNano(), RequestID: rid,
		Bindings: []fsm.Binding{{Namespace: info.Namespace, Name: info.Name, UID: string(b.UID), Node: b.Target.Name}}}
	res, err := a.propose(r.Context(), cmd)
	if err == nil && len(res.Batch) == 1 {
		err = res.Batch[0].Err
	}
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusCreated, metav1.Status{TypeMeta: metav1.TypeMeta{Kind: "Status", APIVersion: "v1"}, Status: metav1.StatusSuccess})
}
