package agent

import (
	"net/http"
	"net/url"
	"strings"

	"orch.dev/orch/api"
)

// requestAttrs is what authorisation and the audit log know of a request:
// Kubernetes' verb and resource for API objects, the path for the rest.
type requestAttrs struct {
	verb        string    // get, list, watch, create, update, patch, delete, deletecollection
	kind        *api.Kind // nil for paths that name no API object
	namespace   string
	name        string
	subresource string // status, eviction, binding, log, exec
	resource    string // "pods", "pods/status", or a path's resource ("tokens", "operator/raft/peers")
	path        string
	query       url.Values
	// objectName is the name in the body of a worker's Node create (the
	// path names none); filled in by the authentication middleware.
	objectName string
}

// write reports whether the request changes something.
func (at *requestAttrs) write() bool {
	switch at.verb {
	case "get", "list", "watch":
		return false
	}
	return true
}

// audited reports whether the request goes into the audit log: every
// write and operator action, and snapshot downloads (the whole state).
// Heartbeats are liveness, not state.
func (at *requestAttrs) audited() bool {
	if at.path == "/v1/heartbeats" || at.path == batchPath {
		return false // a batch's requests are audited one by one
	}
	return at.write() || at.path == "/v1/operator/snapshot"
}

// Paths whose trailing segment names the object acted on.
var namedPathPrefixes = []string{"/v1/tokens/", "/v1/operator/raft/peers/", "/v1/operator/gossip/keyring/"}

func attributesOf(r *http.Request) *requestAttrs {
	at := &requestAttrs{path: r.URL.Path, query: r.URL.Query()}
	if info, ok := parseResourcePath(r.URL.Path); ok {
		at.kind, at.namespace, at.name, at.subresource = info.Kind, info.Namespace, info.Name, info.Subresource
	} else if ns, name, sub, ok := podProxyPath(r.URL.Path); ok {
		at.kind, at.namespace, at.name, at.subresource = api.Pod, ns, name, sub
	}
	if at.kind == nil {
		at.verb = pathVerb(r.Method)
		at.resource = strings.TrimPrefix(at.path, "/v1/")
		for _, p := range namedPathPrefixes {
			if rest, ok := strings.CutPrefix(at.path, p); ok && rest != "" {
				at.resource, at.name = strings.TrimSuffix(strings.TrimPrefix(p, "/v1/"), "/"), rest
			}
		}
		return at
	}
	at.resource = at.kind.Resource
	if at.subresource != "" {
		at.resource += "/" + at.subresource
	}
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		switch w := at.query.Get("watch"); {
		case at.name != "":
			at.verb = "get"
		case w == "true" || w == "1":
			at.verb = "watch"
		default:
			at.verb = "list"
		}
	case http.MethodPost:
		at.verb = "create"
	case http.MethodPut:
		at.verb = "update"
	case http.MethodPatch:
		at.verb = "patch"
	case http.MethodDelete:
		at.verb = "delete"
		if at.name == "" {
			at.verb = "deletecollection"
		}
	default:
		at.verb = strings.ToLower(r.Method)
	}
	return at
}

func pathVerb(method string) string {
	switch method {
	case http.MethodGet, http.MethodHead:
		return "get"
	case http.MethodPost:
		return "create"
	case http.MethodPut:
		return "update"
	case http.MethodPatch:
		return "patch"
	case http.MethodDelete:
		return "delete"
	}
	return strings.ToLower(method)
}

// podProxyPath parses /api/v1/namespaces/NS/pods/NAME/{log,exec}, the
// paths served by passing them to the pod's worker (http_podproxy.go).
func podProxyPath(path string) (ns, name, sub string, ok bool) {
	parts := strings.Split(strings.Trim(path, "/"), "/")
	if len(parts) != 7 || parts[0] != "api" || parts[1] != "v1" || parts[2] != "namespaces" || parts[4] != "pods" {
		return "", "", "", false
	}
	if parts[6] != "log" && parts[6] != "exec" || parts[3] == "" || parts[5] == "" {
		return "", "", "", false
	}
	return parts[3], parts[5], parts[6], true
}
