package cli

import (
	"errors"
	"fmt"
	"io"

	"github.com/urfave/cli/v2"
	apierrors "k8s.io/apimachinery/pkg/api/errors"

	"orch.dev/orch/api"
	"orch.dev/orch/api/client"
)

func getCommand(e *env) *cli.Command {
	return &cli.Command{
		Name:      "get",
		Usage:     "display one or many objects",
		ArgsUsage: "TYPE[,TYPE...] [NAME...] | TYPE/NAME...",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "output", Aliases: []string{"o"}, Usage: "output `FORMAT`: json, yaml, wide or name"},
			&cli.StringFlag{Name: "selector", Aliases: []string{"l"}, Usage: "label `SELECTOR` (e.g. app=web,tier!=db)"},
			&cli.StringFlag{Name: "field-selector", Usage: "field `SELECTOR` (e.g. spec.nodeName=n1)"},
			&cli.BoolFlag{Name: "all-namespaces", Aliases: []string{"A"}, Usage: "list objects in every namespace"},
			&cli.BoolFlag{Name: "watch", Aliases: []string{"w"}, Usage: "after listing, print changes as they happen"},
			&cli.BoolFlag{Name: "show-labels", Usage: "add a LABELS column"},
			&cli.BoolFlag{Name: "no-headers", Usage: "omit table headers"},
			&cli.BoolFlag{Name: "ignore-not-found", Usage: "a named object that does not exist is not an error"},
		},
		Action: e.runGet,
	}
}

// getResult is what was found for one target.
type getResult struct {
	kind *api.Kind
	objs []api.Object
}

func (e *env) runGet(c *cli.Context) error {
	targets, err := parseTargets(c.Args().Slice(), true)
	if err != nil {
		return err
	}
	output := c.String("output")
	if err := checkOutput(output, outTable, outWide, outJSON, outYAML, outName); err != nil {
		return err
	}
	all := c.Bool("all-namespaces")
	named := false
	for _, t := range targets {
		named = named || len(t.names) > 0
	}
	if named && c.String("selector") != "" {
		return errors.New("-l/--selector: names cannot be given together with a selector")
	}
	if named && all {
		return errors.New("-A/--all-namespaces: an object cannot be retrieved by name across all namespaces")
	}
	ns := namespaceFlag(c)
	if all {
		ns = ""
	}
	opts := client.ListOptions{LabelSelector: c.String("selector"), FieldSelector: c.String("field-selector")}
	if c.Bool("watch") {
		return e.watch(c, targets, ns, opts, output)
	}
	cl, err := e.client(c)
	if err != nil {
		return err
	}
	var results []getResult
	var errs []error
	for _, t := range targets {
		r := getResult{kind: t.kind}
		if len(t.names) == 0 {
			list, err := cl.ListAll(e.ctx, t.kind, objectNamespace(t.kind, ns, ""), opts)
			if err != nil {
				return err
			}
			r.objs = list.Items
		}
		for _, name := range t.names {
			obj, err := cl.Get(e.ctx, t.kind, objectNamespace(t.kind, ns, ""), name, false)
			if apierrors.IsNotFound(err) && c.Bool("ignore-not-found") {
				continue
			}
			if err != nil {
				errs = append(errs, err)
				continue
			}
			r.objs = append(r.objs, obj)
		}
		results = append(results, r)
	}
	single := len(targets) == 1 && len(targets[0].names) == 1
	if err := e.printResults(c, results, output, single, named, ns); err != nil {
		return err
	}
	return reportAll(e.stderr, errs)
}

// reportAll prints every error and fails, or returns nil when there are
// none.
func reportAll(w io.Writer, errs []error) error {
	switch len(errs) {
	case 0:
		return nil
	case 1:
		return errs[0]
	}
	for _, err := range errs {
		fmt.Fprintln(w, errorLine(err))
	}
	return exitCode(1)
}

func (e *env) printResults(c *cli.Context, results []getResult, output string, single, named bool, ns string) error {
	var objs []api.Object
	for _, r := range results {
		objs = append(objs, r.objs...)
	}
	switch output {
	case outJSON, outYAML:
		if single && len(objs) == 0 {
			return nil // the NotFound error is reported instead
		}
		return printStructured(e.stdout, output, objs, single)
	case outName:
		return printNames(e.stdout, objs)
	}
	if len(objs) == 0 {
		if !named && !c.Bool("ignore-not-found") {
			fmt.Fprintln(e.stderr, noResourcesMessage(results, ns))
		}
		return nil
	}
	opts := tableOptions{wide: output == outWide, allNamespaces: ns == "", showLabels: c.Bool("show-labels"),
		withKind: len(results) > 1, noHeaders: c.Bool("no-headers")}
	first := true
	now := e.now()
	for _, r := range results {
		if len(r.objs) == 0 {
			continue
		}
		if !first {
			fmt.Fprintln(e.stdout)
		}
		first = false
		if err := printTable(e.stdout, r.kind, r.objs, now, opts); err != nil {
			return err
		}
	}
	return nil
}

// noResourcesMessage is kubectl's note for an empty listing.
func noResourcesMessage(results []getResult, ns string) string {
	namespaced := false
	for _, r := range results {
		namespaced = namespaced || r.kind.Namespaced
	}
	if ns == "" || !namespaced {
		return "No resources found"
	}
	return fmt.Sprintf("No resources found in %s namespace.", ns)
}
