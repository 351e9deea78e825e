package cli

import (
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/urfave/cli/v2"

	"orch.dev/orch/api"
	"orch.dev/orch/api/client"
)

// watch is `get -w`: it prints the current objects as get does, then every
// change until the context ends (Ctrl-C). Tables stay aligned across
// updates; -o json|yaml|name print each changed object.
func (e *env) watch(c *cli.Context, targets []target, ns string, opts client.ListOptions, output string) error {
	if len(targets) != 1 || len(targets[0].names) > 1 {
		return errors.New("-w/--watch: watch one resource type (and at most one name) at a time")
	}
	t := targets[0]
	if len(t.names) == 1 {
		sel := "metadata.name=" + t.names[0]
		if opts.FieldSelector != "" {
			sel = opts.FieldSelector + "," + sel
		}
		opts.FieldSelector = sel
	}
	tns := objectNamespace(t.kind, ns, "")
	cl, err := e.client(c)
	if err != nil {
		return err
	}
	list, err := cl.ListAll(e.ctx, t.kind, tns, opts)
	if err != nil {
		return err
	}
	p := &watchPrinter{w: e.stdout, kind: t.kind, output: output, table: &streamTable{w: e.stdout},
		opts:   tableOptions{wide: output == outWide, allNamespaces: ns == "", showLabels: c.Bool("show-labels"), noHeaders: c.Bool("no-headers")},
		header: !c.Bool("no-headers")}
	if len(list.Items) == 0 && len(t.names) == 0 && (output == outTable || output == outWide) {
		fmt.Fprintln(e.stderr, noResourcesMessage([]getResult{{kind: t.kind}}, ns))
	}
	if err := p.print(list.Items, e.now()); err != nil {
		return err
	}
	opts.ResourceVersion = list.ResourceVersion
	w, err := cl.Watch(e.ctx, t.kind, tns, opts)
	if err != nil {
		return err
	}
	defer w.Stop()
	for {
		var batch []api.Object
		select {
		case <-e.ctx.Done():
			return nil
		case ev, ok := <-w.Events():
			if !ok {
				if e.ctx.Err() != nil {
					return nil
				}
				return w.Err()
			}
			batch = append(batch, ev.Object)
		}
	drain: // take what else has arrived, so rows printed together align
		for {
			select {
			case ev, ok := <-w.Events():
				if !ok {
					break drain
				}
				batch = append(batch, ev.Object)
			default:
				break drain
			}
		}
		if err := p.print(batch, e.now()); err != nil {
			return err
		}
	}
}

type watchPrinter struct {
	w       io.Writer
	kind    *api.Kind
	output  string
	table   *streamTable
	opts    tableOptions
	header  bool
	printed int
}

func (p *watchPrinter) print(objs []api.Object, now time.Time) error {
	for _, o := range objs {
		switch p.output {
		case outJSON, outYAML:
			m, err := toMap(o)
			if err != nil {
				return err
			}
			if p.output == outYAML && p.printed > 0 {
				fmt.Fprintln(p.w, "---")
			}
			if err := writeValue(p.w, p.output, m); err != nil {
				return err
			}
		case outName:
			if err := printNames(p.w, []api.Object{o}); err != nil {
				return err
			}
		default:
			if p.header {
				p.table.row(tableHeader(p.kind, p.opts))
				p.header = false
			}
			p.table.row(tableRow(p.kind, o, now, p.opts))
		}
		p.printed++
	}
	return nil
}
