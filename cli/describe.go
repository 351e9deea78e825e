package cli

import (
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"orch.dev/orch/api"
	"orch.dev/orch/api/client"
)

func describeCommand(e *env) *cli.Command {
	return &cli.Command{
		Name:      "describe",
		Usage:     "show details of objects, with their events",
		ArgsUsage: "TYPE [NAME...] | TYPE/NAME...",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "selector", Aliases: []string{"l"}, Usage: "describe the objects matching label `SELECTOR`"},
		},
		Action: e.runDescribe,
	}
}

func (e *env) runDescribe(c *cli.Context) error {
	targets, err := parseTargets(c.Args().Slice(), false)
	if err != nil {
		return err
	}
	cl, err := e.client(c)
	if err != nil {
		return err
	}
	ns := namespaceFlag(c)
	var objs []api.Object
	var kinds []*api.Kind
	var errs []error
	for _, t := range targets {
		tns := objectNamespace(t.kind, ns, "")
		if len(t.names) == 0 {
			list, err := cl.ListAll(e.ctx, t.kind, tns, client.ListOptions{LabelSelector: c.String("selector")})
			if err != nil {
				return err
			}
			for _, o := range list.Items {
				objs, kinds = append(objs, o), append(kinds, t.kind)
			}
			continue
		}
		for _, name := range t.names {
			o, err := cl.Get(e.ctx, t.kind, tns, name, false)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			objs, kinds = append(objs, o), append(kinds, t.kind)
		}
	}
	if len(objs) == 0 && len(errs) == 0 {
		fmt.Fprintln(e.stderr, noResourcesMessage([]getResult{{kind: targets[0].kind}}, ns))
	}
	for i, o := range objs {
		if i > 0 {
			fmt.Fprint(e.stdout, "\n\n")
		}
		describeObject(e.stdout, kinds[i], o, e.related(cl, kinds[i], o), e.now(), time.Local)
	}
	return reportAll(e.stderr, errs)
}

// objectEvents lists the Events about obj.
func objectEvents(e *env, cl *client.Client, k *api.Kind, obj api.Object) ([]*corev1.Event, error) {
	sel := fmt.Sprintf("involvedObject.name=%s,involvedObject.namespace=%s,involvedObject.kind=%s", obj.GetName(), obj.GetNamespace(), k.Kind)
	list, err := cl.ListAll(e.ctx, api.Event, obj.GetNamespace(), client.ListOptions{FieldSelector: sel})
	if err != nil {
		return nil, err
	}
	var out []*corev1.Event
	for _, o := range list.Items {
		out = append(out, o.(*corev1.Event))
	}
	sort.SliceStable(out, func(i, j int) bool { return eventTime(out[i]).Time.Before(eventTime(out[j]).Time) })
	return out, nil
}

// describer writes kubectl-style "Key:\tvalue" lines, aligned by one
// tabwriter across the whole description.
type describer struct {
	tw  *tabwriter.Writer
	now time.Time
	loc *time.Location
	rel related
}

func (d *describer) line(level int, format string, args ...any) {
	fmt.Fprintf(d.tw, strings.Repeat("  ", level)+format+"\n", args...)
}

func (d *describer) time(t metav1.Time) string {
	if t.IsZero() {
		return "<unset>"
	}
	return t.In(d.loc).Format(time.RFC1123Z)
}

// describeObject writes the description of one object.
func describeObject(w io.Writer, k *api.Kind, obj api.Object, rel related, now time.Time, loc *time.Location) {
	d := &describer{tw: tabwriter.NewWriter(w, 0, 8, 2, ' ', 0), now: now, loc: loc, rel: rel}
	d.line(0, "Name:\t%s", obj.GetName())
	if k.Namespaced {
		d.line(0, "Namespace:\t%s", obj.GetNamespace())
	}
	switch o := obj.(type) {
	case *corev1.Node:
		d.line(0, "Roles:\t%s", nodeRoles(o))
	case *corev1.Pod:
		describePodPriority(d, o)
	}
	d.multiline(0, "Labels", formatMap(obj.GetLabels(), "="))
	annotations := map[string]string{}
	for key, v := range obj.GetAnnotations() {
		if key != lastAppliedAnnotation {
			annotations[key] = v
		}
	}
	d.multiline(0, "Annotations", formatMap(annotations, ": "))
	d.line(0, "CreationTimestamp:\t%s", d.time(obj.GetCreationTimestamp()))
	if ts := obj.GetDeletionTimestamp(); ts != nil {
		d.line(0, "DeletionTimestamp:\t%s", d.time(*ts))
	}
	for _, ref := range obj.GetOwnerReferences() {
		if ref.Controller != nil && *ref.Controller {
			d.line(0, "Controlled By:\t%s/%s", ref.Kind, ref.Name)
		}
	}
	if f, ok := kindDescribers[k]; ok {
		f(d, obj)
	}
	d.events(rel.events, rel.eventsErr)
	d.tw.Flush()
}

// multiline writes "Labels:  a=b" with further entries on their own lines.
func (d *describer) multiline(level int, title string, entries []string) {
	if len(entries) == 0 {
		d.line(level, "%s:\t<none>", title)
		return
	}
	d.line(level, "%s:\t%s", title, entries[0])
	for _, e := range entries[1:] {
		d.line(level, "\t%s", e)
	}
}

func formatMap(m map[string]string, sep string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	out := make([]string, len(keys))
	for i, k := range keys {
		out[i] = k + sep + oneLine(m[k])
	}
	return out
}

func (d *describer) events(events []*corev1.Event, err error) {
	switch {
	case err != nil:
		d.line(0, "Events:\t<unable to list events: %s>", oneLine(err.Error()))
		return
	case len(events) == 0:
		d.line(0, "Events:\t<none>")
		return
	}
	d.line(0, "Events:")
	d.line(1, "Type\tReason\tAge\tFrom\tMessage")
	d.line(1, "----\t------\t----\t----\t-------")
	for _, ev := range events {
		ageCell := age(eventTime(ev), d.now)
		if ev.Count > 1 {
			first := ev.FirstTimestamp
			if first.IsZero() {
				first = eventTime(ev)
			}
			ageCell = fmt.Sprintf("%s (x%d over %s)", ageCell, ev.Count, age(first, d.now))
		}
		from := ev.Source.Component
		if from == "" {
			from = ev.ReportingController
		}
		d.line(1, "%s\t%s\t%s\t%s\t%s", ev.Type, ev.Reason, ageCell, from, oneLine(ev.Message))
	}
}
