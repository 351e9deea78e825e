package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"orch.dev/orch/api"
	"orch.dev/orch/api/client"
)

// Annotations and labels of Kubernetes' rollout machinery, which orch's
// deployment controller keeps too.
const (
	revisionAnnotation    = "deployment.kubernetes.io/revision"
	changeCauseAnnotation = "kubernetes.io/change-cause"
	restartedAtAnnotation = "kubectl.kubernetes.io/restartedAt"
	podTemplateHashLabel  = appsv1.DefaultDeploymentUniqueLabelKey
)

// rollbackSkipAnnotations are the Deployment annotations a rollback does
// not take from the ReplicaSet (kubectl's annotationsToSkip).
var rollbackSkipAnnotations = map[string]bool{
	lastAppliedAnnotation:                       true,
	revisionAnnotation:                          true,
	"deployment.kubernetes.io/revision-history": true,
	"deployment.kubernetes.io/desired-replicas": true,
	"deployment.kubernetes.io/max-replicas":     true,
	"deprecated.deployment.rollback.to":         true,
}

func rolloutCommand(e *env) *cli.Command {
	return &cli.Command{
		Name:   "rollout",
		Usage:  "manage the rollout of a deployment or daemon set",
		Action: groupAction(e, []string{"rollout"}),
		Subcommands: []*cli.Command{
			{Name: "status", Usage: "watch a rollout until it finishes", ArgsUsage: "TYPE/NAME | TYPE NAME",
				Flags: []cli.Flag{
					&cli.DurationFlag{Name: "timeout", Usage: "give up after `DURATION` (e.g. 5m; 0 waits for ever)"},
					&cli.BoolFlag{Name: "watch", Aliases: []string{"w"}, Value: true,
						Usage: "watch until the rollout finishes (--watch=false prints the status once)"},
				},
				Action: e.rolloutStatus},
			{Name: "history", Usage: "list the revisions of a deployment", ArgsUsage: "TYPE/NAME | TYPE NAME",
				Flags:  []cli.Flag{&cli.Int64Flag{Name: "revision", Usage: "show the pod template of revision `N`"}},
				Action: e.rolloutHistory},
			{Name: "undo", Usage: "roll a deployment back to its previous (or a given) revision", ArgsUsage: "TYPE/NAME | TYPE NAME",
				Flags:  []cli.Flag{&cli.Int64Flag{Name: "to-revision", Usage: "the revision `N` to roll back to (default: the previous one)"}},
				Action: e.rolloutUndo},
			{Name: "restart", Usage: "restart every pod of a deployment or daemon set (a new rollout)", ArgsUsage: "TYPE/NAME... | TYPE NAME...",
				Action: e.rolloutRestart},
		},
	}
}

// oneObject reads a command's single TYPE/NAME (or TYPE NAME) argument.
func oneObject(args []string, command string) (*api.Kind, string, error) {
	targets, err := parseTargets(args, false)
	if err != nil {
		return nil, "", err
	}
	if len(targets) != 1 || len(targets[0].names) != 1 {
		return nil, "", fmt.Errorf("%s takes exactly one object (TYPE/NAME or TYPE NAME)", command)
	}
	return targets[0].kind, targets[0].names[0], nil
}

// revisionOf reads a ReplicaSet's revision annotation (0 when it has none
// or it is not a number).
func revisionOf(rs *appsv1.ReplicaSet) int64 {
	v, err := strconv.ParseInt(rs.Annotations[revisionAnnotation], 10, 64)
	if err != nil || v < 0 {
		return 0
	}
	return v
}

// ownedReplicaSets lists the ReplicaSets dep controls.
func ownedReplicaSets(ctx context.Context, cl *client.Client, dep *appsv1.Deployment) ([]*appsv1.ReplicaSet, error) {
	list, err := cl.ListAll(ctx, api.ReplicaSet, dep.Namespace, client.ListOptions{})
	if err != nil {
		return nil, err
	}
	var out []*appsv1.ReplicaSet
	for _, o := range list.Items {
		rs := o.(*appsv1.ReplicaSet)
		if metav1.IsControlledBy(rs, dep) {
			out = append(out, rs)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

func (e *env) deploymentAndReplicaSets(cl *client.Client, ns, name string) (*appsv1.Deployment, []*appsv1.ReplicaSet, error) {
	obj, err := cl.Get(e.ctx, api.Deployment, ns, name, false)
	if err != nil {
		return nil, nil, err
	}
	dep := obj.(*appsv1.Deployment)
	rses, err := ownedReplicaSets(e.ctx, cl, dep)
	return dep, rses, err
}

// revisionHistory maps each revision to its ReplicaSet; ReplicaSets
// without a revision are not part of the history.
func revisionHistory(rses []*appsv1.ReplicaSet) (map[int64]*appsv1.ReplicaSet, []int64) {
	hist := map[int64]*appsv1.ReplicaSet{}
	var revs []int64
	for _, rs := range rses {
		if v := revisionOf(rs); v > 0 {
			if _, dup := hist[v]; !dup {
				revs = append(revs, v)
			}
			hist[v] = rs
		}
	}
	sort.Slice(revs, func(i, j int) bool { return revs[i] < revs[j] })
	return hist, revs
}

func (e *env) rolloutHistory(c *cli.Context) error {
	k, name, err := oneObject(c.Args().Slice(), "rollout history")
	if err != nil {
		return err
	}
	if k != api.Deployment {
		return fmt.Errorf("no history viewer has been implemented for %s (only deployments keep revisions)", k.Kind)
	}
	cl, err := e.client(c)
	if err != nil {
		return err
	}
	_, rses, err := e.deploymentAndReplicaSets(cl, namespaceFlag(c), name)
	if err != nil {
		return err
	}
	hist, revs := revisionHistory(rses)
	if rev := c.Int64("revision"); rev != 0 {
		rs, ok := hist[rev]
		if !ok {
			return fmt.Errorf("unable to find the specified revision %d", rev)
		}
		tmpl := rs.Spec.Template.DeepCopy()
		if cause := rs.Annotations[changeCauseAnnotation]; cause != "" {
			if tmpl.Annotations == nil {
				tmpl.Annotations = map[string]string{}
			}
			tmpl.Annotations[changeCauseAnnotation] = cause
		}
		fmt.Fprintf(e.stdout, "%s with revision #%d\n", objectRef(k, name), rev)
		d := &describer{tw: tabwriter.NewWriter(e.stdout, 0, 8, 2, ' ', 0), now: e.now(), loc: time.Local}
		describeTemplate(d, tmpl)
		return d.tw.Flush()
	}
	fmt.Fprintf(e.stdout, "%s \n", objectRef(k, name)) // kubectl's header, trailing space included
	if len(revs) == 0 {
		fmt.Fprintln(e.stdout, "No rollout history found.")
		return nil
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "REVISION\tCHANGE-CAUSE")
	for _, v := range revs {
		fmt.Fprintf(tw, "%d\t%s\n", v, orNone(oneLine(hist[v].Annotations[changeCauseAnnotation])))
	}
	return tw.Flush()
}

// rollbackTarget picks the ReplicaSet to roll back to, as kubectl does: the
// one of revision toRevision, or (toRevision 0) the one with the second
// highest revision.
func rollbackTarget(rses []*appsv1.ReplicaSet, toRevision int64) (*appsv1.ReplicaSet, int64, error) {
	if toRevision < 0 {
		return nil, 0, fmt.Errorf("unable to find specified revision %d in history", toRevision)
	}
	hist, revs := revisionHistory(rses)
	if toRevision > 0 {
		rs, ok := hist[toRevision]
		if !ok {
			return nil, 0, fmt.Errorf("unable to find specified revision %d in history", toRevision)
		}
		return rs, toRevision, nil
	}
	if len(revs) < 2 {
		return nil, 0, errors.New("no rollout history found: there is no previous revision to roll back to")
	}
	prev := revs[len(revs)-2]
	return hist[prev], prev, nil
}

// templateWithoutHash is a copy of t without the pod-template-hash label
// the deployment controller adds to its ReplicaSets' templates.
func templateWithoutHash(t *corev1.PodTemplateSpec) corev1.PodTemplateSpec {
	out := *t.DeepCopy()
	delete(out.Labels, podTemplateHashLabel)
	return out
}

// equalIgnoreHash compares two pod templates, ignoring pod-template-hash.
func equalIgnoreHash(a, b *corev1.PodTemplateSpec) bool {
	ca, cb := templateWithoutHash(a), templateWithoutHash(b)
	if len(ca.Labels) == 0 {
		ca.Labels = nil
	}
	if len(cb.Labels) == 0 {
		cb.Labels = nil
	}
	return apiequality.Semantic.DeepEqual(ca, cb)
}

// rollbackAnnotations are the Deployment's annotations after a rollback to
// rs: rs's own (its change cause, say) replace the Deployment's, except the
// bookkeeping ones; a change cause rs lacks is dropped.
func rollbackAnnotations(dep, rs map[string]string) map[string]string {
	out := map[string]string{}
	for k, v := range dep {
		if k != changeCauseAnnotation {
			out[k] = v
		}
	}
	for k, v := range rs {
		if !rollbackSkipAnnotations[k] {
			out[k] = v
		}
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

func (e *env) rolloutUndo(c *cli.Context) error {
	k, name, err := oneObject(c.Args().Slice(), "rollout undo")
	if err != nil {
		return err
	}
	if k != api.Deployment {
		return fmt.Errorf("no rollbacker has been implemented for %s (only deployments keep revisions)", k.Kind)
	}
	cl, err := e.client(c)
	if err != nil {
		return err
	}
	for attempt := 1; ; attempt++ {
		dep, rses, err := e.deploymentAndReplicaSets(cl, namespaceFlag(c), name)
		if err != nil {
			return err
		}
		if dep.Spec.Paused {
			return errors.New("you cannot rollback a paused deployment; resume it first (set spec.paused to false) and try again")
		}
		rs, rev, err := rollbackTarget(rses, c.Int64("to-revision"))
		if err != nil {
			return err
		}
		if equalIgnoreHash(&rs.Spec.Template, &dep.Spec.Template) {
			fmt.Fprintf(e.stdout, "%s skipped rollback (current template already matches revision %d)\n", objectRef(k, name), rev)
			return nil
		}
		next := dep.DeepCopy() // carries the resourceVersion read: a conditional update
		next.Spec.Template = templateWithoutHash(&rs.Spec.Template)
		next.Annotations = rollbackAnnotations(dep.Annotations, rs.Annotations)
		_, err = cl.Update(e.ctx, next)
		if apierrors.IsConflict(err) && attempt < 5 {
			continue
		}
		if err != nil {
			return &opError{op: fmt.Sprintf("failed restoring revision %d", rev), err: err}
		}
		fmt.Fprintf(e.stdout, "%s rolled back\n", objectRef(k, name))
		return nil
	}
}

// restartPatch sets the template annotation whose change makes the
// controller replace every pod.
func restartPatch(now time.Time) []byte {
	b, _ := json.Marshal(map[string]any{"spec": map[string]any{"template": map[string]any{
		"metadata": map[string]any{"annotations": map[string]string{restartedAtAnnotation: now.Format(time.RFC3339)}}}}})
	return b
}

func (e *env) rolloutRestart(c *cli.Context) error {
	targets, err := parseTargets(c.Args().Slice(), false)
	if err != nil {
		return err
	}
	cl, err := e.client(c)
	if err != nil {
		return err
	}
	ns := namespaceFlag(c)
	var errs []error
	for _, t := range targets {
		if len(t.names) == 0 {
			return errors.New("NAME is required (orchctl rollout restart TYPE/NAME)")
		}
		for _, name := range t.names {
			if t.kind != api.Deployment && t.kind != api.DaemonSet {
				errs = append(errs, fmt.Errorf("%s restarting is not supported", objectRef(t.kind, name)))
				continue
			}
			obj, err := cl.Get(e.ctx, t.kind, ns, name, false)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			if d, ok := obj.(*appsv1.Deployment); ok && d.Spec.Paused {
				errs = append(errs, fmt.Errorf("%s: can't restart a paused deployment (set spec.paused to false first)", objectRef(t.kind, name)))
				continue
			}
			if _, err := cl.Patch(e.ctx, t.kind, ns, name, client.MergePatch, restartPatch(e.now()), ""); err != nil {
				errs = append(errs, err)
				continue
			}
			fmt.Fprintf(e.stdout, "%s restarted\n", objectRef(t.kind, name))
		}
	}
	return reportAll(e.stderr, errs)
}
