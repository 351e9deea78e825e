package cli

import (
	"errors"
	"fmt"

	"github.com/urfave/cli/v2"
	apierrors "k8s.io/apimachinery/pkg/api/errors"

	"orch.dev/orch/api"
	"orch.dev/orch/api/client"
)

func deleteCommand(e *env) *cli.Command {
	return &cli.Command{
		Name:      "delete",
		Usage:     "delete objects by name, by label selector, or as listed in manifests",
		ArgsUsage: "TYPE NAME... | TYPE/NAME... | TYPE -l SELECTOR | -f FILE",
		Flags: append(fileFlags(),
			&cli.StringFlag{Name: "selector", Aliases: []string{"l"}, Usage: "delete the objects matching label `SELECTOR`"},
			&cli.BoolFlag{Name: "all", Usage: "delete every object of the type in the namespace"},
			&cli.StringFlag{Name: "cascade", Value: "background", Usage: "what happens to dependents: background, foreground or orphan"},
			&cli.BoolFlag{Name: "ignore-not-found", Usage: "an object that does not exist is not an error"},
			&cli.Int64Flag{Name: "grace-period", Value: -1, Usage: "`SECONDS` a pod gets to stop (-1: its own terminationGracePeriodSeconds; 0 needs --force and is taken as 1 without it)"},
			&cli.BoolFlag{Name: "now", Usage: "pods stop at once: --grace-period 1"},
			&cli.BoolFlag{Name: "force", Usage: "remove pods from the API at once, without waiting for their node to confirm that they stopped (with --grace-period 0, the default with --force)"},
		),
		Action: e.runDelete,
	}
}

// propagation maps --cascade to a deletion propagation policy.
func propagation(cascade string) (string, error) {
	switch cascade {
	case "background", "true":
		return "Background", nil
	case "foreground":
		return "Foreground", nil
	case "orphan", "false":
		return "Orphan", nil
	}
	return "", fmt.Errorf("--cascade %q: must be background, foreground or orphan", cascade)
}

// deleteGrace maps --grace-period, --now and --force to the grace period
// sent (nil: the pod's own), as kubectl does: 0 means "at once, without the
// node's confirmation" only with --force, and is taken as 1 otherwise.
func deleteGrace(c *cli.Context) (*int64, error) {
	grace, now, force := c.Int64("grace-period"), c.Bool("now"), c.Bool("force")
	switch {
	case grace < -1:
		return nil, fmt.Errorf("--grace-period %d: must be -1 (the pod's own) or at least 0", grace)
	case now && grace != -1:
		return nil, errors.New("--now and --grace-period cannot both be given")
	case now:
		grace = 1
	case force && grace == -1:
		grace = 0
	case grace == 0 && !force:
		grace = 1
	}
	if grace < 0 {
		return nil, nil
	}
	if force && grace == 0 {
		fmt.Fprintln(c.App.ErrWriter, "Warning: immediate deletion does not wait for confirmation that the pod's containers have stopped; they may keep running on their node until it reconciles.")
	}
	return &grace, nil
}

func (e *env) runDelete(c *cli.Context) error {
	policy, err := propagation(c.String("cascade"))
	if err != nil {
		return err
	}
	grace, err := deleteGrace(c)
	if err != nil {
		return err
	}
	del := client.DeleteOptions{Propagation: policy, Grace: grace}
	ns := namespaceFlag(c)
	ignore := c.Bool("ignore-not-found")
	type item struct {
		kind     *api.Kind
		ns, name string
	}
	var items []item
	var collections []target
	if files := c.StringSlice("filename"); len(files) > 0 {
		if c.NArg() > 0 {
			return fmt.Errorf("unexpected argument %q: objects are given either with -f or as arguments, not both", c.Args().First())
		}
		ms, err := readManifests(e, files, c.Bool("recursive"))
		if err != nil {
			return err
		}
		for _, m := range ms {
			if m.obj.GetName() == "" {
				return fmt.Errorf("%s: a %s without metadata.name cannot be deleted", m.source, m.kind.Kind)
			}
			items = append(items, item{m.kind, objectNamespace(m.kind, m.obj.GetNamespace(), ns), m.obj.GetName()})
		}
	} else {
		targets, err := parseTargets(c.Args().Slice(), false)
		if err != nil {
			return err
		}
		for _, t := range targets {
			switch {
			case len(t.names) > 0 && (c.String("selector") != "" || c.Bool("all")):
				return errors.New("names cannot be given together with -l/--selector or --all")
			case len(t.names) > 0:
				for _, n := range t.names {
					items = append(items, item{t.kind, objectNamespace(t.kind, ns, ""), n})
				}
			case c.String("selector") == "" && !c.Bool("all"):
				return errors.New("resource(s) were provided, but no name, label selector (-l) or --all flag was given")
			default:
				collections = append(collections, t)
			}
		}
	}
	cl, err := e.client(c)
	if err != nil {
		return err
	}
	var errs []error
	for _, it := range items {
		err := cl.Delete(e.ctx, it.kind, it.ns, it.name, del)
		if apierrors.IsNotFound(err) && ignore {
			continue
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		fmt.Fprintf(e.stdout, "%s %q deleted\n", kindRef(it.kind), it.name)
	}
	for _, t := range collections {
		if err := e.deleteCollection(cl, t.kind, objectNamespace(t.kind, ns, ""), c.String("selector"), del); err != nil {
			errs = append(errs, err)
		}
	}
	return reportAll(e.stderr, errs)
}

// deleteCollection deletes every matching object in one call and names
// each one that was there (listed just before).
func (e *env) deleteCollection(cl *client.Client, k *api.Kind, ns, selector string, del client.DeleteOptions) error {
	opts := client.ListOptions{LabelSelector: selector}
	list, err := cl.ListAll(e.ctx, k, ns, opts)
	if err != nil {
		return err
	}
	if len(list.Items) == 0 {
		fmt.Fprintln(e.stderr, noResourcesMessage([]getResult{{kind: k}}, ns))
		return nil
	}
	if err := cl.DeleteCollection(e.ctx, k, ns, opts, del); err != nil {
		return err
	}
	for _, o := range list.Items {
		fmt.Fprintf(e.stdout, "%s %q deleted\n", kindRef(k), o.GetName())
	}
	return nil
}
