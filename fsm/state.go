package fsm

import (
	"encoding/json"
	"fmt"
	"strconv"
	"sync/atomic"

	"github.com/hashicorp/go-memdb"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"orch.dev/orch/api"
	"orch.dev/orch/sched/fit"
)

// Record is one stored object. Records are immutable once inserted: a change
// inserts a new Record, so readers may keep and share them freely.
type Record struct {
	Kind    *api.Kind
	Key     string     // "namespace/name", or "name" for cluster-scoped kinds
	Obj     api.Object // resourceVersion set; never mutate
	Version uint64     // Raft index of the last change
	// Owners lists the uids in Obj's ownerReferences (an index).
	Owners []string

	json atomic.Pointer[[]byte]
	// res caches a pod's requests or a node's allocatable (resources).
	res atomic.Pointer[fit.Resources]
}

// ObjectKey is the table key of an object.
func ObjectKey(k *api.Kind, namespace, name string) string {
	if !k.Namespaced {
		return name
	}
	return namespace + "/" + name
}

func newRecord(k *api.Kind, obj api.Object, version uint64) *Record {
	r := &Record{Kind: k, Key: ObjectKey(k, obj.GetNamespace(), obj.GetName()), Obj: obj, Version: version}
	for _, o := range obj.GetOwnerReferences() {
		r.Owners = append(r.Owners, string(o.UID))
	}
	return r
}

// JSON is the object's JSON encoding, computed once and cached.
func (r *Record) JSON() []byte {
	if b := r.json.Load(); b != nil {
		return *b
	}
	b, err := json.Marshal(r.Obj)
	if err != nil {
		// Typed Kubernetes objects always encode; this would be a bug.
		panic(fmt.Sprintf("encode %s %s: %v", r.Kind.Kind, r.Key, err))
	}
	r.json.Store(&b)
	return b
}

// resources is, computed once, what a pod takes from its node
// (fit.Requests) or what a node offers (fit.Allocatable). Only the apply
// goroutine asks, and never modifies the result.
func (r *Record) resources() fit.Resources {
	if p := r.res.Load(); p != nil {
		return *p
	}
	var res fit.Resources
	switch o := r.Obj.(type) {
	case *corev1.Pod:
		res = fit.Requests(o)
	case *corev1.Node:
		res = fit.Allocatable(o)
	}
	r.res.Store(&res)
	return res
}

// sameSpec tells r, a pod, that its spec equals old's (a status, deletion
// or binding write), so that it shares old's computed requests. (A node's
// allocatable is in its status: it never shares.)
func (r *Record) sameSpec(old *Record) {
	if p := old.res.Load(); p != nil && r.Kind == api.Pod {
		r.res.Store(p)
	}
}

// Copy returns a deep copy of the object that the caller may modify.
func (r *Record) Copy() api.Object {
	return r.Obj.DeepCopyObject().(api.Object)
}

const (
	indexID     = "id"
	indexOwner  = "owner"
	indexNode   = "node"
	indexOrphan = "orphan"
	// Services by cluster IP and by node port (fsm/services.go).
	indexClusterIP = "clusterip"
	indexNodePort  = "nodeport"
	tableMeta      = "meta"
)

// orphanKinds are the kinds controllers adopt: they are indexed by
// namespace when they have no controller, so that a controller looking for
// orphans to adopt does not read every object of the namespace.
var orphanKinds = map[*api.Kind]bool{api.Pod: true, api.ReplicaSet: true}

// orphanIndexer indexes objects without a controller ownerReference by
// namespace.
type orphanIndexer struct{}

func (orphanIndexer) FromObject(raw any) (bool, []byte, error) {
	obj := raw.(*Record).Obj
	if metav1.GetControllerOfNoCopy(obj) != nil {
		return false, nil, nil
	}
	return true, []byte(obj.GetNamespace() + "\x00"), nil
}

func (orphanIndexer) FromArgs(args ...any) ([]byte, error) {
	if len(args) != 1 {
		return nil, fmt.Errorf("orphan index takes one argument")
	}
	s, ok := args[0].(string)
	if !ok {
		return nil, fmt.Errorf("orphan index argument must be a string")
	}
	return []byte(s + "\x00"), nil
}

type metaRow struct {
	Key   string
	Index uint64
}

// keyIndexer indexes records by Key: memdb.StringFieldIndex without the
// reflection, on every write's hottest path.
type keyIndexer struct{}

func (keyIndexer) FromObject(raw any) (bool, []byte, error) {
	return true, []byte(raw.(*Record).Key + "\x00"), nil
}

func (keyIndexer) FromArgs(args ...any) ([]byte, error) {
	if len(args) != 1 {
		return nil, fmt.Errorf("id index takes one argument")
	}
	s, ok := args[0].(string)
	if !ok {
		return nil, fmt.Errorf("id index argument must be a string")
	}
	return []byte(s + "\x00"), nil
}

// PrefixFromArgs serves the id_prefix queries (a namespace's objects).
func (keyIndexer) PrefixFromArgs(args ...any) ([]byte, error) {
	b, err := keyIndexer{}.FromArgs(args...)
	if err != nil {
		return nil, err
	}
	return b[:len(b)-1], nil
}

// ownersIndexer indexes records by the uids of their ownerReferences
// (memdb.StringSliceFieldIndex on Owners, without the reflection).
type ownersIndexer struct{}

func (ownersIndexer) FromObject(raw any) (bool, [][]byte, error) {
	var out [][]byte
	for _, o := range raw.(*Record).Owners {
		if o != "" {
			out = append(out, []byte(o+"\x00"))
		}
	}
	return len(out) > 0, out, nil
}

func (ownersIndexer) FromArgs(args ...any) ([]byte, error) {
	if len(args) != 1 {
		return nil, fmt.Errorf("owner index takes one argument")
	}
	s, ok := args[0].(string)
	if !ok {
		return nil, fmt.Errorf("owner index argument must be a string")
	}
	return []byte(s + "\x00"), nil
}

// podNodeIndexer indexes pods by spec.nodeName (unbound pods under "").
type podNodeIndexer struct{}

func (podNodeIndexer) FromObject(raw any) (bool, []byte, error) {
	r := raw.(*Record)
	return true, []byte(r.Obj.(*corev1.Pod).Spec.NodeName + "\x00"), nil
}

func (podNodeIndexer) FromArgs(args ...any) ([]byte, error) {
	if len(args) != 1 {
		return nil, fmt.Errorf("node index takes one argument")
	}
	s, ok := args[0].(string)
	if !ok {
		return nil, fmt.Errorf("node index argument must be a string")
	}
	return []byte(s + "\x00"), nil
}

func schema() *memdb.DBSchema {
	s := &memdb.DBSchema{Tables: map[string]*memdb.TableSchema{
		tableMeta: {Name: tableMeta, Indexes: map[string]*memdb.IndexSchema{
			indexID: {Name: indexID, Unique: true, Indexer: &memdb.StringFieldIndex{Field: "Key"}},
		}},
		tableRequests: requestsTable(),
	}}
	for _, k := range api.Kinds {
		t := &memdb.TableSchema{Name: k.Resource, Indexes: map[string]*memdb.IndexSchema{
			indexID:    {Name: indexID, Unique: true, Indexer: keyIndexer{}},
			indexOwner: {Name: indexOwner, AllowMissing: true, Indexer: ownersIndexer{}},
		}}
		if k == api.Pod {
			t.Indexes[indexNode] = &memdb.IndexSchema{Name: indexNode, Indexer: podNodeIndexer{}}
		}
		if k == api.Service {
			t.Indexes[indexClusterIP] = &memdb.IndexSchema{Name: indexClusterIP, AllowMissing: true, Indexer: serviceClusterIPIndexer{}}
			t.Indexes[indexNodePort] = &memdb.IndexSchema{Name: indexNodePort, AllowMissing: true, Indexer: serviceNodePortIndexer{}}
		}
		if orphanKinds[k] {
			t.Indexes[indexOrphan] = &memdb.IndexSchema{Name: indexOrphan, AllowMissing: true, Indexer: orphanIndexer{}}
		}
		s.Tables[k.Resource] = t
	}
	return s
}

func newDB() *memdb.MemDB {
	db, err := memdb.NewMemDB(schema())
	if err != nil {
		panic(err) // the schema is static; an error is a programming bug
	}
	// Nothing here uses memdb's watch channels (WatchSet): watches are
	// served from the History. A "primary" MemDB would still track and
	// close a channel for every radix node each commit modifies; a
	// snapshot of the empty database is the same store without that.
	return db.Snapshot()
}

// View is a consistent read-only snapshot of the state at one index.
type View struct {
	txn *memdb.Txn
}

// Index is the Raft index the view reflects (its list resourceVersion).
func (v *View) Index() uint64 {
	raw, err := v.txn.First(tableMeta, indexID, "applied")
	if err != nil || raw == nil {
		return 0
	}
	return raw.(*metaRow).Index
}

// Get returns the record for an object, or nil.
func (v *View) Get(k *api.Kind, namespace, name string) *Record {
	raw, err := v.txn.First(k.Resource, indexID, ObjectKey(k, namespace, name))
	if err != nil || raw == nil {
		return nil
	}
	return raw.(*Record)
}

// List calls fn for each object of kind k in namespace (all namespaces when
// empty), in key order, until fn returns false.
func (v *View) List(k *api.Kind, namespace string, fn func(*Record) bool) {
	var it memdb.ResultIterator
	var err error
	if k.Namespaced && namespace != "" {
		it, err = v.txn.Get(k.Resource, indexID+"_prefix", namespace+"/")
	} else {
		it, err = v.txn.Get(k.Resource, indexID)
	}
	if err != nil {
		return
	}
	for raw := it.Next(); raw != nil; raw = it.Next() {
		if !fn(raw.(*Record)) {
			return
		}
	}
}

// ListFrom is List starting after key (exclusive), for paginated lists.
func (v *View) ListFrom(k *api.Kind, namespace, after string, fn func(*Record) bool) {
	prefix := ""
	if k.Namespaced && namespace != "" {
		prefix = namespace + "/"
	}
	start := after + "\x00" // index keys end in NUL: this skips after itself
	if after < prefix {
		// A first page, or a key before the namespace: starting there would
		// stop at the first key outside the namespace and list nothing.
		start = prefix
	}
	it, err := v.txn.LowerBound(k.Resource, indexID, start)
	if err != nil {
		return
	}
	for raw := it.Next(); raw != nil; raw = it.Next() {
		r := raw.(*Record)
		if len(r.Key) < len(prefix) || r.Key[:len(prefix)] != prefix {
			return
		}
		if !fn(r) {
			return
		}
	}
}

// PodsOnNode calls fn for each pod bound to node ("" for unbound pods).
func (v *View) PodsOnNode(node string, fn func(*Record) bool) {
	it, err := v.txn.Get(api.Pod.Resource, indexNode, node)
	if err != nil {
		return
	}
	for raw := it.Next(); raw != nil; raw = it.Next() {
		if !fn(raw.(*Record)) {
			return
		}
	}
}

// Owned calls fn for each object of kind k with an ownerReference to uid.
func (v *View) Owned(k *api.Kind, uid string, fn func(*Record) bool) {
	it, err := v.txn.Get(k.Resource, indexOwner, uid)
	if err != nil {
		return
	}
	for raw := it.Next(); raw != nil; raw = it.Next() {
		if !fn(raw.(*Record)) {
			return
		}
	}
}

// Orphans calls fn for each object of kind k in namespace that has no
// controller ownerReference, in key order, until fn returns false.
func (v *View) Orphans(k *api.Kind, namespace string, fn func(*Record) bool) {
	if !orphanKinds[k] {
		v.List(k, namespace, func(r *Record) bool {
			return metav1.GetControllerOfNoCopy(r.Obj) != nil || fn(r)
		})
		return
	}
	it, err := v.txn.Get(k.Resource, indexOrphan, namespace)
	if err != nil {
		return
	}
	for raw := it.Next(); raw != nil; raw = it.Next() {
		if !fn(raw.(*Record)) {
			return
		}
	}
}

// Count returns the number of objects of kind k.
func (v *View) Count(k *api.Kind) int {
	n := 0
	v.List(k, "", func(*Record) bool { n++; return true })
	return n
}

func formatRV(index uint64) string { return strconv.FormatUint(index, 10) }

// ParseRV parses a resourceVersion; "" is 0.
func ParseRV(s string) (uint64, error) {
	if s == "" {
		return 0, nil
	}
	v, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("invalid resourceVersion %q: must be a decimal number", s)
	}
	return v, nil
}
