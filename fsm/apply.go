package fsm

import (
	"bytes"
	"fmt"
	"reflect"
	"time"

	"github.com/hashicorp/go-memdb"
	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"orch.dev/orch/api"
)

// Result is the response of applying one command.
type Result struct {
	// Record is the object after the change; after a removal, its last
	// state (resourceVersion = the deleting index).
	Record  *Record
	Deleted bool // the object was removed (not only marked for deletion)
	Err     error
	Batch   []*Result // one per command of a Batch
	// Duplicate is set when the command's request ID had already been
	// applied: nothing changed, and Record is the object's current state.
	Duplicate *Request
}

// ObjectError is an apply error about one object; Err is a sentinel.
type ObjectError struct {
	Err             error
	Kind            *api.Kind
	Namespace, Name string
	Msg             string
	Field           *FieldError // with ErrInvalid: the field refused
}

func (e *ObjectError) Error() string { return e.Msg }
func (e *ObjectError) Unwrap() error { return e.Err }

func objErr(sentinel error, k *api.Kind, ns, name, format string, args ...any) *Result {
	return &Result{Err: &ObjectError{Err: sentinel, Kind: k, Namespace: ns, Name: name, Msg: fmt.Sprintf(format, args...)}}
}

// protectedNamespaces cannot be deleted, as in Kubernetes.
var protectedNamespaces = map[string]bool{"default": true, "kube-system": true, "kube-public": true}

type applier struct {
	txn *memdb.Txn
	// base reads the state as it was before txn, and written holds what
	// txn stored under each table and primary key (nil: removed): get
	// reads from them rather than from txn, because a read of an index
	// that a go-memdb write transaction has modified clones the index's
	// radix transaction and thereby drops its cache of the nodes already
	// copied, so that every insert after such a read copies its whole path
	// again (BenchmarkConfigMapCreates: twice the CPU per create).
	base            *memdb.Txn
	written         map[rowKey]*Record
	writtenRequests map[string]*Request // the same for the requests table
	usage           usage
	index           uint64
	events          []Event
	requests        *requestQueue
	window          uint64 // RequestWindow (smaller in tests)
}

func (a *applier) apply(cmd Command) *Result {
	switch c := cmd.(type) {
	case *Create:
		return a.create(c)
	case *Update:
		return a.update(c)
	case *Delete:
		return a.delete(c)
	case *Bind:
		return a.bind(c)
	case *Evict:
		return a.evict(c)
	case *Batch:
		res := &Result{Batch: make([]*Result, len(c.Commands))}
		for i, sub := range c.Commands {
			// Each command of a batch keeps its own request ID: the API
			// server batches independent clients' writes.
			res.Batch[i] = a.applyOnce(sub)
		}
		return res
	}
	return &Result{Err: fmt.Errorf("%w: no apply function for %T", ErrBadCommand, cmd)}
}

func (a *applier) decode(kind string, b []byte) (*api.Kind, api.Object, *Result) {
	k, ok := api.KindByName(kind)
	if !ok {
		return nil, nil, &Result{Err: fmt.Errorf("%w: unknown kind %q", ErrBadCommand, kind)}
	}
	obj, err := k.Decode(b)
	if err != nil {
		return nil, nil, &Result{Err: fmt.Errorf("%w: %v", ErrBadCommand, err)}
	}
	if obj.GetName() == "" {
		return nil, nil, &Result{Err: fmt.Errorf("%w: %s without metadata.name", ErrBadCommand, k.Kind)}
	}
	if k.Namespaced != (obj.GetNamespace() != "") {
		return nil, nil, &Result{Err: fmt.Errorf("%w: %s %q: namespace %q does not fit the kind's scope", ErrBadCommand, k.Kind, obj.GetName(), obj.GetNamespace())}
	}
	return k, obj, nil
}

// rowKey names a row by table and primary key.
type rowKey struct{ table, key string }

func newApplier(db *memdb.MemDB) *applier {
	return &applier{txn: db.Txn(true), base: db.Txn(false), written: map[rowKey]*Record{}, writtenRequests: map[string]*Request{}}
}

// get returns the stored record of key, nil when there is none.
func (a *applier) get(k *api.Kind, key string) *Record {
	if rec, ok := a.written[rowKey{k.Resource, key}]; ok {
		return rec
	}
	raw, err := a.base.First(k.Resource, indexID, key)
	if err != nil || raw == nil {
		return nil
	}
	return raw.(*Record)
}

func (a *applier) put(rec, prev *Record) {
	if err := a.txn.Insert(rec.Kind.Resource, rec); err != nil {
		panic(err) // static schema: cannot fail
	}
	a.written[rowKey{rec.Kind.Resource, rec.Key}] = rec
	if rec.Kind == api.Pod {
		a.usage.podChanged(prev, rec)
	}
	t := Modified
	if prev == nil {
		t = Added
	}
	a.events = append(a.events, Event{Type: t, Record: rec, Prev: prev})
}

// remove deletes the object of rec (which may be its last state rather
// than the stored record) and records a DELETED event carrying rec.
func (a *applier) remove(rec *Record) *Record {
	var stored *Record
	if rec.Kind == api.Pod {
		stored = a.get(api.Pod, rec.Key) // what its node's usage counts
	}
	if err := a.txn.Delete(rec.Kind.Resource, rec); err != nil {
		panic(err)
	}
	a.written[rowKey{rec.Kind.Resource, rec.Key}] = nil
	if stored != nil {
		a.usage.podChanged(stored, nil)
	}
	last := shallowCopy(rec.Obj)
	last.SetResourceVersion(formatRV(a.index))
	gone := newRecord(rec.Kind, last, a.index)
	a.events = append(a.events, Event{Type: Deleted, Record: gone})
	return gone
}

func (a *applier) create(c *Create) *Result {
	k, obj, bad := a.decode(c.Kind, c.Object)
	if bad != nil {
		return bad
	}
	ns, name := obj.GetNamespace(), obj.GetName()
	if a.get(k, ObjectKey(k, ns, name)) != nil {
		return objErr(ErrAlreadyExists, k, ns, name, "%s %q already exists", k.Resource, name)
	}
	if k.Namespaced {
		nsRec := a.get(api.Namespace, ns)
		if nsRec == nil {
			return objErr(ErrNotFound, api.Namespace, "", ns, "namespaces %q not found", ns)
		}
		if nsRec.Obj.GetDeletionTimestamp() != nil {
			return objErr(ErrForbidden, k, ns, name, "unable to create new content in namespace %s because it is being terminated", ns)
		}
	}
	switch o := obj.(type) {
	case *corev1.Node:
		a.allocatePodCIDR(o)
	case *corev1.Service:
		if res := a.allocateService(o, nil); res != nil {
			return res
		}
	}
	obj.SetResourceVersion(formatRV(a.index))
	if k.HasSpec {
		obj.SetGeneration(1)
	}
	rec := newRecord(k, obj, a.index)
	a.put(rec, nil)
	return &Result{Record: rec}
}

// checkPreconditions enforces the uid and resourceVersion an update or
// delete was made against (optimistic concurrency).
func checkPreconditions(k *api.Kind, old *Record, uid string, rv uint64) *Result {
	ns, name := old.Obj.GetNamespace(), old.Obj.GetName()
	if uid != "" && uid != string(old.Obj.GetUID()) {
		return objErr(ErrConflict, k, ns, name, "Precondition failed: UID in precondition: %s, UID in object meta: %s", uid, old.Obj.GetUID())
	}
	if rv != 0 && rv != old.Version {
		return objErr(ErrConflict, k, ns, name, "Operation cannot be fulfilled on %s %q: the object has been modified; please apply your changes to the latest version and try again", k.Resource, name)
	}
	return nil
}

func (a *applier) update(c *Update) *Result {
	k, obj, bad := a.decode(c.Kind, c.Object)
	if bad != nil {
		return bad
	}
	ns, name := obj.GetNamespace(), obj.GetName()
	old := a.get(k, ObjectKey(k, ns, name))
	if old == nil {
		return objErr(ErrNotFound, k, ns, name, "%s %q not found", k.Resource, name)
	}
	rv, err := ParseRV(obj.GetResourceVersion())
	if err != nil {
		return &Result{Err: fmt.Errorf("%w: %v", ErrBadCommand, err)}
	}
	if res := checkPreconditions(k, old, string(obj.GetUID()), rv); res != nil {
		return res
	}
	if c.Status && !k.HasStatus {
		return objErr(ErrNotFound, k, ns, name, "%s has no status subresource", k.Resource)
	}
	next := Merge(k, old.Obj, obj, c.Status)
	if svc, ok := next.(*corev1.Service); ok && !c.Status {
		if res := a.allocateService(svc, old.Obj.(*corev1.Service)); res != nil {
			return res
		}
	}
	if sameObject(next, old.Obj, c.Status) {
		return &Result{Record: old} // no change: no new version, no event
	}
	if next.GetDeletionTimestamp() != nil && len(next.GetFinalizers()) == 0 {
		// The last finalizer is gone: the deletion completes, and the
		// DELETED event shows the object without its finalizers.
		return &Result{Record: a.removeTree(newRecord(k, next, old.Version)), Deleted: true}
	}
	next.SetResourceVersion(formatRV(a.index))
	rec := newRecord(k, next, a.index)
	if c.Status {
		rec.sameSpec(old)
	}
	a.put(rec, old)
	return &Result{Record: rec}
}

func (a *applier) delete(c *Delete) *Result {
	k, ok := api.KindByName(c.Kind)
	if !ok {
		return &Result{Err: fmt.Errorf("%w: unknown kind %q", ErrBadCommand, c.Kind)}
	}
	old := a.get(k, ObjectKey(k, c.Namespace, c.Name))
	if old == nil {
		return objErr(ErrNotFound, k, c.Namespace, c.Name, "%s %q not found", k.Resource, c.Name)
	}
	if res := checkPreconditions(k, old, c.UID, c.ResourceVersion); res != nil {
		return res
	}
	if k == api.Namespace && protectedNamespaces[c.Name] {
		return objErr(ErrForbidden, k, "", c.Name, "namespace %q may not be deleted", c.Name)
	}
	if k == api.Pod && len(old.Obj.GetFinalizers()) == 0 {
		if res := a.terminateGracefully(old, c.Grace, c.DeletionTime); res != nil {
			return res
		}
	}
	if len(old.Obj.GetFinalizers()) > 0 {
		if old.Obj.GetDeletionTimestamp() != nil {
			return &Result{Record: old}
		}
		next := shallowCopy(old.Obj)
		ts := metav1.NewTime(time.Unix(0, c.DeletionTime).UTC())
		next.SetDeletionTimestamp(&ts)
		next.SetResourceVersion(formatRV(a.index))
		rec := newRecord(k, next, a.index)
		a.put(rec, old)
		return &Result{Record: rec}
	}
	if c.Orphan {
		a.orphanDependents(string(old.Obj.GetUID()))
	}
	return &Result{Record: a.removeTree(old), Deleted: true}
}

// removeTree removes rec, and for a namespace everything in it.
func (a *applier) removeTree(rec *Record) *Record {
	if rec.Kind == api.Namespace {
		ns := rec.Obj.GetName()
		for _, k := range api.Kinds {
			if !k.Namespaced {
				continue
			}
			for _, child := range a.collect(k.Resource, indexID+"_prefix", ns+"/") {
				a.remove(child)
			}
		}
	}
	return a.remove(rec)
}

// orphanDependents removes ownerReferences to uid from every object.
func (a *applier) orphanDependents(uid string) {
	for _, k := range api.Kinds {
		for _, dep := range a.collect(k.Resource, indexOwner, uid) {
			next := dep.Copy()
			refs := next.GetOwnerReferences()
			kept := refs[:0]
			for _, r := range refs {
				if string(r.UID) != uid {
					kept = append(kept, r)
				}
			}
			next.SetOwnerReferences(kept)
			next.SetResourceVersion(formatRV(a.index))
			a.put(newRecord(k, next, a.index), dep)
		}
	}
}

// collect gathers matching records before they are modified: memdb
// iterators must not outlive writes to their table.
func (a *applier) collect(table, index string, args ...any) []*Record {
	it, err := a.txn.Get(table, index, args...)
	if err != nil {
		panic(err)
	}
	var out []*Record
	for raw := it.Next(); raw != nil; raw = it.Next() {
		out = append(out, raw.(*Record))
	}
	return out
}

// Merge builds the object an update stores from the stored object (old) and
// the written one (obj, which it may modify and return). A status update
// changes only .status; any other update keeps the stored .status, identity,
// creation and deletion metadata, and bumps metadata.generation when .spec
// changes. The API server validates exactly what Merge returns.
func Merge(k *api.Kind, old, obj api.Object, status bool) api.Object {
	var next api.Object
	if status {
		next = shallowCopy(old)
		setField(next, obj, "Status")
	} else {
		next = obj
		if k.HasStatus {
			setField(next, old, "Status")
		}
		next.SetUID(old.GetUID())
		next.SetCreationTimestamp(old.GetCreationTimestamp())
		next.SetDeletionTimestamp(old.GetDeletionTimestamp())
		next.SetDeletionGracePeriodSeconds(old.GetDeletionGracePeriodSeconds())
		next.SetGeneration(old.GetGeneration())
		if k.HasSpec && !apiequality.Semantic.DeepEqual(field(next, "Spec"), field(old, "Spec")) {
			next.SetGeneration(old.GetGeneration() + 1)
		}
	}
	next.SetResourceVersion(old.GetResourceVersion())
	return next
}

// shallowCopy copies the top-level struct of obj: the copy shares its
// maps, slices and pointers with obj. Stored objects are never modified,
// so a write may share what it does not change with the object it
// replaces, as long as it replaces (never modifies in place) what it does
// change; a full copy of every pod on every write is a large part of what
// applying costs.
func shallowCopy(obj api.Object) api.Object {
	v := reflect.ValueOf(obj).Elem()
	c := reflect.New(v.Type())
	c.Elem().Set(v)
	return c.Interface().(api.Object)
}

func field(obj api.Object, name string) any {
	return reflect.ValueOf(obj).Elem().FieldByName(name).Interface()
}

func setField(dst, src api.Object, name string) {
	reflect.ValueOf(dst).Elem().FieldByName(name).Set(reflect.ValueOf(src).Elem().FieldByName(name))
}

// sameObject reports whether a and b encode alike. For a status update
// (Merge with status), which copies everything else from b, comparing the
// statuses is enough.
func sameObject(a, b api.Object, status bool) bool {
	type marshaler interface{ Marshal() ([]byte, error) }
	var am, bm marshaler = a, b
	if status {
		am = reflect.ValueOf(a).Elem().FieldByName("Status").Addr().Interface().(marshaler)
		bm = reflect.ValueOf(b).Elem().FieldByName("Status").Addr().Interface().(marshaler)
	}
	ab, err1 := am.Marshal()
	bb, err2 := bm.Marshal()
	return err1 == nil && err2 == nil && bytes.Equal(ab, bb)
}

// ClearStatus resets an object's .status to its zero value.
func ClearStatus(obj api.Object) {
	v := reflect.ValueOf(obj).Elem().FieldByName("Status")
	if v.IsValid() {
		v.Set(reflect.Zero(v.Type()))
	}
}
