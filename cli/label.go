package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/urfave/cli/v2"
	"k8s.io/apimachinery/pkg/util/validation"

	"orch.dev/orch/api"
	"orch.dev/orch/api/client"
)

func labelCommand(e *env) *cli.Command {
	return &cli.Command{
		Name:      "label",
		Usage:     "add, change or remove labels (KEY=VALUE sets, KEY- removes)",
		ArgsUsage: "TYPE NAME... KEY=VALUE... KEY-... | TYPE/NAME... KEY=VALUE... KEY-...",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "overwrite", Usage: "allow changing the value of an existing label"},
			&cli.StringFlag{Name: "selector", Aliases: []string{"l"}, Usage: "label the objects matching label `SELECTOR`"},
			&cli.BoolFlag{Name: "all", Usage: "label every object of the type in the namespace"},
		},
		Action: e.runLabel,
	}
}

// labelChanges are the KEY=VALUE and KEY- arguments.
type labelChanges struct {
	set    map[string]string
	remove []string
}

// parseLabelArgs splits label arguments into resources and changes: the
// changes are the trailing arguments with "=" or a final "-".
func parseLabelArgs(args []string) ([]string, labelChanges, error) {
	ch := labelChanges{set: map[string]string{}}
	i := len(args)
	for i > 0 && (strings.Contains(args[i-1], "=") || strings.HasSuffix(args[i-1], "-")) {
		i--
	}
	resources, specs := args[:i], args[i:]
	if len(specs) == 0 {
		return nil, ch, errors.New("at least one label update is required (KEY=VALUE or KEY-)")
	}
	seen := map[string]bool{}
	for _, s := range specs {
		var key string
		if k, v, ok := strings.Cut(s, "="); ok {
			if errs := validation.IsValidLabelValue(v); len(errs) > 0 {
				return nil, ch, fmt.Errorf("invalid label spec %q: %s", s, strings.Join(errs, "; "))
			}
			key = k
			ch.set[k] = v
		} else {
			key = strings.TrimSuffix(s, "-")
			ch.remove = append(ch.remove, key)
		}
		if errs := validation.IsQualifiedName(key); len(errs) > 0 {
			return nil, ch, fmt.Errorf("invalid label spec %q: %s", s, strings.Join(errs, "; "))
		}
		if seen[key] {
			return nil, ch, fmt.Errorf("label %q is changed more than once", key)
		}
		seen[key] = true
	}
	return resources, ch, nil
}

// labelPatch is the merge patch applying ch to the current labels, or nil
// when nothing changes.
func labelPatch(current map[string]string, ch labelChanges, overwrite bool, resourceVersion string) ([]byte, error) {
	labels := map[string]any{}
	for k, v := range ch.set {
		if old, ok := current[k]; ok {
			if old == v {
				continue
			}
			if !overwrite {
				return nil, fmt.Errorf("'%s' already has a value (%s), and --overwrite is false", k, old)
			}
		}
		labels[k] = v
	}
	for _, k := range ch.remove {
		if _, ok := current[k]; ok {
			labels[k] = nil
		}
	}
	if len(labels) == 0 {
		return nil, nil
	}
	meta := map[string]any{"labels": labels}
	if resourceVersion != "" {
		// Conditional: the --overwrite check holds for the version read.
		meta["resourceVersion"] = resourceVersion
	}
	return json.Marshal(map[string]any{"metadata": meta})
}

func (e *env) runLabel(c *cli.Context) error {
	resources, ch, err := parseLabelArgs(c.Args().Slice())
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
		patch, err := labelPatch(obj.GetLabels(), ch, c.Bool("overwrite"), obj.GetResourceVersion())
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if patch == nil {
			fmt.Fprintf(e.stdout, "%s not labeled\n", objectRef(k, obj.GetName()))
			continue
		}
		if _, err := cl.Patch(e.ctx, k, obj.GetNamespace(), obj.GetName(), client.MergePatch, patch, ""); err != nil {
			errs = append(errs, err)
			continue
		}
		fmt.Fprintf(e.stdout, "%s labeled\n", objectRef(k, obj.GetName()))
	}
	return reportAll(e.stderr, errs)
}

// resolve reads the objects targets name, or those -l/--all select.
func (e *env) resolve(c *cli.Context, cl *client.Client, targets []target) ([]api.Object, error) {
	ns := namespaceFlag(c)
	var out []api.Object
	for _, t := range targets {
		tns := objectNamespace(t.kind, ns, "")
		if len(t.names) == 0 {
			if c.String("selector") == "" && !c.Bool("all") {
				return nil, errors.New("resource(s) were provided, but no name, label selector (-l) or --all flag was given")
			}
			list, err := cl.ListAll(e.ctx, t.kind, tns, client.ListOptions{LabelSelector: c.String("selector")})
			if err != nil {
				return nil, err
			}
			out = append(out, list.Items...)
			continue
		}
		for _, name := range t.names {
			obj, err := cl.Get(e.ctx, t.kind, tns, name, false)
			if err != nil {
				return nil, err
			}
			out = append(out, obj)
		}
	}
	return out, nil
}

func scaleCommand(e *env) *cli.Command {
	return &cli.Command{
		Name:      "scale",
		Usage:     "set the number of replicas of a deployment or replica set",
		ArgsUsage: "TYPE NAME | TYPE/NAME --replicas N",
		Flags: []cli.Flag{
			&cli.IntFlag{Name: "replicas", Value: -1, Usage: "the new number of replicas (required)"},
		},
		Action: func(c *cli.Context) error {
			n := c.Int("replicas")
			if n < 0 {
				return errors.New("--replicas: required, a number >= 0")
			}
			targets, err := parseTargets(c.Args().Slice(), false)
			if err != nil {
				return err
			}
			cl, err := e.client(c)
			if err != nil {
				return err
			}
			patch, _ := json.Marshal(map[string]any{"spec": map[string]any{"replicas": n}})
			var errs []error
			for _, t := range targets {
				if t.kind != api.Deployment && t.kind != api.ReplicaSet {
					return fmt.Errorf("cannot scale %s: only deployments and replicasets have replicas", t.kind.Resource)
				}
				if len(t.names) == 0 {
					return errors.New("NAME is required (orchctl scale TYPE NAME --replicas N)")
				}
				for _, name := range t.names {
					if _, err := cl.Patch(e.ctx, t.kind, namespaceFlag(c), name, client.MergePatch, patch, ""); err != nil {
						errs = append(errs, err)
						continue
					}
					fmt.Fprintf(e.stdout, "%s scaled\n", objectRef(t.kind, name))
				}
			}
			return reportAll(e.stderr, errs)
		},
	}
}
