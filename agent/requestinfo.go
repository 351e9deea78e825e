package agent

import (
	"strings"

	"orch.dev/orch/api"
)

// requestInfo is what a Kubernetes REST path names.
type requestInfo struct {
	Kind        *api.Kind
	Namespace   string // "" for cluster-scoped kinds and all-namespace lists
	Name        string // "" for collections
	Subresource string // "status" or ""
}

// parseResourcePath parses /api/v1/... and /apis/GROUP/VERSION/... paths.
// It returns ok=false for paths that name no supported resource.
func parseResourcePath(path string) (requestInfo, bool) {
	parts := strings.Split(strings.Trim(path, "/"), "/")
	var group, version string
	switch {
	case len(parts) >= 3 && parts[0] == "api":
		version, parts = parts[1], parts[2:]
	case len(parts) >= 4 && parts[0] == "apis":
		group, version, parts = parts[1], parts[2], parts[3:]
	default:
		return requestInfo{}, false
	}
	var info requestInfo
	// namespaces/NS/RESOURCE/... addresses namespaced objects, except
	// namespaces/NAME/status, the status of a Namespace itself.
	if len(parts) >= 3 && parts[0] == "namespaces" && !(len(parts) == 3 && parts[2] == "status") {
		info.Namespace, parts = parts[1], parts[2:]
		if info.Namespace == "" {
			return requestInfo{}, false
		}
	}
	k, ok := api.KindForPath(group, version, parts[0])
	if !ok || (info.Namespace != "" && !k.Namespaced) {
		return requestInfo{}, false
	}
	info.Kind = k
	switch len(parts) {
	case 1:
	case 2:
		info.Name = parts[1]
	case 3:
		info.Name, info.Subresource = parts[1], parts[2]
		switch {
		case info.Subresource == "status" && k.HasStatus:
		case (info.Subresource == "eviction" || info.Subresource == "binding") && k == api.Pod:
		default:
			return requestInfo{}, false
		}
	default:
		return requestInfo{}, false
	}
	if info.Name == "" && len(parts) > 1 {
		return requestInfo{}, false
	}
	return info, true
}
