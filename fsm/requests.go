package fsm

import (
	"fmt"

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

const (
	tableRequests = "requests"
	indexIndex    = "index"
)

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
		indexID:    {Name: indexID, Unique: true, Indexer: &memdb.StringFieldIndex{Field: "ID"}},
		indexIndex: {Name: indexIndex, Indexer: &memdb.UintFieldIndex{Field: "Index"}},
	}}
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
	if raw, _ := a.txn.First(tableRequests, indexID, id); raw != nil {
		req := raw.(*Request)
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
	a.pruneRequests()
	return res
}

// pruneRequests forgets request IDs older than the window.
func (a *applier) pruneRequests() {
	if a.index <= RequestWindow {
		return
	}
	cutoff := a.index - RequestWindow
	for {
		raw, err := a.txn.First(tableRequests, indexIndex)
		if err != nil || raw == nil || raw.(*Request).Index >= cutoff {
			return
		}
		if err := a.txn.Delete(tableRequests, raw); err != nil {
			panic(err)
		}
	}
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
