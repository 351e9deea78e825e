package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/urfave/cli/v2"
	corev1 "k8s.io/api/core/v1"

	"orch.dev/orch/api"
	"orch.dev/orch/api/client"
)

func cordonCommand(e *env, cordon bool) *cli.Command {
	name, usage := "cordon", "mark nodes unschedulable (their pods keep running)"
	if !cordon {
		name, usage = "uncordon", "mark nodes schedulable again"
	}
	return &cli.Command{
		Name:      name,
		Usage:     usage,
		ArgsUsage: "NODE...",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "selector", Aliases: []string{"l"}, Usage: "the nodes matching label `SELECTOR`"},
		},
		Action: func(c *cli.Context) error {
			if c.NArg() == 0 && c.String("selector") == "" {
				return fmt.Errorf("NODE or -l SELECTOR is required (orchctl %s NODE)", name)
			}
			cl, err := e.client(c)
			if err != nil {
				return err
			}
			var nodes []*corev1.Node
			var errs []error
			if sel := c.String("selector"); sel != "" {
				list, err := cl.ListAll(e.ctx, api.Node, "", client.ListOptions{LabelSelector: sel})
				if err != nil {
					return err
				}
				for _, o := range list.Items {
					nodes = append(nodes, o.(*corev1.Node))
				}
			}
			for _, arg := range c.Args().Slice() {
				n, err := nodeName(arg)
				if err != nil {
					return err
				}
				obj, err := cl.Get(e.ctx, api.Node, "", n, false)
				if err != nil {
					errs = append(errs, err)
					continue
				}
				nodes = append(nodes, obj.(*corev1.Node))
			}
			for _, n := range nodes {
				verb, err := setUnschedulable(e.ctx, cl, n, cordon)
				if err != nil {
					errs = append(errs, err)
					continue
				}
				fmt.Fprintf(e.stdout, "node/%s %s\n", n.Name, verb)
			}
			return reportAll(e.stderr, errs)
		},
	}
}

// nodeName reads a node argument: "n1", "node/n1" or "nodes/n1".
func nodeName(arg string) (string, error) {
	typ, name, ok := strings.Cut(arg, "/")
	if !ok {
		return arg, nil
	}
	if k, err := api.KindForResource(typ); err != nil || k != api.Node || name == "" {
		return "", fmt.Errorf("%q is not a node (give NODE or node/NODE)", arg)
	}
	return name, nil
}

// setUnschedulable cordons (or uncordons) node and says what it did:
// "cordoned", "already cordoned", "uncordoned" or "already uncordoned".
func setUnschedulable(ctx context.Context, cl *client.Client, node *corev1.Node, unschedulable bool) (string, error) {
	verb := "cordoned"
	if !unschedulable {
		verb = "uncordoned"
	}
	if node.Spec.Unschedulable == unschedulable {
		return "already " + verb, nil
	}
	var value any // null removes the field: schedulable
	if unschedulable {
		value = true
	}
	patch, _ := json.Marshal(map[string]any{"spec": map[string]any{"unschedulable": value}})
	if _, err := cl.Patch(ctx, api.Node, "", node.Name, client.MergePatch, patch, ""); err != nil {
		return "", err
	}
	return verb, nil
}
