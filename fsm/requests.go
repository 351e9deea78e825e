package fsm

import (
	"cmp"
	"fmt"
	"slices"

	"github.com/hashicorp/go-memdb"
	"google.golang.org/protobuf/encoding/protowire"

	"orch.dev/orch/api"
)

// RequestWindow is how many log entries a request ID is remembered for. A
// client retrying an ambiguous write (leader lost mid-commit, connection
// reset) within this window gets the original outcome instead of a second
// application. Pruning is by index, so every server forgets the same IDs at
// the same entry.
const RequestWindow = 200_000

const tableRequests = "requests"

// Request records a successfully applied write that carried a request ID.
type Request struct {
	ID        string
	Index     uint64
	Kind      string
	Namespace string
	Name      string
	UID       string
	Deleted   bool
}

func requestsTable() *memdb.TableSchema {
	return &memdb.TableSchema{Name: tableRequests, Indexes: map[string]*memdb.IndexSchema{
		indexID: {Name: indexID, Unique: true, Indexer: &memdb.StringFieldIndex{Field: "ID"}},
	}}
}

// requestQueue holds the remembered requests in the order they were
// applied, so that the oldest are forgotten without a second index. It is
// derived from the requests table (rebuilt on restore) and only Apply,
// which is single-threaded and always commits, changes it.
type requestQueue struct {
	items []*Request
	head  int
}

func (q *requestQueue) push(r *Request) { q.items = append(q.items, r) }

// popOlderThan removes and returns the requests applied before cutoff.
func (q *requestQueue) popOlderThan(cutoff uint64, fn func(*Request)) {
	for q.head < len(q.items) && q.items[q.head].Index < cutoff {
		fn(q.items[q.head])
		q.items[q.head] = nil
		q.head++
	}
	if q.head > 4096 && q.head > len(q.items)/2 {
		q.items = append(q.items[:0], q.items[q.head:]...)
		q.head = 0
	}
}

// rebuildRequestQueue orders a restored requests table by index.
func rebuildRequestQueue(db *memdb.MemDB) *requestQueue {
	q := &requestQueue{}
	it, err := db.Txn(false).Get(tableRequests, indexID)
	if err != nil {
		panic(err)
	}
	for raw := it.Next(); raw != nil; raw = it.Next() {
		q.items = append(q.items, raw.(*Request))
	}
	slices.SortFunc(q.items, func(a, b *Request) int { return cmp.Compare(a.Index, b.Index) })
	return q
}

// Request returns the record of an applied request ID, or nil.
func (v *View) Request(id string) *Request {
	raw, err := v.txn.First(tableRequests, indexID, id)
	if err != nil || raw == nil {
		return nil
	}
	return raw.(*Request)
}

// applyOnce applies cmd unless its request ID was already applied, in which
// case the result describes the earlier application and nothing changes.
func (a *applier) applyOnce(cmd Command) *Result {
	id := cmd.Request()
	if id == "" {
		return a.apply(cmd)
	}
	if req := a.request(id); req != nil {
		res := &Result{Duplicate: req, Deleted: req.Deleted}
		if k, ok := api.KindByName(req.Kind); ok && !req.Deleted {
			if rec := a.get(k, ObjectKey(k, req.Namespace, req.Name)); rec != nil {
				res.Record = rec
			}
		}
		return res
	}
	res := a.apply(cmd)
	if res.Err != nil {
		return res
	}
	req := &Request{ID: id, Index: a.index, Deleted: res.Deleted}
	if rec := res.Record; rec != nil {
		req.Kind, req.Namespace, req.Name, req.UID = rec.Kind.Kind, rec.Obj.GetNamespace(), rec.Obj.GetName(), string(rec.Obj.GetUID())
	}
	if err := a.txn.Insert(tableRequests, req); err != nil {
		panic(err)
	}
	a.writtenRequests[id] = req
	a.requests.push(req)
	a.pruneRequests()
	return res
}

// pruneRequests forgets request IDs older than the window.
func (a *applier) pruneRequests() {
	if a.index <= a.window {
		return
	}
	a.requests.popOlderThan(a.index-a.window, func(r *Request) {
		if err := a.txn.Delete(tableRequests, r); err != nil {
			panic(err)
		}
		a.writtenRequests[r.ID] = nil
	})
}

// request returns the record of an applied request ID, or nil; like get,
// it does not read through the write transaction.
func (a *applier) request(id string) *Request {
	if req, ok := a.writtenRequests[id]; ok {
		return req
	}
	raw, err := a.base.First(tableRequests, indexID, id)
	if err != nil || raw == nil {
		return nil
	}
	return raw.(*Request)
}

// Request snapshot record fields.
const (
	fReqID        = 1
	fReqIndex     = 2
	fReqKind      = 3
	fReqNamespace = 4
	fReqName      = 5
	fReqUID       = 6
	fReqDeleted   = 7
)

func appendRequest(b []byte, r *Request) []byte {
	b = appendString(b, fReqID, r.ID)
	b = appendVarint(b, fReqIndex, r.Index)
	b = appendString(b, fReqKind, r.Kind)
	b = appendString(b, fReqNamespace, r.Namespace)
	b = appendString(b, fReqName, r.Name)
	b = appendString(b, fReqUID, r.UID)
	if r.Deleted {
		b = appendVarint(b, fReqDeleted, 1)
	}
	return b
}

func decodeRequest(b []byte) (*Request, error) {
	r := &Request{}
	err := walkFields(b, func(num protowire.Number, v fieldValue) error {
		switch num {
		case fReqID:
			r.ID = string(v.bytes)
		case fReqIndex:
			r.Index = v.varint
		case fReqKind:
			r.Kind = string(v.bytes)
		case fReqNamespace:
			r.Namespace = string(v.bytes)
		case fReqName:
			r.Name = string(v.bytes)
		case fReqUID:
			r.UID = string(v.bytes)
		case fReqDeleted:
			r.Deleted = v.varint != 0
		}
		return nil
	})
	if err == nil && r.ID == "" {
		err = fmt.Errorf("request record without an ID")
	}
	return r, err
}
