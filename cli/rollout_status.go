package cli

import (
	"context"
	"errors"
	"fmt"

	"github.com/urfave/cli/v2"
	appsv1 "k8s.io/api/apps/v1"

	"orch.dev/orch/api"
	"orch.dev/orch/api/client"
)

// progressDeadlineExceeded is the Progressing condition's reason when a
// rollout has made no progress for spec.progressDeadlineSeconds.
const progressDeadlineExceeded = "ProgressDeadlineExceeded"

// rolloutStatusOf is kubectl's status viewer: a progress message, whether
// the rollout is complete, or an error when it has failed.
func rolloutStatusOf(obj api.Object) (string, bool, error) {
	switch o := obj.(type) {
	case *appsv1.Deployment:
		return deploymentRolloutStatus(o)
	case *appsv1.DaemonSet:
		return daemonSetRolloutStatus(o)
	}
	return "", false, fmt.Errorf("no status viewer has been implemented for %s", obj.GetObjectKind().GroupVersionKind().Kind)
}

func deploymentRolloutStatus(d *appsv1.Deployment) (string, bool, error) {
	if d.Generation > d.Status.ObservedGeneration {
		return "Waiting for deployment spec update to be observed...", false, nil
	}
	for _, c := range d.Status.Conditions {
		if c.Type == appsv1.DeploymentProgressing && c.Reason == progressDeadlineExceeded {
			return "", false, fmt.Errorf("deployment %q exceeded its progress deadline", d.Name)
		}
	}
	st, want := d.Status, replicas(d.Spec.Replicas)
	switch {
	case st.UpdatedReplicas < want:
		return fmt.Sprintf("Waiting for deployment %q rollout to finish: %d out of %d new replicas have been updated...", d.Name, st.UpdatedReplicas, want), false, nil
	case st.Replicas > st.UpdatedReplicas:
		return fmt.Sprintf("Waiting for deployment %q rollout to finish: %d old replicas are pending termination...", d.Name, st.Replicas-st.UpdatedReplicas), false, nil
	case st.AvailableReplicas < st.UpdatedReplicas:
		return fmt.Sprintf("Waiting for deployment %q rollout to finish: %d of %d updated replicas are available...", d.Name, st.AvailableReplicas, st.UpdatedReplicas), false, nil
	}
	return fmt.Sprintf("deployment %q successfully rolled out", d.Name), true, nil
}

func daemonSetRolloutStatus(ds *appsv1.DaemonSet) (string, bool, error) {
	if t := ds.Spec.UpdateStrategy.Type; t != "" && t != appsv1.RollingUpdateDaemonSetStrategyType {
		return "", false, fmt.Errorf("rollout status is only available for %s strategy type", appsv1.RollingUpdateDaemonSetStrategyType)
	}
	if ds.Generation > ds.Status.ObservedGeneration {
		return "Waiting for daemon set spec update to be observed...", false, nil
	}
	st := ds.Status
	switch {
	case st.UpdatedNumberScheduled < st.DesiredNumberScheduled:
		return fmt.Sprintf("Waiting for daemon set %q rollout to finish: %d out of %d new pods have been updated...", ds.Name, st.UpdatedNumberScheduled, st.DesiredNumberScheduled), false, nil
	case st.NumberAvailable < st.DesiredNumberScheduled:
		return fmt.Sprintf("Waiting for daemon set %q rollout to finish: %d of %d updated pods are available...", ds.Name, st.NumberAvailable, st.DesiredNumberScheduled), false, nil
	}
	return fmt.Sprintf("daemon set %q successfully rolled out", ds.Name), true, nil
}

// rolloutStatus watches one object and prints each new progress message
// until the rollout completes (exit 0), fails, or --timeout passes.
func (e *env) rolloutStatus(c *cli.Context) error {
	k, name, err := oneObject(c.Args().Slice(), "rollout status")
	if err != nil {
		return err
	}
	if k != api.Deployment && k != api.DaemonSet {
		return fmt.Errorf("no status viewer has been implemented for %s (use a deployment or daemonset)", k.Kind)
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
	ended := func(err error) error {
		switch {
		case e.ctx.Err() != nil:
			return exitCode(130) // interrupted
		case ctx.Err() != nil:
			return fmt.Errorf("timed out waiting for the condition: %s %q rollout did not finish within %s", k.Singular, name, timeout)
		case err == nil:
			return errors.New("the watch ended before the rollout finished")
		}
		return err
	}
	ns := namespaceFlag(c)
	obj, err := cl.Get(ctx, k, ns, name, false)
	if err != nil {
		return ended(err)
	}
	last := ""
	report := func(obj api.Object) (stop bool, err error) {
		msg, done, err := rolloutStatusOf(obj)
		if err != nil {
			return true, err
		}
		if msg != last { // a watch repeats a status for changes that do not alter it
			fmt.Fprintln(e.stdout, msg)
			last = msg
		}
		return done || !c.Bool("watch"), nil
	}
	if stop, err := report(obj); stop {
		return err
	}
	w, err := cl.Watch(ctx, k, ns, client.ListOptions{FieldSelector: "metadata.name=" + name, ResourceVersion: obj.GetResourceVersion()})
	if err != nil {
		return ended(err)
	}
	defer w.Stop()
	for {
		select {
		case <-ctx.Done():
			return ended(nil)
		case ev, ok := <-w.Events():
			if !ok {
				return ended(w.Err())
			}
			if ev.Type == client.Deleted {
				return fmt.Errorf("%s was deleted while its rollout was being watched", objectRef(k, name))
			}
			if stop, err := report(ev.Object); stop {
				return err
			}
		}
	}
}
