package cli

import (
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	schedulingv1 "k8s.io/api/scheduling/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/duration"

	"orch.dev/orch/api"
)

// columns is kubectl's default table for one kind: the headers, the extra
// headers of -o wide, and a function producing both parts of a row.
type columns struct {
	headers []string
	wide    []string
	row     func(obj api.Object, now time.Time) (cells, wide []string)
}

// tableOptions are the get flags that shape a table.
type tableOptions struct {
	wide          bool
	allNamespaces bool // prepend NAMESPACE
	showLabels    bool // append LABELS
	withKind      bool // NAME as kind/name (several types asked for)
	noHeaders     bool
}

// newTabWriter aligns columns as kubectl does (three spaces between them).
func newTabWriter(w io.Writer) *tabwriter.Writer {
	return tabwriter.NewWriter(w, 6, 4, 3, ' ', 0)
}

// streamTable aligns rows written over time (a watch): each column is as
// wide as the widest cell seen so far, so rows stay aligned as long as
// values do not grow (kubectl's tabwriter fork remembers widths the same
// way).
type streamTable struct {
	w      io.Writer
	widths []int
}

func (t *streamTable) row(cells []string) {
	var b strings.Builder
	for i, c := range cells {
		c = cleanCell(c)
		if i == len(cells)-1 {
			b.WriteString(c)
			break
		}
		if i >= len(t.widths) {
			t.widths = append(t.widths, 0)
		}
		t.widths[i] = max(t.widths[i], len(c), 6-3)
		b.WriteString(c)
		b.WriteString(strings.Repeat(" ", t.widths[i]-len(c)+3))
	}
	b.WriteString("\n")
	io.WriteString(t.w, b.String())
}

func cleanCell(c string) string {
	return strings.Map(func(r rune) rune {
		if r == '\t' || r == '\n' || r == '\r' {
			return ' '
		}
		return r
	}, c)
}

// tableHeader returns the header row for kind k.
func tableHeader(k *api.Kind, o tableOptions) []string {
	cols := columnsFor(k)
	h := append([]string(nil), cols.headers...)
	if o.wide {
		h = append(h, cols.wide...)
	}
	if o.allNamespaces && k.Namespaced {
		h = append([]string{"NAMESPACE"}, h...)
	}
	if o.showLabels {
		h = append(h, "LABELS")
	}
	return h
}

// tableRow returns one object's row.
func tableRow(k *api.Kind, obj api.Object, now time.Time, o tableOptions) []string {
	cols := columnsFor(k)
	cells, wide := cols.row(obj, now)
	if o.withKind && cols.headers[0] == "NAME" {
		cells[0] = objectRef(k, cells[0])
	}
	row := append([]string(nil), cells...)
	if o.wide {
		row = append(row, wide...)
	}
	if o.allNamespaces && k.Namespaced {
		row = append([]string{obj.GetNamespace()}, row...)
	}
	if o.showLabels {
		row = append(row, formatLabels(obj.GetLabels()))
	}
	return row
}

// writeRow writes tab-separated cells (tabs and newlines inside a cell
// would break the table, so they become spaces).
func writeRow(w io.Writer, cells []string) {
	clean := make([]string, len(cells))
	for i, c := range cells {
		clean[i] = cleanCell(c)
	}
	fmt.Fprintln(w, strings.Join(clean, "\t"))
}

// printTable writes the objects of one kind as a table.
func printTable(w io.Writer, k *api.Kind, objs []api.Object, now time.Time, o tableOptions) error {
	tw := newTabWriter(w)
	if !o.noHeaders {
		writeRow(tw, tableHeader(k, o))
	}
	for _, obj := range objs {
		writeRow(tw, tableRow(k, obj, now, o))
	}
	return tw.Flush()
}

func columnsFor(k *api.Kind) columns {
	if c, ok := tables[k]; ok {
		return c
	}
	return columns{headers: []string{"NAME", "AGE"}, row: func(o api.Object, now time.Time) ([]string, []string) {
		return []string{o.GetName(), age(o.GetCreationTimestamp(), now)}, nil
	}}
}

var tables map[*api.Kind]columns

func init() {
	tables = map[*api.Kind]columns{
		api.Namespace: {headers: []string{"NAME", "STATUS", "AGE"}, row: func(o api.Object, now time.Time) ([]string, []string) {
			ns := o.(*corev1.Namespace)
			return []string{ns.Name, string(ns.Status.Phase), age(ns.CreationTimestamp, now)}, nil
		}},
		api.ConfigMap: {headers: []string{"NAME", "DATA", "AGE"}, row: func(o api.Object, now time.Time) ([]string, []string) {
			cm := o.(*corev1.ConfigMap)
			return []string{cm.Name, strconv.Itoa(len(cm.Data) + len(cm.BinaryData)), age(cm.CreationTimestamp, now)}, nil
		}},
		api.Secret: {headers: []string{"NAME", "TYPE", "DATA", "AGE"}, row: func(o api.Object, now time.Time) ([]string, []string) {
			s := o.(*corev1.Secret)
			return []string{s.Name, string(s.Type), strconv.Itoa(len(s.Data)), age(s.CreationTimestamp, now)}, nil
		}},
		api.Pod: {headers: []string{"NAME", "READY", "STATUS", "RESTARTS", "AGE"},
			wide: []string{"IP", "NODE", "NOMINATED NODE", "READINESS GATES"}, row: podRow},
		api.Deployment: {headers: []string{"NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"},
			wide: []string{"CONTAINERS", "IMAGES", "SELECTOR"}, row: func(o api.Object, now time.Time) ([]string, []string) {
				d := o.(*appsv1.Deployment)
				return []string{d.Name, fmt.Sprintf("%d/%d", d.Status.ReadyReplicas, replicas(d.Spec.Replicas)),
						itoa(d.Status.UpdatedReplicas), itoa(d.Status.AvailableReplicas), age(d.CreationTimestamp, now)},
					templateColumns(&d.Spec.Template, d.Spec.Selector)
			}},
		api.ReplicaSet: {headers: []string{"NAME", "DESIRED", "CURRENT", "READY", "AGE"},
			wide: []string{"CONTAINERS", "IMAGES", "SELECTOR"}, row: func(o api.Object, now time.Time) ([]string, []string) {
				rs := o.(*appsv1.ReplicaSet)
				return []string{rs.Name, itoa(replicas(rs.Spec.Replicas)), itoa(rs.Status.Replicas), itoa(rs.Status.ReadyReplicas),
					age(rs.CreationTimestamp, now)}, templateColumns(&rs.Spec.Template, rs.Spec.Selector)
			}},
		api.DaemonSet: {headers: []string{"NAME", "DESIRED", "CURRENT", "READY", "UP-TO-DATE", "AVAILABLE", "NODE SELECTOR", "AGE"},
			wide: []string{"CONTAINERS", "IMAGES", "SELECTOR"}, row: func(o api.Object, now time.Time) ([]string, []string) {
				ds := o.(*appsv1.DaemonSet)
				st := ds.Status
				return []string{ds.Name, itoa(st.DesiredNumberScheduled), itoa(st.CurrentNumberScheduled), itoa(st.NumberReady),
					itoa(st.UpdatedNumberScheduled), itoa(st.NumberAvailable), formatLabels(ds.Spec.Template.Spec.NodeSelector),
					age(ds.CreationTimestamp, now)}, templateColumns(&ds.Spec.Template, ds.Spec.Selector)
			}},
		api.Service: {headers: []string{"NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE"},
			wide: []string{"SELECTOR"}, row: serviceRow},
		api.Endpoints: {headers: []string{"NAME", "ENDPOINTS", "AGE"}, row: func(o api.Object, now time.Time) ([]string, []string) {
			ep := o.(*corev1.Endpoints)
			return []string{ep.Name, formatEndpoints(ep), age(ep.CreationTimestamp, now)}, nil
		}},
		api.Node: {headers: []string{"NAME", "STATUS", "ROLES", "AGE", "VERSION"},
			wide: []string{"INTERNAL-IP", "EXTERNAL-IP", "OS-IMAGE", "KERNEL-VERSION", "CONTAINER-RUNTIME"}, row: nodeRow},
		api.Event: {headers: []string{"LAST SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"},
			wide: []string{"SOURCE", "FIRST SEEN", "COUNT", "NAME"}, row: eventRow},
		api.PriorityClass: {headers: []string{"NAME", "VALUE", "GLOBAL-DEFAULT", "AGE", "PREEMPTIONPOLICY"}, row: func(o api.Object, now time.Time) ([]string, []string) {
			pc := o.(*schedulingv1.PriorityClass)
			policy := "<none>"
			if pc.PreemptionPolicy != nil {
				policy = string(*pc.PreemptionPolicy)
			}
			return []string{pc.Name, itoa(pc.Value), strconv.FormatBool(pc.GlobalDefault), age(pc.CreationTimestamp, now), policy}, nil
		}},
	}
}

func itoa(n int32) string { return strconv.Itoa(int(n)) }

func replicas(r *int32) int32 {
	if r == nil {
		return 1
	}
	return *r
}

// age is kubectl's AGE: "5m", "3h20m", "<unknown>" without a timestamp.
func age(t metav1.Time, now time.Time) string {
	if t.IsZero() {
		return "<unknown>"
	}
	return duration.HumanDuration(now.Sub(t.Time))
}

func formatLabels(m map[string]string) string {
	if len(m) == 0 {
		return "<none>"
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + "=" + m[k]
	}
	return strings.Join(parts, ",")
}

func templateColumns(t *corev1.PodTemplateSpec, sel *metav1.LabelSelector) []string {
	var names, images []string
	for _, c := range t.Spec.Containers {
		names = append(names, c.Name)
		images = append(images, c.Image)
	}
	return []string{strings.Join(names, ","), strings.Join(images, ","), metav1.FormatLabelSelector(sel)}
}

func orNone(s string) string {
	if s == "" {
		return "<none>"
	}
	return s
}

func podRow(o api.Object, now time.Time) ([]string, []string) {
	pod := o.(*corev1.Pod)
	ready, restarts, lastRestart := 0, 0, time.Time{}
	reason := string(pod.Status.Phase)
	if pod.Status.Reason != "" {
		reason = pod.Status.Reason
	}
	initializing := false
	for i, cs := range pod.Status.InitContainerStatuses {
		restarts += int(cs.RestartCount)
		switch {
		case cs.State.Terminated != nil && cs.State.Terminated.ExitCode == 0:
			continue
		case cs.State.Terminated != nil:
			reason = "Init:" + orDefault(cs.State.Terminated.Reason, fmt.Sprintf("ExitCode:%d", cs.State.Terminated.ExitCode))
		case cs.State.Waiting != nil && cs.State.Waiting.Reason != "" && cs.State.Waiting.Reason != "PodInitializing":
			reason = "Init:" + cs.State.Waiting.Reason
		default:
			reason = fmt.Sprintf("Init:%d/%d", i, len(pod.Spec.InitContainers))
		}
		initializing = true
		break
	}
	hasRunning := false
	for i := len(pod.Status.ContainerStatuses) - 1; i >= 0; i-- {
		cs := pod.Status.ContainerStatuses[i]
		restarts += int(cs.RestartCount)
		if t := cs.LastTerminationState.Terminated; t != nil && t.FinishedAt.After(lastRestart) {
			lastRestart = t.FinishedAt.Time
		}
		if initializing {
			continue
		}
		switch {
		case cs.State.Waiting != nil && cs.State.Waiting.Reason != "":
			reason = cs.State.Waiting.Reason
		case cs.State.Terminated != nil && cs.State.Terminated.Reason != "":
			reason = cs.State.Terminated.Reason
		case cs.State.Terminated != nil && cs.State.Terminated.Signal != 0:
			reason = fmt.Sprintf("Signal:%d", cs.State.Terminated.Signal)
		case cs.State.Terminated != nil:
			reason = fmt.Sprintf("ExitCode:%d", cs.State.Terminated.ExitCode)
		case cs.Ready && cs.State.Running != nil:
			hasRunning = true
			ready++
		}
	}
	if !initializing && reason == "Completed" && hasRunning {
		reason = "Running"
	}
	if pod.DeletionTimestamp != nil {
		reason = "Terminating"
		if pod.Status.Reason == "NodeLost" {
			reason = "Unknown"
		}
	}
	restartCell := strconv.Itoa(restarts)
	if restarts > 0 && !lastRestart.IsZero() {
		restartCell += " (" + duration.HumanDuration(now.Sub(lastRestart)) + " ago)"
	}
	gates := "<none>"
	if n := len(pod.Spec.ReadinessGates); n > 0 {
		met := 0
		for _, g := range pod.Spec.ReadinessGates {
			for _, c := range pod.Status.Conditions {
				if c.Type == g.ConditionType {
					if c.Status == corev1.ConditionTrue {
						met++
					}
					break
				}
			}
		}
		gates = fmt.Sprintf("%d/%d", met, n) // kubectl: gates met / gates
	}
	return []string{pod.Name, fmt.Sprintf("%d/%d", ready, len(pod.Spec.Containers)), reason, restartCell, age(pod.CreationTimestamp, now)},
		[]string{orNone(pod.Status.PodIP), orNone(pod.Spec.NodeName), orNone(pod.Status.NominatedNodeName), gates}
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func serviceRow(o api.Object, now time.Time) ([]string, []string) {
	svc := o.(*corev1.Service)
	var ports []string
	for _, p := range svc.Spec.Ports {
		s := strconv.Itoa(int(p.Port))
		if p.NodePort != 0 {
			s += ":" + strconv.Itoa(int(p.NodePort))
		}
		ports = append(ports, s+"/"+string(p.Protocol))
	}
	external := "<none>"
	if len(svc.Spec.ExternalIPs) > 0 {
		external = strings.Join(svc.Spec.ExternalIPs, ",")
	}
	return []string{svc.Name, string(svc.Spec.Type), orNone(svc.Spec.ClusterIP), external, orNone(strings.Join(ports, ",")),
		age(svc.CreationTimestamp, now)}, []string{formatLabels(svc.Spec.Selector)}
}

// formatEndpoints lists up to three address:port pairs, as kubectl does.
func formatEndpoints(ep *corev1.Endpoints) string {
	const max = 3
	var list []string
	count := 0
	for _, ss := range ep.Subsets {
		addrs := ss.Addresses
		if len(ss.Ports) == 0 {
			for _, a := range addrs {
				if len(list) < max {
					list = append(list, a.IP)
				}
				count++
			}
			continue
		}
		for _, p := range ss.Ports {
			for _, a := range addrs {
				if len(list) < max {
					list = append(list, fmt.Sprintf("%s:%d", a.IP, p.Port))
				}
				count++
			}
		}
	}
	if count == 0 {
		return "<none>"
	}
	s := strings.Join(list, ",")
	if count > max {
		s += fmt.Sprintf(" + %d more...", count-max)
	}
	return s
}

func nodeRow(o api.Object, now time.Time) ([]string, []string) {
	n := o.(*corev1.Node)
	status := "Unknown"
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			switch c.Status {
			case corev1.ConditionTrue:
				status = "Ready"
			case corev1.ConditionFalse:
				status = "NotReady"
			}
		}
	}
	if n.Spec.Unschedulable {
		status += ",SchedulingDisabled"
	}
	var internal, external []string
	for _, a := range n.Status.Addresses {
		switch a.Type {
		case corev1.NodeInternalIP:
			internal = append(internal, a.Address)
		case corev1.NodeExternalIP:
			external = append(external, a.Address)
		}
	}
	info := n.Status.NodeInfo
	return []string{n.Name, status, nodeRoles(n), age(n.CreationTimestamp, now), info.KubeletVersion},
		[]string{orNone(strings.Join(internal, ",")), orNone(strings.Join(external, ",")), orUnknown(info.OSImage),
			orUnknown(info.KernelVersion), orUnknown(info.ContainerRuntimeVersion)}
}

func orUnknown(s string) string {
	if s == "" {
		return "<unknown>"
	}
	return s
}

// nodeRoles reads the node-role.kubernetes.io/ROLE labels.
func nodeRoles(n *corev1.Node) string {
	var roles []string
	for k, v := range n.Labels {
		switch {
		case strings.HasPrefix(k, "node-role.kubernetes.io/"):
			if r := strings.TrimPrefix(k, "node-role.kubernetes.io/"); r != "" {
				roles = append(roles, r)
			}
		case k == "kubernetes.io/role" && v != "":
			roles = append(roles, v)
		}
	}
	if len(roles) == 0 {
		return "<none>"
	}
	sort.Strings(roles)
	return strings.Join(roles, ",")
}

// eventTime is when an event was last seen.
func eventTime(ev *corev1.Event) metav1.Time {
	switch {
	case !ev.LastTimestamp.IsZero():
		return ev.LastTimestamp
	case !ev.EventTime.IsZero():
		return metav1.Time{Time: ev.EventTime.Time}
	case !ev.FirstTimestamp.IsZero():
		return ev.FirstTimestamp
	}
	return ev.CreationTimestamp
}

func eventRow(o api.Object, now time.Time) ([]string, []string) {
	ev := o.(*corev1.Event)
	last := age(eventTime(ev), now)
	first := ev.FirstTimestamp
	if first.IsZero() {
		first = eventTime(ev)
	}
	if ev.Count > 1 {
		last = fmt.Sprintf("%s (x%d over %s)", last, ev.Count, age(first, now))
	}
	obj := strings.ToLower(ev.InvolvedObject.Kind) + "/" + ev.InvolvedObject.Name
	source := ev.Source.Component
	if ev.Source.Host != "" {
		source += ", " + ev.Source.Host
	}
	if source == "" {
		source = ev.ReportingController
	}
	return []string{last, ev.Type, ev.Reason, obj, strings.TrimSpace(ev.Message)},
		[]string{orNone(source), age(first, now), strconv.Itoa(int(max(ev.Count, 1))), ev.Name}
}
