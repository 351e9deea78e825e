package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/urfave/cli/v2"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	utilerrors "k8s.io/apimachinery/pkg/util/errors"

	"orch.dev/orch/api"
	"orch.dev/orch/api/client"
)

// evictionRetry is how long drain waits before retrying an eviction the
// server refused (429: the pod's Deployment cannot lose another replica
// yet). Tests shorten it.
var evictionRetry = time.Second

func drainCommand(e *env) *cli.Command {
	return &cli.Command{
		Name:      "drain",
		Usage:     "cordon a node and evict its pods, respecting their deployments' availability",
		ArgsUsage: "NODE",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "ignore-daemonsets", Value: true, Usage: "leave DaemonSet-managed pods in place (--ignore-daemonsets=false refuses to drain a node that has them)"},
			&cli.BoolFlag{Name: "delete-emptydir-data", Usage: "evict pods with emptyDir volumes (their data is lost)"},
			&cli.BoolFlag{Name: "force", Usage: "also evict pods no controller manages (they are not recreated)"},
			&cli.IntFlag{Name: "grace-period", Value: -1, Usage: "`SECONDS` each pod gets to stop (-1: the pod's own terminationGracePeriodSeconds)"},
			&cli.DurationFlag{Name: "timeout", Usage: "give up after `DURATION` (e.g. 5m; 0 waits for ever)"},
		},
		Action: e.drain,
	}
}

// drainOptions are the flags that decide which pods drain may evict.
type drainOptions struct {
	ignoreDaemonSets, deleteEmptyDirData, force bool
}

// kubectl's messages about the pods drain will not (or will only with a
// flag) evict, in the order they are reported.
const (
	daemonSetFatal      = "DaemonSet-managed Pods (use --ignore-daemonsets to ignore)"
	daemonSetWarning    = "ignoring DaemonSet-managed Pods"
	localStorageFatal   = "Pods with local storage (use --delete-emptydir-data to override)"
	localStorageWarning = "deleting Pods with local storage"
	unmanagedFatal      = "Pods declare no controller (use --force to override)"
	unmanagedWarning    = "deleting Pods that declare no controller"
)

var drainMessageOrder = []string{daemonSetFatal, daemonSetWarning, localStorageFatal, localStorageWarning, unmanagedFatal, unmanagedWarning}

// drainPlan is what drain does with a node's pods.
type drainPlan struct {
	evict    []*corev1.Pod
	warnings string   // "ignoring DaemonSet-managed Pods: kube-system/agent-x; ..."
	errs     []string // "cannot delete Pods declare no controller (use --force to override): default/bare"
}

// planDrain classifies the pods on a node as kubectl drain does: DaemonSet
// pods stay (their controller would put them back), mirror pods stay, and
// pods with emptyDir data or without a controller are evicted only when the
// flags allow it. Finished pods are always evicted.
func planDrain(pods []*corev1.Pod, o drainOptions) drainPlan {
	byMsg := map[string][]string{}
	note := func(msg string, pod *corev1.Pod) {
		byMsg[msg] = append(byMsg[msg], pod.Namespace+"/"+pod.Name)
	}
	var plan drainPlan
	for _, pod := range pods {
		if _, mirror := pod.Annotations[corev1.MirrorPodAnnotationKey]; mirror {
			continue
		}
		finished := pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed
		ref := metav1.GetControllerOf(pod)
		if !finished && ref != nil && ref.Kind == "DaemonSet" {
			if o.ignoreDaemonSets {
				note(daemonSetWarning, pod)
			} else {
				note(daemonSetFatal, pod)
			}
			continue
		}
		if !finished && hasEmptyDir(pod) {
			if !o.deleteEmptyDirData {
				note(localStorageFatal, pod)
				continue
			}
			note(localStorageWarning, pod)
		}
		if !finished && ref == nil {
			if !o.force {
				note(unmanagedFatal, pod)
				continue
			}
			note(unmanagedWarning, pod)
		}
		plan.evict = append(plan.evict, pod)
	}
	var warnings []string
	for _, msg := range drainMessageOrder {
		list, ok := byMsg[msg]
		if !ok {
			continue
		}
		switch msg {
		case daemonSetFatal, localStorageFatal, unmanagedFatal:
			plan.errs = append(plan.errs, fmt.Sprintf("cannot delete %s: %s", msg, strings.Join(list, ", ")))
		default:
			warnings = append(warnings, fmt.Sprintf("%s: %s", msg, strings.Join(list, ", ")))
		}
	}
	plan.warnings = strings.Join(warnings, "; ")
	return plan
}

func hasEmptyDir(pod *corev1.Pod) bool {
	for _, v := range pod.Spec.Volumes {
		if v.EmptyDir != nil {
			return true
		}
	}
	return false
}

// drainer evicts the pods of one node.
type drainer struct {
	e       *env
	cl      *client.Client
	node    string
	grace   int
	timeout time.Duration
	pods    *podTracker
	mu      sync.Mutex // serialises output from the per-pod goroutines
}

func (d *drainer) out(format string, args ...any) {
	d.mu.Lock()
	defer d.mu.Unlock()
	fmt.Fprintf(d.e.stdout, format, args...)
}

func (d *drainer) errOut(format string, args ...any) {
	d.mu.Lock()
	defer d.mu.Unlock()
	fmt.Fprintf(d.e.stderr, format, args...)
}

func (e *env) drain(c *cli.Context) error {
	if c.NArg() != 1 {
		return errors.New("drain takes exactly one NODE")
	}
	name, err := nodeName(c.Args().First())
	if err != nil {
		return err
	}
	cl, err := e.client(c)
	if err != nil {
		return err
	}
	ctx, timeout := e.ctx, c.Duration("timeout")
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	obj, err := cl.Get(ctx, api.Node, "", name, false)
	if err != nil {
		return err
	}
	verb, err := setUnschedulable(ctx, cl, obj.(*corev1.Node), true)
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "node/%s %s\n", name, verb)

	list, err := cl.ListAll(ctx, api.Pod, "", client.ListOptions{FieldSelector: "spec.nodeName=" + name})
	if err != nil {
		return err
	}
	pods := make([]*corev1.Pod, 0, len(list.Items))
	for _, o := range list.Items {
		pods = append(pods, o.(*corev1.Pod))
	}
	plan := planDrain(pods, drainOptions{ignoreDaemonSets: c.Bool("ignore-daemonsets"),
		deleteEmptyDirData: c.Bool("delete-emptydir-data"), force: c.Bool("force")})
	if len(plan.errs) > 0 {
		return fmt.Errorf("unable to drain node %q due to error: %s", name, strings.Join(plan.errs, ", "))
	}
	if plan.warnings != "" {
		fmt.Fprintf(e.stderr, "Warning: %s\n", plan.warnings)
	}
	if len(plan.evict) > 0 {
		// Watch the node's pods from the listed state on, so that no
		// deletion confirmed after the list is missed.
		wctx, stop := context.WithCancel(ctx)
		defer stop()
		w, err := cl.Watch(wctx, api.Pod, "", client.ListOptions{FieldSelector: "spec.nodeName=" + name, ResourceVersion: list.ResourceVersion})
		if err != nil {
			return err
		}
		defer w.Stop()
		d := &drainer{e: e, cl: cl, node: name, grace: c.Int("grace-period"), timeout: timeout, pods: trackPods(pods, w)}
		errs := make([]error, len(plan.evict))
		var wg sync.WaitGroup
		for i, pod := range plan.evict {
			wg.Add(1)
			go func() {
				defer wg.Done()
				errs[i] = d.evictAndWait(ctx, pod)
			}()
		}
		wg.Wait()
		if e.ctx.Err() != nil {
			return exitCode(130) // interrupted
		}
		if err := utilerrors.NewAggregate(errs); err != nil {
			return fmt.Errorf("unable to drain node %q due to error: %s", name, err.Error())
		}
	}
	fmt.Fprintf(e.stdout, "node/%s drained\n", name)
	return nil
}

// evictAndWait evicts pod, retrying while the server refuses, then waits
// until it is gone from the node.
func (d *drainer) evictAndWait(ctx context.Context, pod *corev1.Pod) error {
	d.out("evicting pod %s/%s\n", pod.Namespace, pod.Name)
	warned := false
	for {
		err := d.evictOnce(ctx, pod)
		var se *apierrors.StatusError
		isStatus := errors.As(err, &se)
		switch {
		case err == nil:
		case apierrors.IsNotFound(err), apierrors.IsConflict(err):
			return nil // already gone, or replaced by a pod of the same name
		case ctx.Err() != nil:
			return fmt.Errorf("error when evicting pods/%q -n %q: global timeout reached: %s", pod.Name, pod.Namespace, d.timeout)
		case apierrors.IsTooManyRequests(err):
			if !warned {
				d.errOut("error when evicting pods/%q -n %q (will retry after %s): %s\n", pod.Name, pod.Namespace, evictionRetry, se.ErrStatus.Message)
				warned = true
			}
		case !isStatus || apierrors.IsServiceUnavailable(err) || apierrors.IsServerTimeout(err) || apierrors.IsTimeout(err):
			// No server answered, or no leader yet: try again.
		default:
			return fmt.Errorf("error when evicting pods/%q -n %q: %s", pod.Name, pod.Namespace, se.ErrStatus.Message)
		}
		if err == nil {
			break
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("error when evicting pods/%q -n %q: global timeout reached: %s", pod.Name, pod.Namespace, d.timeout)
		case <-time.After(evictionRetry):
		}
	}
	if err := d.pods.waitGone(ctx, pod); err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("error when waiting for pod %q in namespace %q to terminate: global timeout reached: %s", pod.Name, pod.Namespace, d.timeout)
		}
		return fmt.Errorf("error when waiting for pod %q in namespace %q to terminate: %v", pod.Name, pod.Namespace, err)
	}
	d.out("pod/%s evicted\n", pod.Name)
	return nil
}

// evictOnce posts one Eviction for pod (Kubernetes' policy/v1 Eviction
// subresource), conditional on the pod's UID.
func (d *drainer) evictOnce(ctx context.Context, pod *corev1.Pod) error {
	uid := pod.UID
	ev := policyv1.Eviction{
		TypeMeta:      metav1.TypeMeta{APIVersion: "policy/v1", Kind: "Eviction"},
		ObjectMeta:    metav1.ObjectMeta{Name: pod.Name, Namespace: pod.Namespace},
		DeleteOptions: &metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &uid}},
	}
	if d.grace >= 0 {
		g := int64(d.grace)
		ev.DeleteOptions.GracePeriodSeconds = &g
	}
	body, err := json.Marshal(ev)
	if err != nil {
		return err
	}
	_, err = d.cl.Do(ctx, client.Request{Method: http.MethodPost, Path: api.Pod.ObjectPath(pod.Namespace, pod.Name) + "/eviction", Body: body})
	return err
}

// podTracker knows which pods are on the node, from a watch.
type podTracker struct {
	mu      sync.Mutex
	present map[string]types.UID // namespace/name -> uid
	changed chan struct{}        // closed (and replaced) on every change
	err     error                // why the watch ended
}

func podKey(p *corev1.Pod) string { return p.Namespace + "/" + p.Name }

func trackPods(initial []*corev1.Pod, w *client.Watcher) *podTracker {
	t := &podTracker{present: map[string]types.UID{}, changed: make(chan struct{})}
	for _, p := range initial {
		t.present[podKey(p)] = p.UID
	}
	go func() {
		for ev := range w.Events() {
			pod := ev.Object.(*corev1.Pod)
			t.mu.Lock()
			if ev.Type == client.Deleted {
				delete(t.present, podKey(pod))
			} else {
				t.present[podKey(pod)] = pod.UID
			}
			close(t.changed)
			t.changed = make(chan struct{})
			t.mu.Unlock()
		}
		t.mu.Lock()
		t.err = w.Err()
		if t.err == nil {
			t.err = errors.New("the watch of the node's pods ended")
		}
		close(t.changed)
		t.mu.Unlock()
	}()
	return t
}

// waitGone waits until pod (this UID) is no longer on the node.
func (t *podTracker) waitGone(ctx context.Context, pod *corev1.Pod) error {
	for {
		t.mu.Lock()
		uid, ok := t.present[podKey(pod)]
		changed, err := t.changed, t.err
		t.mu.Unlock()
		switch {
		case !ok || uid != pod.UID:
			return nil
		case err != nil:
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-changed:
		}
	}
}
