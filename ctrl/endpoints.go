package ctrl

import (
	"context"
	"errors"
	"sort"
	"strconv"

	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"

	"orch.dev/orch/agent"
	"orch.dev/orch/api"
	"orch.dev/orch/fsm"
)

// endpointsController keeps one Endpoints object per Service with a
// selector: the pods the selector matches that have an IP, Ready ones under
// addresses and the others under notReadyAddresses, with the service's
// ports resolved against each pod (named target ports look up the pod's
// container ports). Services without a selector are left alone (their
// Endpoints are the user's). Keys are namespace/name of the Service.
type endpointsController struct {
	c Cluster
	// selectors finds the Services selecting a pod (list and keysFor only).
	selectors *serviceSelectors
}

func newEndpointsController(c Cluster) *controller {
	e := &endpointsController{c: c, selectors: newServiceSelectors()}
	return &controller{name: "endpoints", kinds: []*api.Kind{api.Service, api.Pod, api.Endpoints}, queue: newQueue(),
		list: e.list, keysFor: e.keysFor, reconcile: e.reconcile}
}

func (e *endpointsController) list(v *fsm.View, add func(string)) {
	e.selectors = newServiceSelectors()
	v.List(api.Service, "", func(r *fsm.Record) bool {
		key := nsKey(r.Obj.GetNamespace(), r.Obj.GetName())
		e.selectors.set(key, r.Obj.(*corev1.Service))
		add(key)
		return true
	})
	// Endpoints whose service is gone.
	v.List(api.Endpoints, "", func(r *fsm.Record) bool {
		if v.Get(api.Service, r.Obj.GetNamespace(), r.Obj.GetName()) == nil {
			add(nsKey(r.Obj.GetNamespace(), r.Obj.GetName()))
		}
		return true
	})
}

func (e *endpointsController) keysFor(ev fsm.Event, v *fsm.View, add func(string)) {
	obj := ev.Record.Obj
	switch ev.Record.Kind {
	case api.Service:
		key := nsKey(obj.GetNamespace(), obj.GetName())
		if ev.Type == fsm.Deleted {
			e.selectors.remove(key)
		} else {
			e.selectors.set(key, obj.(*corev1.Service))
		}
		add(key)
	case api.Endpoints:
		add(nsKey(obj.GetNamespace(), obj.GetName()))
	case api.Pod:
		// The services selecting the pod before or after the change.
		e.selectors.selecting(obj.GetNamespace(), obj.GetLabels(), add)
		if ev.Prev != nil {
			e.selectors.selecting(obj.GetNamespace(), ev.Prev.Obj.GetLabels(), add)
		}
	}
}

func (e *endpointsController) reconcile(ctx context.Context, key string) error {
	ns, name := splitKey(key)
	v := e.c.View()
	var svc *corev1.Service
	if r := v.Get(api.Service, ns, name); r != nil {
		svc = r.Obj.(*corev1.Service)
	}
	cur := v.Get(api.Endpoints, ns, name)
	if svc == nil || len(svc.Spec.Selector) == 0 {
		if svc == nil && cur != nil && ownedByController(cur.Obj) {
			res, err := e.c.Delete(ctx, api.Endpoints, ns, name, agent.DeleteOptions{UID: string(cur.Obj.GetUID())})
			if err == nil && res.Err != nil && !errors.Is(res.Err, fsm.ErrNotFound) {
				err = res.Err
			}
			return err
		}
		return nil
	}
	want := &corev1.Endpoints{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name,
		Labels: map[string]string{}, Annotations: map[string]string{endpointsManagedBy: "endpoint-controller"}}}
	for k, val := range svc.Labels {
		want.Labels[k] = val
	}
	want.Subsets = endpointSubsets(svc, selectedPods(v, svc))
	api.Endpoints.SetTypeMeta(want)
	if cur == nil {
		_, err := e.c.Create(ctx, want)
		return err
	}
	have := cur.Obj.(*corev1.Endpoints)
	if apiequality.Semantic.DeepEqual(have.Subsets, want.Subsets) && apiequality.Semantic.DeepEqual(have.Labels, want.Labels) &&
		have.Annotations[endpointsManagedBy] != "" {
		return nil
	}
	next := have.DeepCopy()
	next.Subsets, next.Labels = want.Subsets, want.Labels
	if next.Annotations == nil {
		next.Annotations = map[string]string{}
	}
	next.Annotations[endpointsManagedBy] = "endpoint-controller"
	_, err := e.c.Update(ctx, next, false)
	return err
}

// endpointsManagedBy marks the Endpoints this controller maintains, so that
// it deletes only those when their Service goes.
const endpointsManagedBy = "orch.dev/managed-by"

func ownedByController(obj api.Object) bool { return obj.GetAnnotations()[endpointsManagedBy] != "" }

func selectedPods(v *fsm.View, svc *corev1.Service) []*corev1.Pod {
	sel := labels.SelectorFromSet(svc.Spec.Selector)
	var out []*corev1.Pod
	v.List(api.Pod, svc.Namespace, func(r *fsm.Record) bool {
		p := r.Obj.(*corev1.Pod)
		if sel.Matches(labels.Set(p.Labels)) && p.Status.PodIP != "" && p.DeletionTimestamp == nil &&
			p.Status.Phase != corev1.PodSucceeded && p.Status.Phase != corev1.PodFailed {
			out = append(out, p)
		}
		return true
	})
	return out
}

// endpointSubsets groups the pods by the ports they resolve to, sorted so
// that the same pods always give the same object.
func endpointSubsets(svc *corev1.Service, pods []*corev1.Pod) []corev1.EndpointSubset {
	type group struct {
		ports           []corev1.EndpointPort
		ready, notReady []corev1.EndpointAddress
	}
	groups := map[string]*group{}
	var order []string
	for _, p := range pods {
		ports, ok := resolvePorts(svc, p)
		if !ok {
			continue
		}
		key := portsKey(ports)
		g := groups[key]
		if g == nil {
			g = &group{ports: ports}
			groups[key] = g
			order = append(order, key)
		}
		addr := corev1.EndpointAddress{IP: p.Status.PodIP, NodeName: nodeNamePtr(p.Spec.NodeName),
			TargetRef: &corev1.ObjectReference{Kind: "Pod", Namespace: p.Namespace, Name: p.Name, UID: p.UID}}
		if p.Spec.Hostname != "" && p.Spec.Subdomain == svc.Name {
			// DNS names headless endpoints <hostname>.<svc>.<ns>.svc.
			addr.Hostname = p.Spec.Hostname
		}
		if podReady(p) || svc.Spec.PublishNotReadyAddresses {
			g.ready = append(g.ready, addr)
		} else {
			g.notReady = append(g.notReady, addr)
		}
	}
	sort.Strings(order)
	var out []corev1.EndpointSubset
	for _, key := range order {
		g := groups[key]
		byIP := func(a []corev1.EndpointAddress) {
			sort.Slice(a, func(i, j int) bool {
				return a[i].IP < a[j].IP || (a[i].IP == a[j].IP && a[i].TargetRef.Name < a[j].TargetRef.Name)
			})
		}
		byIP(g.ready)
		byIP(g.notReady)
		out = append(out, corev1.EndpointSubset{Addresses: g.ready, NotReadyAddresses: g.notReady, Ports: g.ports})
	}
	return out
}

// resolvePorts maps the service's ports onto the pod; a named target port
// the pod does not declare drops that port (ok is false if none is left).
func resolvePorts(svc *corev1.Service, p *corev1.Pod) ([]corev1.EndpointPort, bool) {
	var out []corev1.EndpointPort
	for _, sp := range svc.Spec.Ports {
		port, ok := targetPort(sp.TargetPort, sp.Port, sp.Protocol, p)
		if !ok {
			continue
		}
		out = append(out, corev1.EndpointPort{Name: sp.Name, Port: port, Protocol: sp.Protocol, AppProtocol: sp.AppProtocol})
	}
	return out, len(out) > 0 || len(svc.Spec.Ports) == 0
}

func targetPort(tp intstr.IntOrString, servicePort int32, proto corev1.Protocol, p *corev1.Pod) (int32, bool) {
	switch {
	case tp.Type == intstr.String && tp.StrVal != "":
		for _, c := range p.Spec.Containers {
			for _, cp := range c.Ports {
				if cp.Name == tp.StrVal && (cp.Protocol == proto || (cp.Protocol == "" && proto == corev1.ProtocolTCP)) {
					return cp.ContainerPort, true
				}
			}
		}
		return 0, false
	case tp.Type == intstr.Int && tp.IntVal != 0:
		return tp.IntVal, true
	}
	return servicePort, true
}

func portsKey(ports []corev1.EndpointPort) string {
	s := ""
	for _, p := range ports {
		s += p.Name + ":" + strconv.Itoa(int(p.Port)) + "/" + string(p.Protocol) + ","
	}
	return s
}

func nodeNamePtr(n string) *string {
	if n == "" {
		return nil
	}
	return &n
}
