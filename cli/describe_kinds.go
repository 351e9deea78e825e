package cli

import (
	"fmt"
	"sort"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"orch.dev/orch/api"
)

// kindDescribers write the kind-specific part of a description.
var kindDescribers map[*api.Kind]func(d *describer, obj api.Object)

func init() {
	kindDescribers = map[*api.Kind]func(*describer, api.Object){
		api.Namespace: func(d *describer, o api.Object) {
			d.line(0, "Status:\t%s", o.(*corev1.Namespace).Status.Phase)
		},
		api.ConfigMap: describeConfigMap,
		api.Secret:    describeSecret,
		api.Pod:       describePod,
		api.Deployment: func(d *describer, o api.Object) {
			describeDeployment(d, o.(*appsv1.Deployment))
		},
		api.ReplicaSet: func(d *describer, o api.Object) {
			rs := o.(*appsv1.ReplicaSet)
			d.line(0, "Selector:\t%s", metav1.FormatLabelSelector(rs.Spec.Selector))
			d.line(0, "Replicas:\t%d current / %d desired", rs.Status.Replicas, replicas(rs.Spec.Replicas))
			d.line(0, "Pods Status:\t%d Ready / %d Available", rs.Status.ReadyReplicas, rs.Status.AvailableReplicas)
			describeTemplate(d, &rs.Spec.Template)
		},
		api.DaemonSet: func(d *describer, o api.Object) {
			ds := o.(*appsv1.DaemonSet)
			st := ds.Status
			d.line(0, "Selector:\t%s", metav1.FormatLabelSelector(ds.Spec.Selector))
			d.line(0, "Node-Selector:\t%s", formatLabels(ds.Spec.Template.Spec.NodeSelector))
			d.line(0, "Desired Number of Nodes Scheduled:\t%d", st.DesiredNumberScheduled)
			d.line(0, "Current Number of Nodes Scheduled:\t%d", st.CurrentNumberScheduled)
			d.line(0, "Number of Nodes Scheduled with Up-to-date Pods:\t%d", st.UpdatedNumberScheduled)
			d.line(0, "Number of Nodes Scheduled with Available Pods:\t%d", st.NumberAvailable)
			d.line(0, "Number of Nodes Misscheduled:\t%d", st.NumberMisscheduled)
			d.line(0, "Pods Status:\t%d Ready / %d Unavailable", st.NumberReady, st.NumberUnavailable)
			describeTemplate(d, &ds.Spec.Template)
		},
		api.Service:   describeService,
		api.Endpoints: describeEndpoints,
		api.Node:      describeNode,
		api.Event: func(d *describer, o api.Object) {
			ev := o.(*corev1.Event)
			d.line(0, "Involved Object:\t%s/%s", ev.InvolvedObject.Kind, ev.InvolvedObject.Name)
			d.line(0, "Type:\t%s", ev.Type)
			d.line(0, "Reason:\t%s", ev.Reason)
			d.line(0, "Message:\t%s", oneLine(ev.Message))
			d.line(0, "Count:\t%d", ev.Count)
			d.line(0, "Last Seen:\t%s", d.time(eventTime(ev)))
		},
	}
}

func describeConfigMap(d *describer, o api.Object) {
	cm := o.(*corev1.ConfigMap)
	d.line(0, "")
	d.line(0, "Data")
	d.line(0, "====")
	for _, k := range sortedKeys(cm.Data) {
		d.line(0, "%s:", k)
		d.line(0, "----")
		// Values are printed verbatim (tabs would be taken as cell breaks).
		d.line(0, "%s", strings.ReplaceAll(cm.Data[k], "\t", "    "))
		d.line(0, "")
	}
	d.line(0, "")
	d.line(0, "BinaryData")
	d.line(0, "====")
	for _, k := range sortedKeys(cm.BinaryData) {
		d.line(0, "%s:\t%d bytes", k, len(cm.BinaryData[k]))
	}
	d.line(0, "")
}

// describeSecret prints the size of each value, never the value.
func describeSecret(d *describer, o api.Object) {
	s := o.(*corev1.Secret)
	d.line(0, "")
	d.line(0, "Type:\t%s", s.Type)
	d.line(0, "")
	d.line(0, "Data")
	d.line(0, "====")
	for _, k := range sortedKeys(s.Data) {
		d.line(0, "%s:\t%d bytes", k, len(s.Data[k]))
	}
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func describePod(d *describer, o api.Object) {
	pod := o.(*corev1.Pod)
	node := "<none>"
	if pod.Spec.NodeName != "" {
		node = pod.Spec.NodeName
		if pod.Status.HostIP != "" {
			node += "/" + pod.Status.HostIP
		}
	}
	d.line(0, "Node:\t%s", node)
	if pod.Status.StartTime != nil {
		d.line(0, "Start Time:\t%s", d.time(*pod.Status.StartTime))
	}
	status := string(pod.Status.Phase)
	if pod.DeletionTimestamp != nil {
		status = "Terminating"
	}
	d.line(0, "Status:\t%s", status)
	if pod.Status.Reason != "" {
		d.line(0, "Reason:\t%s", pod.Status.Reason)
	}
	if pod.Status.Message != "" {
		d.line(0, "Message:\t%s", oneLine(pod.Status.Message))
	}
	describePodScheduling(d, pod)
	d.line(0, "IP:\t%s", pod.Status.PodIP)
	statuses := map[string]corev1.ContainerStatus{}
	for _, cs := range append(pod.Status.InitContainerStatuses, pod.Status.ContainerStatuses...) {
		statuses[cs.Name] = cs
	}
	if len(pod.Spec.InitContainers) > 0 {
		d.line(0, "Init Containers:")
		for _, c := range pod.Spec.InitContainers {
			describeContainer(d, 1, c, statuses)
		}
	}
	d.line(0, "Containers:")
	for _, c := range pod.Spec.Containers {
		describeContainer(d, 1, c, statuses)
	}
	if len(pod.Status.Conditions) > 0 {
		d.line(0, "Conditions:")
		d.line(1, "Type\tStatus")
		for _, c := range pod.Status.Conditions {
			d.line(1, "%s\t%s", c.Type, c.Status)
		}
	}
	d.line(0, "Node-Selectors:\t%s", formatLabels(pod.Spec.NodeSelector))
	var tols []string
	for _, t := range pod.Spec.Tolerations {
		tols = append(tols, formatToleration(t))
	}
	d.multiline(0, "Tolerations", tols)
}

func formatToleration(t corev1.Toleration) string {
	s := t.Key
	if t.Value != "" {
		s += "=" + t.Value
	}
	if t.Effect != "" {
		s += ":" + string(t.Effect)
	}
	if t.Operator == corev1.TolerationOpExists && t.Value == "" {
		s += " op=Exists"
	}
	if t.TolerationSeconds != nil {
		s += fmt.Sprintf(" for %ds", *t.TolerationSeconds)
	}
	return s
}

// describeContainer writes one container; statuses is empty for templates.
func describeContainer(d *describer, level int, c corev1.Container, statuses map[string]corev1.ContainerStatus) {
	d.line(level, "%s:", c.Name)
	l := level + 1
	d.line(l, "Image:\t%s", c.Image)
	var ports []string
	for _, p := range c.Ports {
		s := fmt.Sprintf("%d/%s", p.ContainerPort, p.Protocol)
		if p.Name != "" {
			s += " (" + p.Name + ")"
		}
		ports = append(ports, s)
	}
	if len(ports) == 0 {
		d.line(l, "Port:\t<none>")
	} else {
		d.line(l, "Port:\t%s", strings.Join(ports, ", "))
	}
	if len(c.Command) > 0 {
		d.line(l, "Command:\t%s", strings.Join(c.Command, " "))
	}
	if len(c.Args) > 0 {
		d.line(l, "Args:\t%s", strings.Join(c.Args, " "))
	}
	if cs, ok := statuses[c.Name]; ok {
		d.line(l, "State:\t%s", containerState(d, cs.State))
		if cs.LastTerminationState.Terminated != nil {
			d.line(l, "Last State:\t%s", containerState(d, cs.LastTerminationState))
		}
		d.line(l, "Ready:\t%s", boolWord(cs.Ready))
		d.line(l, "Restart Count:\t%d", cs.RestartCount)
	}
	for _, sec := range []struct {
		title string
		list  corev1.ResourceList
	}{{"Limits", c.Resources.Limits}, {"Requests", c.Resources.Requests}} {
		if len(sec.list) == 0 {
			continue
		}
		d.line(l, "%s:", sec.title)
		names := make([]string, 0, len(sec.list))
		for n := range sec.list {
			names = append(names, string(n))
		}
		sort.Strings(names)
		for _, n := range names {
			q := sec.list[corev1.ResourceName(n)]
			d.line(l+1, "%s:\t%s", n, q.String())
		}
	}
	var env []string
	for _, e := range c.Env {
		switch {
		case e.ValueFrom == nil:
			env = append(env, e.Name+": "+e.Value)
		case e.ValueFrom.SecretKeyRef != nil:
			env = append(env, fmt.Sprintf("%s: <set to the key '%s' in secret '%s'>", e.Name, e.ValueFrom.SecretKeyRef.Key, e.ValueFrom.SecretKeyRef.Name))
		case e.ValueFrom.ConfigMapKeyRef != nil:
			env = append(env, fmt.Sprintf("%s: <set to the key '%s' of config map '%s'>", e.Name, e.ValueFrom.ConfigMapKeyRef.Key, e.ValueFrom.ConfigMapKeyRef.Name))
		default:
			env = append(env, e.Name+": <set from a field or resource>")
		}
	}
	if len(env) == 0 {
		d.line(l, "Environment:\t<none>")
	} else {
		d.line(l, "Environment:")
		for _, e := range env {
			d.line(l+1, "%s", e)
		}
	}
}

func containerState(d *describer, s corev1.ContainerState) string {
	switch {
	case s.Running != nil:
		return "Running (started " + d.time(s.Running.StartedAt) + ")"
	case s.Waiting != nil:
		return strings.TrimSpace("Waiting " + s.Waiting.Reason)
	case s.Terminated != nil:
		t := s.Terminated
		return fmt.Sprintf("Terminated %s (exit code %d, finished %s)", t.Reason, t.ExitCode, d.time(t.FinishedAt))
	}
	return "Waiting"
}

func describeTemplate(d *describer, t *corev1.PodTemplateSpec) {
	d.line(0, "Pod Template:")
	d.multiline(1, "Labels", formatMap(t.Labels, "="))
	if len(t.Annotations) > 0 {
		d.multiline(1, "Annotations", formatMap(t.Annotations, ": "))
	}
	if t.Spec.PriorityClassName != "" {
		d.line(1, "Priority Class Name:\t%s", t.Spec.PriorityClassName)
	}
	d.line(1, "Containers:")
	for _, c := range t.Spec.Containers {
		describeContainer(d, 2, c, nil)
	}
}

func describeDeployment(d *describer, dep *appsv1.Deployment) {
	st := dep.Status
	d.line(0, "Selector:\t%s", metav1.FormatLabelSelector(dep.Spec.Selector))
	d.line(0, "Replicas:\t%d desired | %d updated | %d total | %d available | %d unavailable",
		replicas(dep.Spec.Replicas), st.UpdatedReplicas, st.Replicas, st.AvailableReplicas, st.UnavailableReplicas)
	d.line(0, "StrategyType:\t%s", dep.Spec.Strategy.Type)
	d.line(0, "MinReadySeconds:\t%d", dep.Spec.MinReadySeconds)
	if ru := dep.Spec.Strategy.RollingUpdate; ru != nil && ru.MaxUnavailable != nil && ru.MaxSurge != nil {
		d.line(0, "RollingUpdateStrategy:\t%s max unavailable, %s max surge", ru.MaxUnavailable.String(), ru.MaxSurge.String())
	}
	describeTemplate(d, &dep.Spec.Template)
	if len(st.Conditions) > 0 {
		d.line(0, "Conditions:")
		d.line(1, "Type\tStatus\tReason")
		d.line(1, "----\t------\t------")
		for _, c := range st.Conditions {
			d.line(1, "%s\t%s\t%s", c.Type, c.Status, c.Reason)
		}
	}
	describeDeploymentReplicaSets(d, dep)
}

func describeService(d *describer, o api.Object) {
	svc := o.(*corev1.Service)
	d.line(0, "Selector:\t%s", formatLabels(svc.Spec.Selector))
	d.line(0, "Type:\t%s", svc.Spec.Type)
	d.line(0, "IP:\t%s", orNone(svc.Spec.ClusterIP))
	for _, p := range svc.Spec.Ports {
		name := p.Name
		if name == "" {
			name = "<unset>"
		}
		d.line(0, "Port:\t%s\t%d/%s", name, p.Port, p.Protocol)
		d.line(0, "TargetPort:\t%s/%s", p.TargetPort.String(), p.Protocol)
		if p.NodePort != 0 {
			d.line(0, "NodePort:\t%s\t%d/%s", name, p.NodePort, p.Protocol)
		}
	}
	d.line(0, "Session Affinity:\t%s", orNone(string(svc.Spec.SessionAffinity)))
}

func describeEndpoints(d *describer, o api.Object) {
	ep := o.(*corev1.Endpoints)
	if len(ep.Subsets) == 0 {
		d.line(0, "Subsets:\t<none>")
		return
	}
	d.line(0, "Subsets:")
	for _, ss := range ep.Subsets {
		var ready, notReady []string
		for _, a := range ss.Addresses {
			ready = append(ready, a.IP)
		}
		for _, a := range ss.NotReadyAddresses {
			notReady = append(notReady, a.IP)
		}
		d.line(1, "Addresses:\t%s", orNone(strings.Join(ready, ",")))
		d.line(1, "NotReadyAddresses:\t%s", orNone(strings.Join(notReady, ",")))
		d.line(1, "Ports:")
		d.line(2, "Name\tPort\tProtocol")
		d.line(2, "----\t----\t--------")
		for _, p := range ss.Ports {
			d.line(2, "%s\t%d\t%s", orDefault(p.Name, "<unset>"), p.Port, p.Protocol)
		}
	}
}

func describeNode(d *describer, o api.Object) {
	n := o.(*corev1.Node)
	var taints []string
	for _, t := range n.Spec.Taints {
		s := t.Key
		if t.Value != "" {
			s += "=" + t.Value
		}
		taints = append(taints, s+":"+string(t.Effect))
	}
	d.multiline(0, "Taints", taints)
	d.line(0, "Unschedulable:\t%t", n.Spec.Unschedulable)
	d.line(0, "Conditions:")
	d.line(1, "Type\tStatus\tLastHeartbeatTime\tLastTransitionTime\tReason\tMessage")
	d.line(1, "----\t------\t-----------------\t------------------\t------\t-------")
	for _, c := range n.Status.Conditions {
		d.line(1, "%s\t%s\t%s\t%s\t%s\t%s", c.Type, c.Status, d.time(c.LastHeartbeatTime), d.time(c.LastTransitionTime), c.Reason, oneLine(c.Message))
	}
	d.line(0, "Addresses:")
	for _, a := range n.Status.Addresses {
		d.line(1, "%s:\t%s", a.Type, a.Address)
	}
	for _, sec := range []struct {
		title string
		list  corev1.ResourceList
	}{{"Capacity", n.Status.Capacity}, {"Allocatable", n.Status.Allocatable}} {
		d.line(0, "%s:", sec.title)
		for _, name := range sortedKeys(resourceMap(sec.list)) {
			q := sec.list[corev1.ResourceName(name)]
			d.line(1, "%s:\t%s", name, q.String())
		}
	}
	info := n.Status.NodeInfo
	d.line(0, "System Info:")
	d.line(1, "Kernel Version:\t%s", info.KernelVersion)
	d.line(1, "OS Image:\t%s", info.OSImage)
	d.line(1, "Operating System:\t%s", info.OperatingSystem)
	d.line(1, "Architecture:\t%s", info.Architecture)
	d.line(1, "Container Runtime Version:\t%s", info.ContainerRuntimeVersion)
	d.line(1, "Kubelet Version:\t%s", info.KubeletVersion)
	if n.Spec.PodCIDR != "" {
		d.line(0, "PodCIDR:\t%s", n.Spec.PodCIDR)
	}
	describeNodePods(d, n)
}

func resourceMap(l corev1.ResourceList) map[string]struct{} {
	m := make(map[string]struct{}, len(l))
	for k := range l {
		m[string(k)] = struct{}{}
	}
	return m
}

// boolWord is how kubectl describe prints a boolean condition.
func boolWord(b bool) string {
	if b {
		return "True"
	}
	return "False"
}
