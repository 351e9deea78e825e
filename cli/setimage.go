package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/urfave/cli/v2"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"

	"orch.dev/orch/api"
	"orch.dev/orch/api/client"
)

func setCommand(e *env) *cli.Command {
	return &cli.Command{
		Name:   "set",
		Usage:  "change specific fields of objects",
		Action: groupAction(e, []string{"set"}),
		Subcommands: []*cli.Command{{
			Name:      "image",
			Usage:     "change container images (CONTAINER=IMAGE; '*=IMAGE' for every container)",
			ArgsUsage: "TYPE NAME... CONTAINER=IMAGE... | TYPE/NAME... CONTAINER=IMAGE...",
			Flags: []cli.Flag{
				&cli.StringFlag{Name: "selector", Aliases: []string{"l"}, Usage: "change the objects matching label `SELECTOR`"},
				&cli.BoolFlag{Name: "all", Usage: "change every object of the type in the namespace"},
			},
			Action: e.setImage,
		}},
	}
}

// imageChange is one CONTAINER=IMAGE argument ("*" names every container).
type imageChange struct {
	container, image string
}

// parseImageArgs splits set image's arguments into resources and the
// trailing CONTAINER=IMAGE changes.
func parseImageArgs(args []string) ([]string, []imageChange, error) {
	i := len(args)
	for i > 0 && strings.Contains(args[i-1], "=") {
		i--
	}
	var changes []imageChange
	seen := map[string]bool{}
	for _, a := range args[i:] {
		name, image, _ := strings.Cut(a, "=")
		if name == "" || image == "" {
			return nil, nil, fmt.Errorf("invalid image update %q: expected CONTAINER=IMAGE", a)
		}
		if seen[name] {
			return nil, nil, fmt.Errorf("container %q is given more than once", name)
		}
		seen[name] = true
		changes = append(changes, imageChange{name, image})
	}
	if len(changes) == 0 {
		return nil, nil, errors.New("at least one image update is required (CONTAINER=IMAGE)")
	}
	return args[:i], changes, nil
}

// podSpecOf returns the pod spec of a pod or of a workload's template, and
// the JSON pointer to it.
func podSpecOf(obj api.Object) (*corev1.PodSpec, string, bool) {
	switch o := obj.(type) {
	case *corev1.Pod:
		return &o.Spec, "/spec", true
	case *appsv1.Deployment:
		return &o.Spec.Template.Spec, "/spec/template/spec", true
	case *appsv1.ReplicaSet:
		return &o.Spec.Template.Spec, "/spec/template/spec", true
	case *appsv1.DaemonSet:
		return &o.Spec.Template.Spec, "/spec/template/spec", true
	}
	return nil, "", false
}

// imagePatch is the JSON patch applying changes to spec (at pointer
// prefix), or nil when every image is already as asked. Each replaced image
// is guarded by a test of the container's name, so a concurrent change to
// the container list fails the patch instead of changing the wrong
// container. A named container that does not exist is an error.
func imagePatch(spec *corev1.PodSpec, prefix string, changes []imageChange) ([]byte, error) {
	lists := []struct {
		field      string
		containers []corev1.Container
	}{{"containers", spec.Containers}, {"initContainers", spec.InitContainers}}
	images := make([][]string, len(lists))
	for l, list := range lists {
		for _, c := range list.containers {
			images[l] = append(images[l], c.Image)
		}
	}
	for _, ch := range changes {
		found := false
		for l, list := range lists {
			for i, c := range list.containers {
				if ch.container == "*" || c.Name == ch.container {
					images[l][i], found = ch.image, true
				}
			}
		}
		if !found {
			return nil, fmt.Errorf("unable to find container named %q", ch.container)
		}
	}
	var ops []map[string]any
	for l, list := range lists {
		for i, c := range list.containers {
			if images[l][i] == c.Image {
				continue
			}
			at := fmt.Sprintf("%s/%s/%d", prefix, list.field, i)
			ops = append(ops,
				map[string]any{"op": "test", "path": at + "/name", "value": c.Name},
				map[string]any{"op": "replace", "path": at + "/image", "value": images[l][i]})
		}
	}
	if len(ops) == 0 {
		return nil, nil
	}
	return json.Marshal(ops)
}

func (e *env) setImage(c *cli.Context) error {
	resources, changes, err := parseImageArgs(c.Args().Slice())
	if err != nil {
		return err
	}
	targets, err := parseTargets(resources, false)
	if err != nil {
		return err
	}
	cl, err := e.client(c)
	if err != nil {
		return err
	}
	objs, err := e.resolve(c, cl, targets)
	if err != nil {
		return err
	}
	var errs []error
	for _, obj := range objs {
		k, _ := kindOf(obj)
		ref := objectRef(k, obj.GetName())
		spec, prefix, ok := podSpecOf(obj)
		if !ok {
			errs = append(errs, fmt.Errorf("%s has no containers (set image changes pods, deployments, replicasets and daemonsets)", ref))
			continue
		}
		patch, err := imagePatch(spec, prefix, changes)
		if err != nil {
			errs = append(errs, &opError{op: ref, err: err})
			continue
		}
		if patch == nil {
			continue // unchanged: kubectl prints nothing
		}
		if _, err := cl.Patch(e.ctx, k, obj.GetNamespace(), obj.GetName(), client.JSONPatch, patch, ""); err != nil {
			errs = append(errs, err)
			continue
		}
		fmt.Fprintf(e.stdout, "%s image updated\n", ref)
	}
	return reportAll(e.stderr, errs)
}
