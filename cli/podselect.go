package cli

import (
	"fmt"
	"sort"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	"orch.dev/orch/api"
	"orch.dev/orch/api/client"
)

// defaultContainerAnnotation names the container logs and exec use when
// none is given (kubectl's, so the same manifests work).
const defaultContainerAnnotation = "kubectl.kubernetes.io/default-container"

// podFor resolves the POD argument of logs and exec as kubectl does: NAME
// or pod/NAME, or TYPE/NAME of a deployment, replica set, daemon set or
// service, for which the most available of its pods is used (bound,
// running, ready the longest, fewest restarts, oldest). n is how many pods
// there were to choose from.
func (e *env) podFor(cl *client.Client, ns, arg string) (pod *corev1.Pod, n int, err error) {
	typ, name, found := strings.Cut(arg, "/")
	if !found {
		typ, name = "pods", arg
	}
	if name == "" {
		return nil, 0, fmt.Errorf("%q: the name after / is empty", arg)
	}
	k, err := api.KindForResource(typ)
	if err != nil {
		return nil, 0, err
	}
	obj, err := cl.Get(e.ctx, k, ns, name, false)
	if err != nil {
		return nil, 0, err
	}
	var sel labels.Selector
	switch o := obj.(type) {
	case *corev1.Pod:
		return o, 1, nil
	case *appsv1.Deployment:
		sel, err = metav1.LabelSelectorAsSelector(o.Spec.Selector)
	case *appsv1.ReplicaSet:
		sel, err = metav1.LabelSelectorAsSelector(o.Spec.Selector)
	case *appsv1.DaemonSet:
		sel, err = metav1.LabelSelectorAsSelector(o.Spec.Selector)
	case *corev1.Service:
		if len(o.Spec.Selector) == 0 {
			return nil, 0, fmt.Errorf("service %s has no selector, so no pods", name)
		}
		sel = labels.SelectorFromSet(o.Spec.Selector)
	default:
		return nil, 0, fmt.Errorf("cannot choose a pod of %s: only deployments, replica sets, daemon sets and services select pods", objectRef(k, name))
	}
	if err != nil {
		return nil, 0, fmt.Errorf("%s: %w", objectRef(k, name), err)
	}
	list, err := cl.ListAll(e.ctx, api.Pod, ns, client.ListOptions{LabelSelector: sel.String()})
	if err != nil {
		return nil, 0, err
	}
	if len(list.Items) == 0 {
		return nil, 0, fmt.Errorf("no pods found for %s", objectRef(k, name))
	}
	pods := make([]*corev1.Pod, len(list.Items))
	for i, o := range list.Items {
		pods[i] = o.(*corev1.Pod)
	}
	sort.SliceStable(pods, func(i, j int) bool { return moreAvailable(pods[i], pods[j]) })
	return pods[0], len(pods), nil
}

// moreAvailable orders pods as kubectl's GetFirstPod does (the reverse of
// its ActivePods order), with terminating pods last.
func moreAvailable(a, b *corev1.Pod) bool {
	if (a.DeletionTimestamp == nil) != (b.DeletionTimestamp == nil) {
		return a.DeletionTimestamp == nil
	}
	if (a.Spec.NodeName != "") != (b.Spec.NodeName != "") {
		return a.Spec.NodeName != ""
	}
	rank := map[corev1.PodPhase]int{corev1.PodPending: 0, corev1.PodUnknown: 1, corev1.PodRunning: 2}
	if ra, rb := rank[a.Status.Phase], rank[b.Status.Phase]; ra != rb {
		return ra > rb
	}
	ta, readyA := readySince(a)
	tb, readyB := readySince(b)
	if readyA != readyB {
		return readyA
	}
	if readyA && !ta.Equal(&tb) {
		return ta.Before(&tb)
	}
	if ra, rb := restarts(a), restarts(b); ra != rb {
		return ra < rb
	}
	return a.CreationTimestamp.Before(&b.CreationTimestamp)
}

func readySince(p *corev1.Pod) (metav1.Time, bool) {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.LastTransitionTime, c.Status == corev1.ConditionTrue
		}
	}
	return metav1.Time{}, false
}

func restarts(p *corev1.Pod) int32 {
	var n int32
	for _, cs := range p.Status.ContainerStatuses {
		n += cs.RestartCount
	}
	return n
}

// podContainer chooses the container as kubectl does: the one named, else
// the one the default-container annotation names, else the first, saying
// so on warn when there were others to choose from (unless quiet).
func podContainer(pod *corev1.Pod, name string, quiet bool, warn func(string)) (string, error) {
	if len(pod.Spec.Containers) == 0 {
		return "", fmt.Errorf("pod %s/%s does not have any containers", pod.Namespace, pod.Name)
	}
	if name == "" {
		name = pod.Annotations[defaultContainerAnnotation]
	}
	if name != "" {
		if !hasContainer(pod, name) {
			return "", fmt.Errorf("container %s is not valid for pod %s out of: %s", name, pod.Name, allContainerNames(pod))
		}
		return name, nil
	}
	first := pod.Spec.Containers[0].Name
	if !quiet && (len(pod.Spec.Containers) > 1 || len(pod.Spec.InitContainers) > 0 || len(pod.Spec.EphemeralContainers) > 0) {
		warn(fmt.Sprintf("Defaulted container %q out of: %s", first, allContainerNames(pod)))
	}
	return first, nil
}

func hasContainer(pod *corev1.Pod, name string) bool {
	for _, c := range pod.Spec.Containers {
		if c.Name == name {
			return true
		}
	}
	for _, c := range pod.Spec.InitContainers {
		if c.Name == name {
			return true
		}
	}
	for _, c := range pod.Spec.EphemeralContainers {
		if c.Name == name {
			return true
		}
	}
	return false
}

// allContainerNames is kubectl's list: "web, sidecar, debug (ephem), setup (init)".
func allContainerNames(pod *corev1.Pod) string {
	var names []string
	for _, c := range pod.Spec.Containers {
		names = append(names, c.Name)
	}
	for _, c := range pod.Spec.EphemeralContainers {
		names = append(names, c.Name+" (ephem)")
	}
	for _, c := range pod.Spec.InitContainers {
		names = append(names, c.Name+" (init)")
	}
	return strings.Join(names, ", ")
}
