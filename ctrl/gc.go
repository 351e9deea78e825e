package ctrl

import (
	"context"
	"errors"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"orch.dev/orch/api"
	"orch.dev/orch/fsm"
)

// garbageCollector deletes objects whose owners are gone: an object all
// of whose ownerReferences name owners (by uid) that no longer exist is
// deleted (a pod gracefully), and dangling references among live ones are
// removed. Deletion therefore cascades by default, one generation at a
// time (a Deployment, then its ReplicaSets, then their pods).
//
// Orphan propagation needs nothing here: the FSM removes the references to
// an object deleted with propagationPolicy=Orphan in the same entry that
// deletes it. Foreground propagation is treated like Background: the owner
// goes at once and its dependents follow (orch keeps no foregroundDeletion
// finalizer), and blockOwnerDeletion is not enforced. A namespace's
// contents are removed by the FSM with the namespace.
//
// Keys are owner uids: one reconcile handles every dependent of a deleted
// owner, deleting them in batches of one Raft entry each.
type garbageCollector struct {
	c Cluster
}

func newGarbageCollector(c Cluster) *controller {
	g := &garbageCollector{c: c}
	return &controller{name: "garbagecollector", kinds: api.Kinds, queue: newQueue(),
		list: g.list, keysFor: g.keysFor, reconcile: g.reconcile}
}

func (g *garbageCollector) list(v *fsm.View, add func(string)) {
	for _, k := range api.Kinds {
		v.List(k, "", func(r *fsm.Record) bool {
			g.danglingOwners(v, r.Obj, add)
			return true
		})
	}
}

func (g *garbageCollector) keysFor(ev fsm.Event, v *fsm.View, add func(string)) {
	switch {
	case ev.Type == fsm.Deleted:
		add(string(ev.Record.Obj.GetUID()))
	case len(ev.Record.Owners) == 0:
	case ev.Type == fsm.Added || !sameOwners(ev.Prev.Owners, ev.Record.Owners):
		// An owner that is gone now had its deletion event before this
		// one, or gets it later; either way a key. Checking here, with
		// the latest view, spares a reconcile per created pod.
		g.danglingOwners(v, ev.Record.Obj, add)
	}
}

func sameOwners(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func (g *garbageCollector) danglingOwners(v *fsm.View, obj api.Object, add func(string)) {
	for _, ref := range obj.GetOwnerReferences() {
		if !ownerExists(v, obj, ref) {
			add(string(ref.UID))
		}
	}
}

// ownerExists reports whether the owner ref names exists with its uid.
// An owner of a kind orch does not know cannot be checked, and a
// namespaced owner of a cluster-scoped object cannot be resolved (as in
// Kubernetes), so both count as existing: the garbage collector never
// deletes on a guess.
func ownerExists(v *fsm.View, obj api.Object, ref metav1.OwnerReference) bool {
	k, ok := api.KindByName(ref.Kind)
	if !ok || k.Namespaced && obj.GetNamespace() == "" {
		return true
	}
	ns := ""
	if k.Namespaced {
		ns = obj.GetNamespace()
	}
	rec := v.Get(k, ns, ref.Name)
	return rec != nil && rec.Obj.GetUID() == ref.UID
}

func (g *garbageCollector) reconcile(ctx context.Context, uid string) error {
	v := g.c.View()
	var orphaned []*fsm.Record // every owner gone
	var partly []*fsm.Record   // some owners gone
	for _, k := range api.Kinds {
		v.Owned(k, uid, func(r *fsm.Record) bool {
			var alive int
			refs := r.Obj.GetOwnerReferences()
			for _, ref := range refs {
				if ownerExists(v, r.Obj, ref) {
					alive++
				}
			}
			switch {
			case alive == 0:
				orphaned = append(orphaned, r)
			case alive < len(refs):
				partly = append(partly, r)
			}
			return true
		})
	}
	for _, r := range partly {
		obj := r.Copy()
		var kept []metav1.OwnerReference
		for _, ref := range obj.GetOwnerReferences() {
			if ownerExists(v, obj, ref) {
				kept = append(kept, ref)
			}
		}
		obj.SetOwnerReferences(kept)
		if _, err := g.c.Update(ctx, obj, false); err != nil && !errors.Is(err, fsm.ErrNotFound) {
			return err
		}
	}
	return g.deleteAll(ctx, orphaned)
}

// deleteAll deletes records, each conditional on its uid (a new object
// of the same name is not garbage).
func (g *garbageCollector) deleteAll(ctx context.Context, recs []*fsm.Record) error {
	return deleteRecords(ctx, g.c, recs, false)
}

// deleteRecords deletes records in batches of one Raft entry, each
// conditional on its uid and, with sameVersion, on its resourceVersion
// too. A record that is gone or no longer matches is skipped.
func deleteRecords(ctx context.Context, c Cluster, recs []*fsm.Record, sameVersion bool) error {
	now := time.Now().UnixNano()
	for start := 0; start < len(recs); start += createBatch {
		batch := &fsm.Batch{}
		for _, r := range recs[start:min(start+createBatch, len(recs))] {
			d := &fsm.Delete{Kind: r.Kind.Kind, Namespace: r.Obj.GetNamespace(),
				Name: r.Obj.GetName(), UID: string(r.Obj.GetUID()), DeletionTime: now}
			if sameVersion {
				d.ResourceVersion = r.Version
			}
			batch.Commands = append(batch.Commands, d)
		}
		res, err := c.Propose(ctx, batch)
		if err != nil {
			return err
		}
		for _, r := range res.Batch {
			if r.Err != nil && !errors.Is(r.Err, fsm.ErrNotFound) && !errors.Is(r.Err, fsm.ErrConflict) {
				return r.Err
			}
		}
	}
	return nil
}
