package ctrl

import (
	"errors"
	"net/http"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/util/intstr"

	"orch.dev/orch/api"
)

// TestBadWorkloadsRejected: the API refuses what no controller could act
// on sanely, with a 422 naming the field, and writes nothing (so the
// controllers never see it).
func TestBadWorkloadsRejected(t *testing.T) {
	tc := startCluster(t, clusterOptions{servers: 1, noKubelet: true})
	zero := intstr.FromInt32(0)
	cases := []struct {
		name   string
		obj    func() api.Object
		update bool // applied to an existing valid object instead of created
		field  string
	}{
		{"selector does not match template", func() api.Object {
			d := newDeployment("mismatch", 1, "app:1")
			d.Spec.Template.Labels = map[string]string{"app": "other"}
			return d
		}, false, "spec.template.metadata.labels"},
		{"negative replicas", func() api.Object { return newDeployment("negative", -1, "app:1") }, false, "spec.replicas"},
		{"scaled to negative replicas", func() api.Object { return newDeployment("rescaled", -2, "app:1") }, true, "spec.replicas"},
		{"replica set with negative replicas", func() api.Object { return newReplicaSet("negative-rs", -1) }, false, "spec.replicas"},
		{"maxSurge and maxUnavailable both 0", func() api.Object {
			return withStrategy(newDeployment("frozen", 3, "app:1"), zero, zero)
		}, false, "spec.strategy.rollingUpdate.maxUnavailable"},
		{"daemon set with maxSurge and maxUnavailable both 0", func() api.Object {
			ds := newDaemonSet("frozen-ds", "agent:1", nil, 0, 0)
			return ds
		}, false, "spec.updateStrategy.rollingUpdate.maxUnavailable"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			tc := tc.sub(t)
			obj := c.obj()
			var err error
			if c.update {
				valid := newDeployment(obj.GetName(), 1, "app:1")
				tc.create(valid)
				cur, gerr := tc.cl.Get(tc.ctx, api.Deployment, "default", obj.GetName(), false)
				if gerr != nil {
					t.Fatal(gerr)
				}
				cur.(*appsv1.Deployment).Spec.Replicas = obj.(*appsv1.Deployment).Spec.Replicas
				_, err = tc.cl.Update(tc.ctx, cur)
			} else {
				_, err = tc.cl.Create(tc.ctx, obj)
			}
			var se *apierrors.StatusError
			if !errors.As(err, &se) || se.ErrStatus.Code != http.StatusUnprocessableEntity {
				t.Fatalf("want 422 Invalid, got %v", err)
			}
			found := false
			if d := se.ErrStatus.Details; d != nil {
				for _, cause := range d.Causes {
					found = found || cause.Field == c.field
				}
			}
			if !found {
				t.Errorf("no cause names %s: %+v", c.field, se.ErrStatus.Details)
			}
			k, _ := api.KindByName(obj.GetObjectKind().GroupVersionKind().Kind)
			got := tc.get(k, "default", obj.GetName())
			switch {
			case !c.update && got != nil:
				t.Errorf("the invalid object was stored: %+v", got)
			case c.update && *got.(*appsv1.Deployment).Spec.Replicas != 1:
				t.Errorf("the invalid update was stored: %+v", got)
			}
		})
	}
}
