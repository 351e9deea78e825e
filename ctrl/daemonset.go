package ctrl

import (
	"context"
	"sort"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"

	"orch.dev/orch/api"
	"orch.dev/orch/fsm"
	"orch.dev/orch/sched/fit"
)

// revisionHashLabel tells a DaemonSet's pods of the current template
// (the label's value is its hash) from older ones.
const revisionHashLabel = appsv1.ControllerRevisionHashLabelKey // "controller-revision-hash"

// daemonTolerations are the tolerations Kubernetes gives every DaemonSet
// pod: it stays on a node that is not ready or unreachable, and it is
// placed despite pressure and cordoning (it is the node's own agent).
var daemonTolerations = []corev1.Toleration{
	{Key: corev1.TaintNodeNotReady, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute},
	{Key: corev1.TaintNodeUnreachable, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute},
	{Key: corev1.TaintNodeDiskPressure, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoSchedule},
	{Key: corev1.TaintNodeMemoryPressure, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoSchedule},
	{Key: corev1.TaintNodePIDPressure, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoSchedule},
	{Key: corev1.TaintNodeUnschedulable, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoSchedule},
}

// daemonSets runs one pod of each DaemonSet on every node its template
// may run on. Pods are not bound here: each is pinned to its node with a
// required node affinity on metadata.name and the scheduler places it,
// as in Kubernetes.
type daemonSets struct {
	c   Cluster
	rec *recorder
	q   *queue
}

func newDaemonSetController(c Cluster, rec *recorder) *controller {
	r := &daemonSets{c: c, rec: rec, q: newQueue()}
	return &controller{name: "daemonset", kinds: []*api.Kind{api.DaemonSet, api.Pod, api.Node}, queue: r.q,
		list: r.list, keysFor: r.keysFor, reconcile: r.reconcile}
}

func (r *daemonSets) list(v *fsm.View, add func(string)) {
	v.List(api.DaemonSet, "", func(rec *fsm.Record) bool {
		add(rec.Key)
		return true
	})
}

func (r *daemonSets) keysFor(ev fsm.Event, v *fsm.View, add func(string)) {
	switch ev.Record.Kind {
	case api.DaemonSet:
		add(ev.Record.Key)
	case api.Node:
		if ev.Type == fsm.Modified {
			a, b := ev.Prev.Obj.(*corev1.Node), ev.Record.Obj.(*corev1.Node)
			if labels.Equals(a.Labels, b.Labels) && apiequality.Semantic.DeepEqual(a.Spec.Taints, b.Spec.Taints) {
				return
			}
		}
		r.list(v, add)
	case api.Pod:
		pod := ev.Record.Obj.(*corev1.Pod)
		if ref := metav1.GetControllerOf(pod); ref != nil {
			if ref.Kind == api.DaemonSet.Kind {
				add(nsKey(pod.Namespace, ref.Name))
			}
			return
		}
		if ev.Type == fsm.Deleted || pod.DeletionTimestamp != nil {
			return
		}
		v.List(api.DaemonSet, pod.Namespace, func(rec *fsm.Record) bool {
			ds := rec.Obj.(*appsv1.DaemonSet)
			if sel, err := metav1.LabelSelectorAsSelector(ds.Spec.Selector); err == nil && !sel.Empty() && sel.Matches(labels.Set(pod.Labels)) {
				add(rec.Key)
			}
			return true
		})
	}
}

// daemonState is one DaemonSet and its pods by node, from one view.
type daemonState struct {
	ds     *appsv1.DaemonSet
	hash   string
	nodes  []*corev1.Node // by name
	byNode map[string][]*corev1.Pod
	failed []*corev1.Pod
}

func (r *daemonSets) reconcile(ctx context.Context, key string) error {
	ns, name := splitKey(key)
	v := r.c.View()
	rec := v.Get(api.DaemonSet, ns, name)
	if rec == nil {
		return nil
	}
	ds := rec.Obj.(*appsv1.DaemonSet)
	sel, err := metav1.LabelSelectorAsSelector(ds.Spec.Selector)
	if err != nil || sel.Empty() {
		return nil
	}
	pods, _, err := claimPods(ctx, r.c, v, ds, api.DaemonSet, sel)
	if err != nil {
		return err
	}
	s := observeDaemons(v, ds, pods)
	if ds.DeletionTimestamp == nil {
		changed, err := r.manage(ctx, v, s)
		if err != nil {
			return err
		}
		if !changed && ds.Spec.UpdateStrategy.Type == appsv1.RollingUpdateDaemonSetStrategyType {
			if err := r.rollingUpdate(ctx, v, s); err != nil {
				return err
			}
		}
	}
	return r.syncStatus(ctx, key, ds)
}

func observeDaemons(v *fsm.View, ds *appsv1.DaemonSet, pods []*corev1.Pod) *daemonState {
	s := &daemonState{ds: ds, hash: templateHash(&ds.Spec.Template, ds.Status.CollisionCount), byNode: map[string][]*corev1.Pod{}}
	v.List(api.Node, "", func(rec *fsm.Record) bool {
		s.nodes = append(s.nodes, rec.Obj.(*corev1.Node))
		return true
	})
	for _, p := range pods {
		switch {
		case p.Status.Phase == corev1.PodFailed && p.DeletionTimestamp == nil:
			s.failed = append(s.failed, p) // deleted, then replaced
		case podActive(p):
			node := targetNode(p)
			s.byNode[node] = append(s.byNode[node], p)
		}
	}
	for _, ps := range s.byNode {
		sort.Slice(ps, func(i, j int) bool {
			if !ps[i].CreationTimestamp.Equal(&ps[j].CreationTimestamp) {
				return ps[i].CreationTimestamp.Before(&ps[j].CreationTimestamp)
			}
			return ps[i].Name < ps[j].Name
		})
	}
	return s
}

// targetNode is the node a daemon pod is bound or pinned to.
func targetNode(p *corev1.Pod) string {
	if p.Spec.NodeName != "" {
		return p.Spec.NodeName
	}
	a := p.Spec.Affinity
	if a == nil || a.NodeAffinity == nil || a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution == nil {
		return ""
	}
	for _, t := range a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms {
		for _, f := range t.MatchFields {
			if f.Key == metav1.ObjectNameField && f.Operator == corev1.NodeSelectorOpIn && len(f.Values) == 1 {
				return f.Values[0]
			}
		}
	}
	return ""
}

// shouldRun is Kubernetes' NodeShouldRunDaemonPod: run says a pod should
// be placed on the node, keep that one already there may stay (it
// tolerates the node's NoExecute taints, if not its NoSchedule ones).
func shouldRun(ds *appsv1.DaemonSet, node *corev1.Node) (run, keep bool) {
	pod := &corev1.Pod{ObjectMeta: ds.Spec.Template.ObjectMeta, Spec: *ds.Spec.Template.Spec.DeepCopy()}
	pod.Namespace = ds.Namespace
	addDaemonTolerations(&pod.Spec)
	if n := pod.Spec.NodeName; n != "" && n != node.Name {
		return false, false
	}
	if !fit.MatchesNodeSelector(pod, node) {
		return false, false
	}
	if _, untolerated := fit.UntoleratedTaint(pod, node); !untolerated {
		return true, true
	}
	for i := range node.Spec.Taints {
		t := &node.Spec.Taints[i]
		if t.Effect == corev1.TaintEffectNoExecute && !fit.Tolerates(pod, t) {
			return false, false
		}
	}
	return false, true
}

// addDaemonTolerations is Kubernetes' AddOrUpdateDaemonPodTolerations.
func addDaemonTolerations(spec *corev1.PodSpec) {
	for _, want := range daemonTolerations {
		found := false
		for i := range spec.Tolerations {
			if want.MatchToleration(&spec.Tolerations[i]) {
				spec.Tolerations[i] = want
				found = true
			}
		}
		if !found {
			spec.Tolerations = append(spec.Tolerations, want)
		}
	}
}

// pinToNode is Kubernetes' ReplaceDaemonSetPodNodeNameNodeAffinity: the
// pod's required node affinity becomes "metadata.name In [node]" (the
// template's own constraints were checked by shouldRun).
func pinToNode(a *corev1.Affinity, node string) *corev1.Affinity {
	sel := &corev1.NodeSelector{NodeSelectorTerms: []corev1.NodeSelectorTerm{{MatchFields: []corev1.NodeSelectorRequirement{
		{Key: metav1.ObjectNameField, Operator: corev1.NodeSelectorOpIn, Values: []string{node}}}}}}
	if a == nil {
		a = &corev1.Affinity{}
	}
	if a.NodeAffinity == nil {
		a.NodeAffinity = &corev1.NodeAffinity{}
	}
	a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution = sel
	return a
}

// manage creates the missing daemon pods and deletes those that must go:
// on nodes that no longer qualify or exist, extras, and failed ones.
func (r *daemonSets) manage(ctx context.Context, v *fsm.View, s *daemonState) (bool, error) {
	var create []string
	del := append([]*corev1.Pod(nil), s.failed...)
	exists := map[string]bool{}
	surge, _ := r.fenceposts(s)
	for _, node := range s.nodes {
		exists[node.Name] = true
		run, keep := shouldRun(s.ds, node)
		ps := s.byNode[node.Name]
		switch {
		case run && len(ps) == 0:
			create = append(create, node.Name)
		case !keep:
			del = append(del, ps...)
		case len(ps) > 1:
			del = append(del, extraDaemons(s, ps, surge)...)
		}
	}
	for node, ps := range s.byNode {
		if !exists[node] {
			del = append(del, ps...)
		}
	}
	if err := r.createOn(ctx, v, s, create); err != nil {
		return true, err
	}
	if len(del) > 0 {
		n, err := deletePods(ctx, r.c, del, nil)
		if n > 0 {
			r.rec.event(api.DaemonSet, s.ds, corev1.EventTypeNormal, daemonSetComponent, "SuccessfulDelete", "%s", countedPods("Deleted", n, del[0].Name))
		}
		if err != nil {
			return true, err
		}
	}
	return len(create)+len(del) > 0, nil
}

// extraDaemons picks the pods to delete when a node has several: the
// oldest updated pod stays, and while it is not available (surge) the
// oldest old one too.
func extraDaemons(s *daemonState, ps []*corev1.Pod, surge int) []*corev1.Pod {
	var updated, old []*corev1.Pod
	for _, p := range ps {
		if p.Labels[revisionHashLabel] == s.hash {
			updated = append(updated, p)
		} else {
			old = append(old, p)
		}
	}
	var keep []*corev1.Pod
	switch {
	case len(updated) == 0:
		keep = old[:1]
	case surge > 0 && len(old) > 0 && !podAvailable(updated[0], s.ds.Spec.MinReadySeconds, time.Now()):
		keep = []*corev1.Pod{updated[0], old[0]}
	default:
		keep = updated[:1]
	}
	var del []*corev1.Pod
	for _, p := range ps {
		if p != keep[0] && (len(keep) == 1 || p != keep[1]) {
			del = append(del, p)
		}
	}
	return del
}

func (r *daemonSets) createOn(ctx context.Context, v *fsm.View, s *daemonState, nodes []string) error {
	if len(nodes) == 0 {
		return nil
	}
	prefix := s.ds.Name + "-"
	ref := newControllerRef(s.ds, api.DaemonSet)
	names := podNames(v, s.ds.Namespace, prefix, len(nodes))
	pods := make([]*corev1.Pod, len(nodes))
	for i, node := range nodes {
		p := podFromTemplate(&s.ds.Spec.Template, s.ds.Namespace, names[i], prefix, ref)
		p.Labels[revisionHashLabel] = s.hash
		addDaemonTolerations(&p.Spec)
		p.Spec.Affinity = pinToNode(p.Spec.Affinity, node)
		pods[i] = p
	}
	n, err := createPods(ctx, r.c, len(pods), func(i int) *corev1.Pod { return pods[i] })
	if n > 0 {
		r.rec.event(api.DaemonSet, s.ds, corev1.EventTypeNormal, daemonSetComponent, "SuccessfulCreate", "%s", countedPods("Created", n, pods[0].Name))
	}
	if err != nil && ctx.Err() == nil {
		r.rec.event(api.DaemonSet, s.ds, corev1.EventTypeWarning, daemonSetComponent, "FailedCreate", "Error creating: %v", err)
	}
	return err
}

// fenceposts resolves maxSurge and maxUnavailable against the number of
// nodes that should run a pod; both round up, and if both are zero one
// pod may be unavailable (Kubernetes' daemonset util).
func (r *daemonSets) fenceposts(s *daemonState) (surge, unavailable int) {
	ru := s.ds.Spec.UpdateStrategy.RollingUpdate
	if ru == nil {
		return 0, 1
	}
	desired := 0
	for _, node := range s.nodes {
		if run, _ := shouldRun(s.ds, node); run {
			desired++
		}
	}
	zero, one := intstr.FromInt32(0), intstr.FromInt32(1)
	ms, mu := ru.MaxSurge, ru.MaxUnavailable
	if ms == nil {
		ms = &zero
	}
	if mu == nil {
		mu = &one
	}
	surge, err1 := intstr.GetScaledValueFromIntOrPercent(ms, desired, true)
	unavailable, err2 := intstr.GetScaledValueFromIntOrPercent(mu, desired, true)
	if err1 != nil || err2 != nil {
		return 0, 1
	}
	if surge == 0 && unavailable == 0 {
		unavailable = 1
	}
	return surge, unavailable
}
