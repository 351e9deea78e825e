package imagebuild

import (
	"fmt"
	"strings"
)

// Ref is an image reference split into its parts, normalised as Docker
// does: a name without a registry is on docker.io, a one-part path there is
// under library/, and a missing tag is "latest".
type Ref struct {
	Domain string // registry host[:port]
	Path   string // repository path, e.g. library/web
	Tag    string
}

// String returns the full reference, e.g. docker.io/library/web:latest.
func (r Ref) String() string { return r.Domain + "/" + r.Path + ":" + r.Tag }

// ParseRef normalises name ("web", "web:v1", "orch.test/web:v1",
// "127.0.0.1:5000/team/web:v1"). Digest references are not accepted: an
// image being built has no digest yet.
func ParseRef(name string) (Ref, error) {
	if name == "" || strings.Contains(name, "@") || strings.ContainsAny(name, " \t\n") {
		return Ref{}, fmt.Errorf("invalid image name %q", name)
	}
	var r Ref
	rest := name
	if i := strings.IndexByte(name, '/'); i > 0 {
		first := name[:i]
		if strings.ContainsAny(first, ".:") || first == "localhost" {
			r.Domain, rest = first, name[i+1:]
		}
	}
	if r.Domain == "" {
		r.Domain = "docker.io"
	}
	if i := strings.LastIndexByte(rest, ':'); i > strings.LastIndexByte(rest, '/') {
		rest, r.Tag = rest[:i], rest[i+1:]
	}
	if r.Tag == "" {
		r.Tag = "latest"
	}
	if r.Domain == "docker.io" && !strings.Contains(rest, "/") {
		rest = "library/" + rest
	}
	if rest == "" || strings.ToLower(rest) != rest {
		return Ref{}, fmt.Errorf("invalid image name %q: repository must be lowercase and non-empty", name)
	}
	r.Path = rest
	return r, nil
}
