package agent

import (
	"context"
	"errors"
	"strconv"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/util/rand"

	"orch.dev/orch/api"
	"orch.dev/orch/fsm"
)

// The in-process API the leader's components (scheduler, controllers) use:
// the same pipeline as the HTTP API (defaulting, identity, admission,
// validation) without HTTP. These must be called on the leader.

// View is a consistent snapshot of the local state.
func (a *Agent) View() *fsm.View { return a.fsm.View() }

// History is the local change history (what watches are served from).
func (a *Agent) History() *fsm.History { return a.fsm.History() }

// Propose commits a command as it is (Bind, Evict, Batch...).
func (a *Agent) Propose(ctx context.Context, cmd fsm.Command) (*fsm.Result, error) {
	return a.propose(ctx, cmd)
}

// prepareCreate turns a written object into the one a Create proposes.
func (a *Agent) prepareCreate(k *api.Kind, obj api.Object, view *fsm.View) error {
	if k.Namespaced && obj.GetNamespace() == "" {
		obj.SetNamespace("default")
	}
	if obj.GetName() == "" && obj.GetGenerateName() != "" {
		obj.SetName(obj.GetGenerateName() + rand.String(5))
	}
	api.Default(k, obj)
	stampNew(obj, time.Now())
	resetStatusOnCreate(k, obj)
	errs := admit(k, obj, view, a.cfg.DefaultTolerationSeconds)
	errs = append(errs, api.Validate(k, obj, nil)...)
	if len(errs) > 0 {
		return invalid(k, obj.GetName(), errs)
	}
	return nil
}

// Create creates obj.
func (a *Agent) Create(ctx context.Context, obj api.Object) (*fsm.Record, error) {
	k, err := kindOf(obj)
	if err != nil {
		return nil, err
	}
	if err := a.prepareCreate(k, obj, a.fsm.View()); err != nil {
		return nil, err
	}
	res, err := a.proposeObject(ctx, &fsm.Create{Kind: k.Kind}, obj)
	if err != nil {
		return nil, err
	}
	return res.Record, nil
}

// CreateMany creates objects in one Raft entry; each gets its own result
// (an invalid object fails alone, before anything is proposed).
func (a *Agent) CreateMany(ctx context.Context, objs []api.Object) ([]*fsm.Result, error) {
	out := make([]*fsm.Result, len(objs))
	view := a.fsm.View()
	batch := &fsm.Batch{}
	var slots []int
	for i, obj := range objs {
		k, err := kindOf(obj)
		if err == nil {
			err = a.prepareCreate(k, obj, view)
		}
		var b []byte
		if err == nil {
			b, err = a.sealForProposal(obj, false).Marshal()
		}
		if err != nil {
			out[i] = &fsm.Result{Err: err}
			continue
		}
		batch.Commands = append(batch.Commands, &fsm.Create{Kind: k.Kind, Object: b})
		slots = append(slots, i)
	}
	if len(batch.Commands) == 0 {
		return out, nil
	}
	res, err := a.propose(ctx, batch)
	if err != nil {
		return nil, err
	}
	for j, i := range slots {
		out[i] = res.Batch[j]
	}
	return out, nil
}

// Update replaces obj, or with status only its status. The object's
// resourceVersion, when set, is a precondition (fsm.ErrConflict).
func (a *Agent) Update(ctx context.Context, obj api.Object, status bool) (*fsm.Record, error) {
	k, err := kindOf(obj)
	if err != nil {
		return nil, err
	}
	old := a.fsm.View().Get(k, obj.GetNamespace(), obj.GetName())
	if old == nil {
		return nil, apierrors.NewNotFound(groupResource(k), obj.GetName())
	}
	if obj.GetResourceVersion() == "" {
		obj.SetResourceVersion(strconv.FormatUint(old.Version, 10))
	}
	api.Default(k, obj)
	next := fsm.Merge(k, old.Obj, obj.DeepCopyObject().(api.Object), status)
	if errs := api.Validate(k, next, old.Obj); len(errs) > 0 {
		return nil, invalid(k, obj.GetName(), errs)
	}
	res, err := a.proposeObject(ctx, &fsm.Update{Kind: k.Kind, Status: status}, obj)
	if err != nil {
		return nil, err
	}
	return res.Record, nil
}

// DeleteOptions tune an in-process delete.
type DeleteOptions struct {
	UID    string // precondition
	Orphan bool
	Grace  *int64 // pods: nil = the pod's own grace period
}

// Delete deletes an object (pods gracefully unless Grace is 0).
func (a *Agent) Delete(ctx context.Context, k *api.Kind, namespace, name string, opts DeleteOptions) (*fsm.Result, error) {
	return a.propose(ctx, &fsm.Delete{Kind: k.Kind, Namespace: namespace, Name: name, UID: opts.UID,
		DeletionTime: time.Now().UnixNano(), Orphan: opts.Orphan, Grace: opts.Grace})
}

func kindOf(obj api.Object) (*api.Kind, error) {
	if k, ok := api.KindByName(obj.GetObjectKind().GroupVersionKind().Kind); ok {
		return k, nil
	}
	return nil, errors.New("object without a supported kind (set apiVersion and kind)")
}
