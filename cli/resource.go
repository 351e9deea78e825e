package cli

import (
	"errors"
	"fmt"
	"strings"

	"orch.dev/orch/api"
)

// target is one resource type with the names asked for (none = all).
type target struct {
	kind  *api.Kind
	names []string
}

// allKinds is what `get all` shows, as in kubectl.
var allKinds = []*api.Kind{api.Pod, api.Service, api.DaemonSet, api.Deployment, api.ReplicaSet}

// parseTargets reads kubectl's resource arguments: `TYPE [NAME...]`,
// `TYPE1,TYPE2 [NAME...]` or `TYPE/NAME [TYPE/NAME...]`.
func parseTargets(args []string, allowAll bool) ([]target, error) {
	if len(args) == 0 {
		return nil, errors.New(`you must specify the type of resource (run "orchctl api-resources" for the list)`)
	}
	if strings.Contains(args[0], "/") {
		var out []target
		for _, a := range args {
			typ, name, ok := strings.Cut(a, "/")
			if !ok {
				return nil, fmt.Errorf("there is no need to specify a resource type as a separate argument when passing arguments in resource/name form (e.g. 'orchctl get resource/<resource_name>' instead of 'orchctl get resource resource/<resource_name>')")
			}
			if name == "" {
				return nil, fmt.Errorf("%q: the name after / is empty", a)
			}
			k, err := api.KindForResource(typ)
			if err != nil {
				return nil, err
			}
			if n := len(out); n > 0 && out[n-1].kind == k {
				out[n-1].names = append(out[n-1].names, name)
			} else {
				out = append(out, target{kind: k, names: []string{name}})
			}
		}
		return out, nil
	}
	var out []target
	for _, typ := range strings.Split(args[0], ",") {
		if typ == "" {
			continue
		}
		if typ == "all" && allowAll {
			for _, k := range allKinds {
				out = append(out, target{kind: k})
			}
			continue
		}
		k, err := api.KindForResource(typ)
		if err != nil {
			return nil, err
		}
		out = append(out, target{kind: k})
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%q: no resource type given", args[0])
	}
	for _, name := range args[1:] {
		if strings.Contains(name, "/") {
			return nil, fmt.Errorf("%q: there is no need to specify a resource type as a separate argument when passing arguments in resource/name form", name)
		}
		for i := range out {
			out[i].names = append(out[i].names, name)
		}
	}
	return out, nil
}

// kindRef is how kubectl names a kind in its messages: the lowercase kind,
// qualified by the API group outside the core group ("configmap",
// "deployment.apps").
func kindRef(k *api.Kind) string {
	s := strings.ToLower(k.Kind)
	if k.Group != "" {
		s += "." + k.Group
	}
	return s
}

// objectRef is "configmap/app-config" or "deployment.apps/web".
func objectRef(k *api.Kind, name string) string { return kindRef(k) + "/" + name }

// groupResource is "configmaps" or "deployments.apps", as in server errors.
func groupResource(k *api.Kind) string {
	if k.Group != "" {
		return k.Resource + "." + k.Group
	}
	return k.Resource
}

// objectNamespace is where an object lives: its own namespace, else -n;
// cluster-scoped kinds have none.
func objectNamespace(k *api.Kind, own, flag string) string {
	if !k.Namespaced {
		return ""
	}
	if own != "" {
		return own
	}
	return flag
}

// kindOf returns the kind of a decoded object.
func kindOf(obj api.Object) (*api.Kind, error) {
	gvk := obj.GetObjectKind().GroupVersionKind()
	k, ok := api.KindByName(gvk.Kind)
	if !ok {
		return nil, fmt.Errorf("object %q has an unsupported kind %q", obj.GetName(), gvk.Kind)
	}
	return k, nil
}
