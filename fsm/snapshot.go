package fsm

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"io"

	"github.com/hashicorp/go-memdb"
	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/encoding/protowire"

	"orch.dev/orch/api"
)

// Snapshot format: the magic, a format version, the applied index, then
// records of [type byte][uvarint length][payload], ending with an end record
// whose payload is the record count; the last 4 bytes are a CRC-32C of all
// that precedes them. Record types, like log command types, are never
// reused; types with the high bit set may be skipped by older readers.
const (
	snapshotMagic   = "ORCHSNAP"
	snapshotVersion = 1

	recordObject   byte = 1
	recordRequest  byte = 2
	recordEnd      byte = 0x7f
	recordSkipFlag byte = 0x80
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// ErrBadSnapshot means a snapshot is truncated, corrupted or not a snapshot.
var ErrBadSnapshot = errors.New("invalid snapshot")

type fsmSnapshot struct {
	view *View
}

// Snapshot captures the current state; Persist may run concurrently with
// later applies because it reads an immutable memdb snapshot.
func (f *FSM) Snapshot() (raft.FSMSnapshot, error) {
	return &fsmSnapshot{view: f.View()}, nil
}

func (s *fsmSnapshot) Persist(sink raft.SnapshotSink) error {
	if err := WriteSnapshot(sink, s.view); err != nil {
		sink.Cancel()
		return err
	}
	return sink.Close()
}

func (s *fsmSnapshot) Release() {}

// WriteSnapshot writes the state of view to w in the snapshot format.
func WriteSnapshot(w io.Writer, view *View) error {
	crc := crc32.New(castagnoli)
	bw := bufio.NewWriterSize(io.MultiWriter(w, crc), 256<<10)
	hdr := append([]byte(snapshotMagic), snapshotVersion)
	hdr = binary.AppendUvarint(hdr, view.Index())
	if _, err := bw.Write(hdr); err != nil {
		return err
	}
	var count uint64
	var payload []byte
	var werr error
	for _, k := range api.Kinds {
		view.List(k, "", func(r *Record) bool {
			obj, err := r.Obj.Marshal()
			if err != nil {
				werr = fmt.Errorf("encode %s %s: %w", k.Kind, r.Key, err)
				return false
			}
			payload = appendString(payload[:0], fKind, k.Kind)
			payload = appendBytes(payload, fObject, obj)
			werr = writeRecord(bw, recordObject, payload)
			count++
			return werr == nil
		})
		if werr != nil {
			return werr
		}
	}
	it, err := view.txn.Get(tableRequests, indexID)
	if err != nil {
		return err
	}
	for raw := it.Next(); raw != nil; raw = it.Next() {
		payload = appendRequest(payload[:0], raw.(*Request))
		if err := writeRecord(bw, recordRequest, payload); err != nil {
			return err
		}
		count++
	}
	if err := writeRecord(bw, recordEnd, binary.AppendUvarint(nil, count)); err != nil {
		return err
	}
	if err := bw.Flush(); err != nil {
		return err
	}
	_, err = w.Write(binary.BigEndian.AppendUint32(nil, crc.Sum32()))
	return err
}

func writeRecord(w *bufio.Writer, t byte, payload []byte) error {
	var hdr [1 + binary.MaxVarintLen64]byte
	hdr[0] = t
	n := binary.PutUvarint(hdr[1:], uint64(len(payload)))
	if _, err := w.Write(hdr[:1+n]); err != nil {
		return err
	}
	_, err := w.Write(payload)
	return err
}

// Restore replaces the state with a snapshot's. On error the current state
// is kept.
func (f *FSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	db, index, err := ReadSnapshot(rc)
	if err != nil {
		return err
	}
	f.db.Store(db)
	f.requests = rebuildRequestQueue(db)
	f.usage = usageOf(db.Txn(false))
	f.history.reset(index)
	f.setApplied(index)
	f.logger.Info("restored snapshot", "index", index)
	return nil
}

// crcReader feeds everything read through a hash.
type crcReader struct {
	r   *bufio.Reader
	crc hash.Hash32
}

func (c *crcReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.crc.Write(p[:n])
	return n, err
}

func (c *crcReader) ReadByte() (byte, error) {
	b, err := c.r.ReadByte()
	if err == nil {
		c.crc.Write([]byte{b})
	}
	return b, err
}

// ReadSnapshot parses a snapshot into a new store, checking its integrity.
func ReadSnapshot(r io.Reader) (*memdb.MemDB, uint64, error) {
	cr := &crcReader{r: bufio.NewReaderSize(r, 256<<10), crc: crc32.New(castagnoli)}
	bad := func(format string, args ...any) (*memdb.MemDB, uint64, error) {
		return nil, 0, fmt.Errorf("%w: %s", ErrBadSnapshot, fmt.Sprintf(format, args...))
	}
	magic := make([]byte, len(snapshotMagic)+1)
	if _, err := io.ReadFull(cr, magic); err != nil {
		return bad("reading header: %v", err)
	}
	if string(magic[:len(snapshotMagic)]) != snapshotMagic {
		return bad("not an orch snapshot")
	}
	if v := magic[len(snapshotMagic)]; v != snapshotVersion {
		return bad("format version %d, this server reads version %d", v, snapshotVersion)
	}
	index, err := binary.ReadUvarint(cr)
	if err != nil {
		return bad("reading index: %v", err)
	}
	db := newDB()
	txn := db.Txn(true)
	var count uint64
	var payload []byte
	for {
		t, err := cr.ReadByte()
		if err != nil {
			return bad("truncated after %d records", count)
		}
		n, err := binary.ReadUvarint(cr)
		if err != nil || n > 64<<20 {
			return bad("bad record length after %d records", count)
		}
		if uint64(cap(payload)) < n {
			payload = make([]byte, n)
		}
		payload = payload[:n]
		if _, err := io.ReadFull(cr, payload); err != nil {
			return bad("truncated in record %d", count+1)
		}
		switch {
		case t == recordObject:
			rec, err := decodeObjectRecord(payload)
			if err != nil {
				return bad("record %d: %v", count+1, err)
			}
			if err := txn.Insert(rec.Kind.Resource, rec); err != nil {
				return bad("record %d: %v", count+1, err)
			}
			count++
		case t == recordRequest:
			req, err := decodeRequest(payload)
			if err != nil {
				return bad("record %d: %v", count+1, err)
			}
			if err := txn.Insert(tableRequests, req); err != nil {
				return bad("record %d: %v", count+1, err)
			}
			count++
		case t == recordEnd:
			want, _ := binary.Uvarint(payload)
			if want != count {
				return bad("holds %d records, its trailer says %d", count, want)
			}
			sum := cr.crc.Sum32()
			var tail [4]byte
			if _, err := io.ReadFull(cr.r, tail[:]); err != nil {
				return bad("missing checksum")
			}
			if binary.BigEndian.Uint32(tail[:]) != sum {
				return bad("checksum mismatch")
			}
			if err := txn.Insert(tableMeta, &metaRow{Key: "applied", Index: index}); err != nil {
				return bad("%v", err)
			}
			txn.Commit()
			return db, index, nil
		case t&recordSkipFlag != 0:
			// A record type from a newer version that older ones may skip.
		default:
			return bad("unknown record type %d", t)
		}
	}
}

func decodeObjectRecord(payload []byte) (*Record, error) {
	var kind string
	var obj []byte
	err := walkFields(payload, func(num protowire.Number, v fieldValue) error {
		switch num {
		case fKind:
			kind = string(v.bytes)
		case fObject:
			obj = v.bytes
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	k, ok := api.KindByName(kind)
	if !ok {
		return nil, fmt.Errorf("unknown kind %q", kind)
	}
	o, err := k.Decode(obj)
	if err != nil {
		return nil, err
	}
	version, err := ParseRV(o.GetResourceVersion())
	if err != nil {
		return nil, err
	}
	return newRecord(k, o, version), nil
}
