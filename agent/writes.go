package agent

import (
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	jsonpatch "gopkg.in/evanphx/json-patch.v4"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"orch.dev/orch/api"
	"orch.dev/orch/fsm"
)

func isDryRun(q url.Values) bool { return slices.Contains(q["dryRun"], "All") }

func (a *Agent) serveCreate(w http.ResponseWriter, r *http.Request, info requestInfo, q url.Values) {
	body, err := readBody(w, r)
	if err != nil {
		writeError(w, err)
		return
	}
	if !a.onLeader(w, r, body) {
		if obj, err := decodeBody(info.Kind, r, body); err == nil {
			noteAuditName(r, obj.GetName()) // forwarded: the audit line here names the object too
		}
		return
	}
	rid, err := requestID(r)
	if err != nil {
		writeError(w, err)
		return
	}
	k := info.Kind
	obj, err := decodeBody(k, r, body)
	if err != nil {
		writeError(w, apierrors.NewBadRequest(err.Error()))
		return
	}
	if k.Namespaced {
		if ns := obj.GetNamespace(); ns != "" && ns != info.Namespace {
			writeError(w, apierrors.NewBadRequest("the namespace of the provided object does not match the namespace sent on the request"))
			return
		}
		obj.SetNamespace(info.Namespace)
	}
	if err := a.prepareCreate(k, obj, a.fsm.View()); err != nil {
		noteAuditName(r, obj.GetName())
		writeError(w, err)
		return
	}
	noteAuditName(r, obj.GetName())
	if isDryRun(q) {
		writeJSON(w, http.StatusCreated, obj)
		return
	}
	res, err := a.proposeObject(r.Context(), &fsm.Create{Kind: k.Kind, RequestID: rid}, obj)
	if err != nil {
		writeError(w, err)
		return
	}
	a.writeRecord(w, r, http.StatusCreated, k, obj.GetName(), res)
}

// writeRecord answers with the object a write produced. A retried write
// whose first attempt was applied (res.Duplicate) answers with the object
// as that first attempt left it — not its current state, which another
// client may have changed since (a compare-and-set client continuing from
// it would overwrite that change unseen) — or NotFound if it was deleted.
func (a *Agent) writeRecord(w http.ResponseWriter, r *http.Request, code int, k *api.Kind, name string, res *fsm.Result) {
	rec := res.Record
	if d := res.Duplicate; d != nil && !d.Deleted && (rec == nil || rec.Version != d.Index) {
		then, ok := a.recordAt(k, d.Namespace, d.Name, d.Index)
		if !ok {
			writeError(w, apierrors.NewInternalError(fmt.Errorf("this write was applied at resourceVersion %d, "+
				"and the object has changed since; its result is no longer kept: read the object", d.Index)))
			return
		}
		rec = then
	}
	rec, err := a.servedRecord(rec)
	if err != nil {
		writeError(w, err)
		return
	}
	if rec == nil {
		writeError(w, apierrors.NewNotFound(groupResource(k), name))
		return
	}
	writeObject(w, r, code, rec)
}

// recordAt is the object as the Raft entry at index left it, from the
// change history (false when the history no longer holds that entry).
func (a *Agent) recordAt(k *api.Kind, ns, name string, index uint64) (*fsm.Record, bool) {
	if index == 0 {
		return nil, false
	}
	evs, _, err := a.fsm.History().Since(index-1, nil)
	if err != nil {
		return nil, false
	}
	var found *fsm.Record
	for _, ev := range evs {
		if ev.Index() > index {
			break
		}
		o := ev.Record.Obj
		if ev.Record.Kind == k && ev.Type != fsm.Deleted && o.GetNamespace() == ns && o.GetName() == name {
			found = ev.Record
		}
	}
	return found, found != nil
}

// resetStatusOnCreate drops a status given on create, as Kubernetes does for
// kinds whose status only the system writes. Nodes keep theirs: an agent
// registers a node with its capacity.
func resetStatusOnCreate(k *api.Kind, obj api.Object) {
	switch k {
	case api.Node:
	case api.Namespace:
		obj.(*corev1.Namespace).Status = corev1.NamespaceStatus{Phase: corev1.NamespaceActive}
	case api.Pod:
		obj.(*corev1.Pod).Status = corev1.PodStatus{Phase: corev1.PodPending}
	default:
		if k.HasStatus {
			fsm.ClearStatus(obj)
		}
	}
}

func (a *Agent) serveUpdate(w http.ResponseWriter, r *http.Request, info requestInfo, q url.Values) {
	body, err := readBody(w, r)
	if err != nil {
		writeError(w, err)
		return
	}
	if !a.onLeader(w, r, body) {
		return
	}
	obj, err := decodeBody(info.Kind, r, body)
	if err != nil {
		writeError(w, apierrors.NewBadRequest(err.Error()))
		return
	}
	if obj.GetName() != info.Name {
		writeError(w, apierrors.NewBadRequest(fmt.Sprintf("the name of the object (%s) does not match the name on the URL (%s)", obj.GetName(), info.Name)))
		return
	}
	if info.Kind.Namespaced {
		if ns := obj.GetNamespace(); ns != "" && ns != info.Namespace {
			writeError(w, apierrors.NewBadRequest("the namespace of the provided object does not match the namespace sent on the request"))
			return
		}
		obj.SetNamespace(info.Namespace)
	}
	pinned := obj.GetResourceVersion() != ""
	a.writeUpdate(w, r, info, q, func(*fsm.Record) (api.Object, bool, error) {
		return obj.DeepCopyObject().(api.Object), pinned, nil
	})
}

func (a *Agent) servePatch(w http.ResponseWriter, r *http.Request, info requestInfo, q url.Values) {
	body, err := readBody(w, r)
	if err != nil {
		writeError(w, err)
		return
	}
	if !a.onLeader(w, r, body) {
		return
	}
	ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	var apply func([]byte) ([]byte, error)
	switch ct {
	case "application/merge-patch+json":
		apply = func(doc []byte) ([]byte, error) { return jsonpatch.MergePatch(doc, body) }
	case "application/json-patch+json":
		p, err := jsonpatch.DecodePatch(body)
		if err != nil {
			writeError(w, apierrors.NewBadRequest("invalid JSON patch: "+err.Error()))
			return
		}
		apply = p.Apply
	default:
		writeError(w, &apierrors.StatusError{ErrStatus: metav1.Status{Status: metav1.StatusFailure, Code: http.StatusUnsupportedMediaType,
			Reason:  metav1.StatusReasonUnsupportedMediaType,
			Message: fmt.Sprintf("patch type %q is not supported: send application/merge-patch+json or application/json-patch+json", ct)}})
		return
	}
	k := info.Kind
	a.writeUpdate(w, r, info, q, func(old *fsm.Record) (api.Object, bool, error) {
		patched, err := apply(old.JSON())
		if err != nil {
			return nil, false, apierrors.NewBadRequest("applying patch: " + err.Error())
		}
		obj, err := api.DecodeJSON(k, patched)
		if err != nil {
			return nil, false, apierrors.NewBadRequest(err.Error())
		}
		if obj.GetName() != old.Obj.GetName() || obj.GetNamespace() != old.Obj.GetNamespace() {
			return nil, false, apierrors.NewBadRequest("a patch may not change metadata.name or metadata.namespace")
		}
		return obj, obj.GetResourceVersion() != old.Obj.GetResourceVersion(), nil
	})
}

// writeUpdate is the read-modify-write loop shared by update and patch:
// build the written object from the stored one, validate exactly what the
// FSM will store (fsm.Merge), propose it conditioned on the version that was
// read, and start over on a conflict unless the client pinned a version.
func (a *Agent) writeUpdate(w http.ResponseWriter, r *http.Request, info requestInfo, q url.Values,
	build func(old *fsm.Record) (obj api.Object, pinned bool, err error)) {
	k, status := info.Kind, info.Subresource == "status"
	rid, err := requestID(r)
	if err != nil {
		writeError(w, err)
		return
	}
	for attempt := 0; ; attempt++ {
		old, err := a.servedRecord(a.fsm.View().Get(k, info.Namespace, info.Name))
		if err != nil {
			writeError(w, err)
			return
		}
		if old == nil {
			writeError(w, apierrors.NewNotFound(groupResource(k), info.Name))
			return
		}
		obj, pinned, err := build(old)
		if err != nil {
			writeError(w, err)
			return
		}
		if _, err := fsm.ParseRV(obj.GetResourceVersion()); err != nil {
			writeError(w, apierrors.NewBadRequest("metadata.resourceVersion: "+err.Error()))
			return
		}
		if !pinned {
			obj.SetResourceVersion(strconv.FormatUint(old.Version, 10))
		}
		api.Default(k, obj)
		next := fsm.Merge(k, old.Obj, obj.DeepCopyObject().(api.Object), status)
		if errs := api.Validate(k, next, old.Obj); len(errs) > 0 {
			writeError(w, invalid(k, info.Name, errs))
			return
		}
		if isDryRun(q) {
			writeJSON(w, http.StatusOK, next)
			return
		}
		res, err := a.proposeObject(r.Context(), &fsm.Update{Kind: k.Kind, Status: status, RequestID: rid}, obj)
		if errors.Is(err, fsm.ErrConflict) && !pinned && attempt < 16 {
			continue
		}
		if err != nil {
			writeError(w, err)
			return
		}
		a.writeRecord(w, r, http.StatusOK, k, info.Name, res)
		return
	}
}

func deleteOptions(body []byte, q url.Values) (metav1.DeleteOptions, error) {
	var opts metav1.DeleteOptions
	if len(body) > 0 {
		if err := json.Unmarshal(body, &opts); err != nil {
			return opts, apierrors.NewBadRequest("invalid DeleteOptions: " + err.Error())
		}
	}
	if p := q.Get("propagationPolicy"); p != "" {
		pp := metav1.DeletionPropagation(p)
		opts.PropagationPolicy = &pp
	}
	if g := q.Get("gracePeriodSeconds"); g != "" {
		n, err := strconv.ParseInt(g, 10, 64)
		if err != nil || n < 0 {
			return opts, apierrors.NewBadRequest("gracePeriodSeconds: must be a non-negative integer")
		}
		opts.GracePeriodSeconds = &n
	}
	if opts.OrphanDependents != nil && *opts.OrphanDependents {
		pp := metav1.DeletePropagationOrphan
		opts.PropagationPolicy = &pp
	}
	if p := opts.PropagationPolicy; p != nil {
		switch *p {
		case metav1.DeletePropagationOrphan, metav1.DeletePropagationBackground, metav1.DeletePropagationForeground:
		default:
			return opts, apierrors.NewBadRequest(fmt.Sprintf("propagationPolicy: unsupported value %q: supported values: Orphan, Background, Foreground", *p))
		}
	}
	return opts, nil
}

func deleteCommand(k *api.Kind, ns, name string, opts metav1.DeleteOptions, now time.Time) *fsm.Delete {
	cmd := &fsm.Delete{Kind: k.Kind, Namespace: ns, Name: name, DeletionTime: now.UnixNano()}
	if p := opts.Preconditions; p != nil {
		if p.UID != nil {
			cmd.UID = string(*p.UID)
		}
		if p.ResourceVersion != nil {
			cmd.ResourceVersion, _ = fsm.ParseRV(*p.ResourceVersion)
		}
	}
	cmd.Orphan = opts.PropagationPolicy != nil && *opts.PropagationPolicy == metav1.DeletePropagationOrphan
	cmd.Grace = opts.GracePeriodSeconds
	return cmd
}

func deletedStatus(k *api.Kind, res *fsm.Result) metav1.Status {
	d := &metav1.StatusDetails{Group: k.Group, Kind: k.Resource}
	if res.Record != nil {
		d.Name, d.UID = res.Record.Obj.GetName(), res.Record.Obj.GetUID()
	} else if res.Duplicate != nil {
		d.Name, d.UID = res.Duplicate.Name, types.UID(res.Duplicate.UID)
	}
	return metav1.Status{TypeMeta: metav1.TypeMeta{Kind: "Status", APIVersion: "v1"}, Status: metav1.StatusSuccess, Details: d}
}

// requestID reads a client's idempotency key: a retried write with the same
// key gets the first attempt's outcome (see fsm.RequestWindow).
func requestID(r *http.Request) (string, error) {
	id := r.Header.Get(requestIDHeader)
	if len(id) > 64 || strings.ContainsFunc(id, func(c rune) bool {
		return !(c == '-' || c == '_' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z')
	}) {
		return "", apierrors.NewBadRequest(requestIDHeader + ": at most 64 letters, digits, '-' or '_'")
	}
	return id, nil
}

func (a *Agent) serveDelete(w http.ResponseWriter, r *http.Request, info requestInfo, q url.Values) {
	body, err := readBody(w, r)
	if err != nil {
		writeError(w, err)
		return
	}
	if !a.onLeader(w, r, body) {
		return
	}
	opts, err := deleteOptions(body, q)
	if err != nil {
		writeError(w, err)
		return
	}
	if p := opts.Preconditions; p != nil && p.ResourceVersion != nil {
		if _, err := fsm.ParseRV(*p.ResourceVersion); err != nil {
			writeError(w, apierrors.NewBadRequest("preconditions.resourceVersion: "+err.Error()))
			return
		}
	}
	rid, err := requestID(r)
	if err != nil {
		writeError(w, err)
		return
	}
	k := info.Kind
	if isDryRun(q) {
		rec := a.fsm.View().Get(k, info.Namespace, info.Name)
		if rec == nil {
			writeError(w, apierrors.NewNotFound(groupResource(k), info.Name))
			return
		}
		writeJSON(w, http.StatusOK, deletedStatus(k, &fsm.Result{Record: rec}))
		return
	}
	cmd := deleteCommand(k, info.Namespace, info.Name, opts, time.Now())
	cmd.RequestID = rid
	res, err := a.propose(r.Context(), cmd)
	if err != nil {
		writeError(w, err)
		return
	}
	if res.Deleted {
		writeJSON(w, http.StatusOK, deletedStatus(k, res))
		return
	}
	a.writeRecord(w, r, http.StatusOK, k, info.Name, res)
}

// serveDeleteCollection deletes every matching object, in batches of
// commands so that a large collection does not become one huge log entry.
func (a *Agent) serveDeleteCollection(w http.ResponseWriter, r *http.Request, info requestInfo, q url.Values) {
	body, err := readBody(w, r)
	if err != nil {
		writeError(w, err)
		return
	}
	if !a.onLeader(w, r, body) {
		return
	}
	opts, err := deleteOptions(body, q)
	if err != nil {
		writeError(w, err)
		return
	}
	ls, fs, err := selectors(info.Kind, q)
	if err != nil {
		writeError(w, err)
		return
	}
	m := &matcher{kind: info.Kind, namespace: info.Namespace, labels: ls, fields: fs, hidden: hiddenNamespace(PrincipalOf(r))}
	var batch fsm.Batch
	now := time.Now()
	m.each(a.fsm.View(), "", func(rec *fsm.Record) bool {
		batch.Commands = append(batch.Commands, deleteCommand(info.Kind, rec.Obj.GetNamespace(), rec.Obj.GetName(), opts, now))
		return true
	})
	if !isDryRun(q) {
		for len(batch.Commands) > 0 {
			n := min(len(batch.Commands), 256)
			chunk := &fsm.Batch{Commands: batch.Commands[:n]}
			batch.Commands = batch.Commands[n:]
			if _, err := a.propose(r.Context(), chunk); err != nil {
				writeError(w, err)
				return
			}
		}
	}
	writeJSON(w, http.StatusOK, metav1.Status{TypeMeta: metav1.TypeMeta{Kind: "Status", APIVersion: "v1"}, Status: metav1.StatusSuccess})
}
