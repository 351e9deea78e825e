package agent

import (
	"fmt"
	"net/http"
	"strings"

	corev1 "k8s.io/api/core/v1"

	"orch.dev/orch/api"
	"orch.dev/orch/fsm"
)

// SystemNamespace holds the cluster's security state (the CA, token
// records) as Secrets. Only admins and servers may see or touch it.
const SystemNamespace = "orch-system"

// What each role may do (authorize):
//
//	admin, server  everything
//	edit           read everything; write namespaced kinds (Secrets too),
//	               their subresources, pod exec and image imports; never
//	               orch-system, cluster-scoped kinds or operator endpoints
//	view           get, list and watch everything but Secrets, and pod logs
//	worker         a node acting for itself: read Nodes, Services, Endpoints,
//	               Namespaces; pods bound to it (list and watch only with
//	               fieldSelector spec.nodeName=<itself>); the ConfigMaps and
//	               Secrets those pods use; create and update its own Node
//	               and its status; update the status of, and delete, pods
//	               bound to it (the kubelet confirms a deletion once their
//	               containers stopped); create Events; heartbeats for itself
//
// Nobody but admins and servers sees orch-system: a request naming it is
// refused, and lists and watches across namespaces leave it out.

// nonResourceRules are who may call the paths that name no API object.
// Paths absent from the table are for admins and servers only.
var nonResourceRules = map[string][]AccessRole{
	"/api":        {AccessEdit, AccessView, AccessWorker},
	"/apis":       {AccessEdit, AccessView, AccessWorker},
	"/v1/members": {AccessEdit, AccessView, AccessWorker},
	// Grants nothing itself: each request it carries is authorised alone.
	batchPath:        {AccessEdit, AccessView, AccessWorker},
	"/metrics":       {AccessEdit, AccessView},
	"/v1/heartbeats": {AccessWorker},
	// The gossip keys, which every member needs to stay in the pool.
	"/v1/gossip/keyring": {AccessWorker},
	"/v1/images/":        {AccessEdit},
}

// authorize decides whether p may make the request at. It returns "" when
// allowed, or why not. view is the local state, read for the worker rules.
func authorize(p Principal, at *requestAttrs, view *fsm.View) string {
	if p.Role.privileged() {
		return ""
	}
	if at.kind == nil {
		return authorizePath(p, at)
	}
	if at.namespace == SystemNamespace || (at.kind == api.Namespace && at.name == SystemNamespace) {
		return "only admins and servers may access the " + SystemNamespace + " namespace"
	}
	switch p.Role {
	case AccessEdit:
		if at.write() && !at.kind.Namespaced {
			return at.kind.Resource + " are cluster-scoped; only admins may change them"
		}
		return ""
	case AccessView:
		if at.kind == api.Secret {
			return "the view role cannot read Secrets"
		}
		if at.write() {
			return "the view role is read-only"
		}
		return ""
	case AccessWorker:
		return authorizeWorker(p.Name, at, view)
	}
	return "no role"
}

func authorizePath(p Principal, at *requestAttrs) string {
	path := at.path
	if strings.HasPrefix(path, "/apis/") || strings.HasPrefix(path, "/api/") {
		// Discovery (/api/v1, /apis/GROUP/VERSION) and paths that name no
		// supported resource (answered 404).
		path = "/api"
	}
	if strings.HasPrefix(path, "/v1/images/") {
		path = "/v1/images/"
	}
	for _, r := range nonResourceRules[path] {
		if r == p.Role {
			return ""
		}
	}
	return "only admins and servers may call " + at.path
}

// authorizeWorker is the node rule: a worker reads what its pods and its
// network need and writes only its own Node and its own pods' status.
func authorizeWorker(node string, at *requestAttrs, view *fsm.View) string {
	read := !at.write()
	switch at.kind {
	case api.Node:
		switch {
		case read:
			return ""
		case at.verb == "create" && at.objectName == node:
			return ""
		case (at.verb == "update" || at.verb == "patch") && at.name == node:
			return ""
		}
		return fmt.Sprintf("a worker may create and update only its own Node (%s)", node)
	case api.Service, api.Endpoints, api.Namespace:
		if read {
			return ""
		}
	case api.Event:
		if at.verb == "create" {
			return ""
		}
	case api.Pod:
		return authorizeWorkerPod(node, at, view)
	case api.ConfigMap, api.Secret:
		if at.verb == "get" && podsOnNodeUse(view, node, at.kind, at.namespace, at.name) {
			return ""
		}
		return fmt.Sprintf("a worker may read only the %s used by pods bound to it", at.kind.Resource)
	}
	return fmt.Sprintf("a worker may not %s %s", at.verb, at.resource)
}

func authorizeWorkerPod(node string, at *requestAttrs, view *fsm.View) string {
	switch at.verb {
	case "list", "watch":
		if at.subresource == "" {
			fs, err := api.ParseFieldSelector(api.Pod, at.query.Get("fieldSelector"))
			if err == nil {
				if v, ok := fs.RequiresExactMatch("spec.nodeName"); ok && v == node {
					return ""
				}
			}
		}
		return "a worker may list and watch only its own pods (fieldSelector spec.nodeName=" + node + ")"
	case "get", "update", "patch", "delete":
		allowed := at.subresource == "" && (at.verb == "get" || at.verb == "delete") ||
			at.subresource == "status" && at.verb != "delete"
		if allowed && podBoundTo(view, at.namespace, at.name, node) {
			return ""
		}
		if allowed {
			return "the pod is not bound to this worker"
		}
	}
	return fmt.Sprintf("a worker may not %s %s", at.verb, at.resource)
}

func podBoundTo(view *fsm.View, ns, name, node string) bool {
	rec := view.Get(api.Pod, ns, name)
	return rec != nil && rec.Obj.(*corev1.Pod).Spec.NodeName == node
}

// podsOnNodeUse reports whether a pod bound to node uses the ConfigMap or
// Secret ns/name (volumes, environment; orch supports no other reference).
func podsOnNodeUse(view *fsm.View, node string, k *api.Kind, ns, name string) bool {
	found := false
	view.PodsOnNode(node, func(rec *fsm.Record) bool {
		pod := rec.Obj.(*corev1.Pod)
		if pod.Namespace == ns && podUses(&pod.Spec, k, name) {
			found = true
		}
		return !found
	})
	return found
}

func podUses(spec *corev1.PodSpec, k *api.Kind, name string) bool {
	secret := k == api.Secret
	for _, v := range spec.Volumes {
		if secret && v.Secret != nil && v.Secret.SecretName == name || !secret && v.ConfigMap != nil && v.ConfigMap.Name == name {
			return true
		}
	}
	containers := append(append([]corev1.Container{}, spec.InitContainers...), spec.Containers...)
	for _, c := range containers {
		for _, e := range c.EnvFrom {
			if secret && e.SecretRef != nil && e.SecretRef.Name == name || !secret && e.ConfigMapRef != nil && e.ConfigMapRef.Name == name {
				return true
			}
		}
		for _, e := range c.Env {
			if vf := e.ValueFrom; vf != nil {
				if secret && vf.SecretKeyRef != nil && vf.SecretKeyRef.Name == name || !secret && vf.ConfigMapKeyRef != nil && vf.ConfigMapKeyRef.Name == name {
					return true
				}
			}
		}
	}
	return false
}

// hiddenNamespace is the namespace a caller's lists and watches leave out.
func hiddenNamespace(p Principal) string {
	if p.Role.privileged() {
		return ""
	}
	return SystemNamespace
}

// authorizeHeartbeat lets a worker report only itself alive.
func (a *Agent) authorizeHeartbeat(r *http.Request, nodes []string) error {
	p := PrincipalOf(r)
	if p.Role != AccessWorker {
		return nil
	}
	for _, n := range nodes {
		if n != p.Name {
			at := &requestAttrs{verb: "create", resource: "heartbeats", name: n, path: r.URL.Path}
			a.logger.Warn("request forbidden", "user", p.Name, "role", p.Role, "verb", at.verb, "resource", at.resource, "name", n, "remote", r.RemoteAddr)
			return forbidden(p, at, "a worker may send heartbeats only for itself")
		}
	}
	return nil
}
