package fsm

import (
	"errors"
	"fmt"

	"google.golang.org/protobuf/encoding/protowire"
)

// MessageType is byte 0 of every log entry. Numbers are never reused or
// renumbered: retired types stay reserved here.
type MessageType uint8

// IgnoreUnknownFlag marks a command that servers which do not know its type
// may skip without diverging (it only carries optional information).
const IgnoreUnknownFlag MessageType = 0x80

const (
	CreateType MessageType = 1
	UpdateType MessageType = 2
	DeleteType MessageType = 3
	BatchType  MessageType = 4
	BindType   MessageType = 5
	EvictType  MessageType = 6
)

// commandVersion is byte 1 of a log entry: the payload format version of its
// type. A server refuses (halts on) versions newer than it knows.
var commandVersion = map[MessageType]uint8{
	CreateType: 1,
	UpdateType: 1,
	DeleteType: 1,
	BatchType:  1,
	BindType:   1,
	EvictType:  1,
}

// Command is one typed log command.
type Command interface {
	Type() MessageType
	// Request is the client's idempotency key, "" when none.
	Request() string
	appendPayload(b []byte) []byte
	decodePayload(b []byte) error
}

// Create adds a new object. The proposer has defaulted and validated it and
// chosen its uid and creationTimestamp.
type Create struct {
	Kind      string // api.Kind.Kind
	Object    []byte // protobuf encoding of the object
	RequestID string // client idempotency key (optional)
}

// Update replaces an object. If the object carries a resourceVersion or uid
// they are preconditions. Status selects the status subresource: only
// .status changes. Otherwise .status is kept from the stored object.
type Update struct {
	Kind      string
	Object    []byte
	Status    bool
	RequestID string
}

// Delete removes an object, or marks it for deletion when it has finalizers.
type Delete struct {
	Kind, Namespace, Name string
	// Preconditions; empty/zero means none.
	UID             string
	ResourceVersion uint64
	// DeletionTime (Unix nanoseconds, chosen by the proposer) is recorded
	// as metadata.deletionTimestamp when finalizers delay the removal.
	DeletionTime int64
	// Orphan keeps dependents, removing their ownerReferences to the object.
	Orphan bool
	// Grace is a pod's termination grace period in seconds; nil uses the
	// pod's terminationGracePeriodSeconds. A bound, running pod is only
	// marked for deletion (its node stops it and confirms with grace 0).
	Grace     *int64
	RequestID string
}

// Bind assigns pending pods to nodes: one entry for a scheduler's whole
// plan. Apply re-checks every binding against the state it applies to and
// refuses, one by one, those that no longer fit (the scheduler retries).
type Bind struct {
	Bindings []Binding
	// Time (Unix nanoseconds, chosen by the proposer) stamps the
	// PodScheduled condition.
	Time      int64
	RequestID string
}

// Binding places one pod.
type Binding struct {
	Namespace, Name, UID, Node string
}

// Evict deletes a pod (gracefully) unless that would leave its Deployment
// with fewer available pods than spec.replicas - maxUnavailable; the check
// and the deletion happen in one Apply, so concurrent evictions cannot
// together break the budget.
type Evict struct {
	Namespace, Name, UID string
	DeletionTime         int64
	Grace                *int64
	RequestID            string
}

// Batch applies several commands in one log entry, in order, each with its
// own result. All its changes share the entry's index.
type Batch struct {
	Commands  []Command
	RequestID string
}

func (c *Create) Request() string { return c.RequestID }
func (c *Bind) Request() string   { return c.RequestID }
func (c *Evict) Request() string  { return c.RequestID }
func (c *Update) Request() string { return c.RequestID }
func (c *Delete) Request() string { return c.RequestID }
func (c *Batch) Request() string  { return c.RequestID }

func (*Create) Type() MessageType { return CreateType }
func (*Update) Type() MessageType { return UpdateType }
func (*Delete) Type() MessageType { return DeleteType }
func (*Batch) Type() MessageType  { return BatchType }
func (*Bind) Type() MessageType   { return BindType }
func (*Evict) Type() MessageType  { return EvictType }

// Encode returns the log entry bytes for c: type, version, payload.
func Encode(c Command) []byte {
	t := c.Type()
	b := make([]byte, 2, 2+payloadSizeHint(c))
	b[0], b[1] = byte(t), commandVersion[t&^IgnoreUnknownFlag]
	return c.appendPayload(b)
}

// payloadSizeHint estimates a payload's size so that Encode allocates once:
// objects dominate, the rest is small.
func payloadSizeHint(c Command) int {
	switch c := c.(type) {
	case *Create:
		return len(c.Object) + len(c.Kind) + len(c.RequestID) + 16
	case *Update:
		return len(c.Object) + len(c.Kind) + len(c.RequestID) + 16
	case *Batch:
		n := 16
		for _, sub := range c.Commands {
			n += payloadSizeHint(sub) + 16
		}
		return n
	}
	return 64
}

// EncodeBatch builds a Batch entry from commands already encoded with
// Encode, without encoding them again.
func EncodeBatch(encoded [][]byte) []byte {
	n := 2
	for _, e := range encoded {
		n += protowire.SizeTag(fCommand) + protowire.SizeBytes(len(e))
	}
	b := make([]byte, 2, n)
	b[0], b[1] = byte(BatchType), commandVersion[BatchType]
	for _, e := range encoded {
		b = appendBytes(b, fCommand, e)
	}
	return b
}

// Decode parses a log entry. Malformed input yields ErrBadCommand; a type or
// version this server does not know yields ErrFromTheFuture (or, with the
// ignorable flag set, a nil command and nil error).
func Decode(b []byte) (Command, error) {
	if len(b) < 2 {
		return nil, fmt.Errorf("%w: %d bytes, need at least 2", ErrBadCommand, len(b))
	}
	t, v := MessageType(b[0]), b[1]
	var c Command
	switch t &^ IgnoreUnknownFlag {
	case CreateType:
		c = &Create{}
	case UpdateType:
		c = &Update{}
	case DeleteType:
		c = &Delete{}
	case BatchType:
		c = &Batch{}
	case BindType:
		c = &Bind{}
	case EvictType:
		c = &Evict{}
	default:
		if t&IgnoreUnknownFlag != 0 {
			return nil, nil
		}
		return nil, fmt.Errorf("%w: unknown command type %d", ErrFromTheFuture, t)
	}
	if known := commandVersion[t&^IgnoreUnknownFlag]; v > known {
		if t&IgnoreUnknownFlag != 0 {
			return nil, nil
		}
		return nil, fmt.Errorf("%w: command type %d version %d (this server knows version %d)", ErrFromTheFuture, t, v, known)
	} else if v == 0 {
		return nil, fmt.Errorf("%w: command type %d has version 0", ErrBadCommand, t)
	}
	if err := c.decodePayload(b[2:]); err != nil {
		if errors.Is(err, ErrFromTheFuture) {
			// A batch holding a command this server cannot apply must
			// halt it like the command alone would: rejecting the batch
			// as malformed would diverge from servers that apply it.
			return nil, fmt.Errorf("type %d: %w", t, err)
		}
		return nil, fmt.Errorf("%w: type %d: %v", ErrBadCommand, t, err)
	}
	return c, nil
}

// Payload field numbers. Like message types, they are never reused.
const (
	fKind      = 1
	fObject    = 2
	fStatus    = 3
	fNamespace = 4
	fName      = 5
	fUID       = 6
	fRV        = 7
	fDelTime   = 8
	fOrphan    = 9
	fCommand   = 10
	fRequestID = 11
	fGrace     = 12
	fBinding   = 13
	fTime      = 14
	fNode      = 15
)

func (c *Create) appendPayload(b []byte) []byte {
	b = appendString(b, fKind, c.Kind)
	b = appendBytes(b, fObject, c.Object)
	return appendString(b, fRequestID, c.RequestID)
}

func (c *Create) decodePayload(b []byte) error {
	return walkFields(b, func(num protowire.Number, v fieldValue) error {
		switch num {
		case fKind:
			c.Kind = string(v.bytes)
		case fObject:
			c.Object = v.bytes
		case fRequestID:
			c.RequestID = string(v.bytes)
		}
		return nil
	})
}

func (c *Update) appendPayload(b []byte) []byte {
	b = appendString(b, fKind, c.Kind)
	b = appendBytes(b, fObject, c.Object)
	if c.Status {
		b = appendVarint(b, fStatus, 1)
	}
	return appendString(b, fRequestID, c.RequestID)
}

func (c *Update) decodePayload(b []byte) error {
	return walkFields(b, func(num protowire.Number, v fieldValue) error {
		switch num {
		case fKind:
			c.Kind = string(v.bytes)
		case fObject:
			c.Object = v.bytes
		case fStatus:
			c.Status = v.varint != 0
		case fRequestID:
			c.RequestID = string(v.bytes)
		}
		return nil
	})
}

func (c *Delete) appendPayload(b []byte) []byte {
	b = appendString(b, fKind, c.Kind)
	b = appendString(b, fNamespace, c.Namespace)
	b = appendString(b, fName, c.Name)
	b = appendString(b, fUID, c.UID)
	if c.ResourceVersion != 0 {
		b = appendVarint(b, fRV, c.ResourceVersion)
	}
	if c.DeletionTime != 0 {
		b = appendVarint(b, fDelTime, uint64(c.DeletionTime))
	}
	if c.Orphan {
		b = appendVarint(b, fOrphan, 1)
	}
	if c.Grace != nil {
		b = appendVarint(b, fGrace, uint64(*c.Grace))
	}
	return appendString(b, fRequestID, c.RequestID)
}

func (c *Delete) decodePayload(b []byte) error {
	return walkFields(b, func(num protowire.Number, v fieldValue) error {
		switch num {
		case fKind:
			c.Kind = string(v.bytes)
		case fNamespace:
			c.Namespace = string(v.bytes)
		case fName:
			c.Name = string(v.bytes)
		case fUID:
			c.UID = string(v.bytes)
		case fRV:
			c.ResourceVersion = v.varint
		case fDelTime:
			c.DeletionTime = int64(v.varint)
		case fOrphan:
			c.Orphan = v.varint != 0
		case fGrace:
			g := int64(v.varint)
			c.Grace = &g
		case fRequestID:
			c.RequestID = string(v.bytes)
		}
		return nil
	})
}

func (c *Batch) appendPayload(b []byte) []byte {
	for _, sub := range c.Commands {
		b = appendBytes(b, fCommand, Encode(sub))
	}
	return appendString(b, fRequestID, c.RequestID)
}

func (c *Batch) decodePayload(b []byte) error {
	return walkFields(b, func(num protowire.Number, v fieldValue) error {
		if num == fRequestID {
			c.RequestID = string(v.bytes)
		}
		if num != fCommand {
			return nil
		}
		sub, err := Decode(v.bytes)
		if err != nil {
			return err
		}
		if sub == nil {
			return nil // an ignorable command from a newer version
		}
		if sub.Type() == BatchType {
			return fmt.Errorf("nested batch")
		}
		c.Commands = append(c.Commands, sub)
		return nil
	})
}

func appendString(b []byte, num protowire.Number, s string) []byte {
	if s == "" {
		return b
	}
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendString(b, s)
}

func appendBytes(b []byte, num protowire.Number, v []byte) []byte {
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendBytes(b, v)
}

func appendVarint(b []byte, num protowire.Number, v uint64) []byte {
	b = protowire.AppendTag(b, num, protowire.VarintType)
	return protowire.AppendVarint(b, v)
}

type fieldValue struct {
	bytes  []byte
	varint uint64
}

// walkFields visits every field of a protobuf-encoded payload; unknown field
// numbers are skipped, so newer writers may add fields.
func walkFields(b []byte, fn func(protowire.Number, fieldValue) error) error {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return protowire.ParseError(n)
		}
		b = b[n:]
		var v fieldValue
		switch typ {
		case protowire.BytesType:
			v.bytes, n = protowire.ConsumeBytes(b)
		case protowire.VarintType:
			v.varint, n = protowire.ConsumeVarint(b)
		default:
			n = protowire.ConsumeFieldValue(num, typ, b)
		}
		if n < 0 {
			return protowire.ParseError(n)
		}
		b = b[n:]
		if err := fn(num, v); err != nil {
			return err
		}
	}
	return nil
}

func (c *Bind) appendPayload(b []byte) []byte {
	var sub []byte
	for _, bd := range c.Bindings {
		sub = appendString(sub[:0], fNamespace, bd.Namespace)
		sub = appendString(sub, fName, bd.Name)
		sub = appendString(sub, fUID, bd.UID)
		sub = appendString(sub, fNode, bd.Node)
		b = appendBytes(b, fBinding, sub)
	}
	if c.Time != 0 {
		b = appendVarint(b, fTime, uint64(c.Time))
	}
	return appendString(b, fRequestID, c.RequestID)
}

func (c *Bind) decodePayload(b []byte) error {
	return walkFields(b, func(num protowire.Number, v fieldValue) error {
		switch num {
		case fBinding:
			var bd Binding
			err := walkFields(v.bytes, func(num protowire.Number, v fieldValue) error {
				switch num {
				case fNamespace:
					bd.Namespace = string(v.bytes)
				case fName:
					bd.Name = string(v.bytes)
				case fUID:
					bd.UID = string(v.bytes)
				case fNode:
					bd.Node = string(v.bytes)
				}
				return nil
			})
			if err != nil {
				return err
			}
			c.Bindings = append(c.Bindings, bd)
		case fTime:
			c.Time = int64(v.varint)
		case fRequestID:
			c.RequestID = string(v.bytes)
		}
		return nil
	})
}

func (c *Evict) appendPayload(b []byte) []byte {
	b = appendString(b, fNamespace, c.Namespace)
	b = appendString(b, fName, c.Name)
	b = appendString(b, fUID, c.UID)
	if c.DeletionTime != 0 {
		b = appendVarint(b, fDelTime, uint64(c.DeletionTime))
	}
	if c.Grace != nil {
		b = appendVarint(b, fGrace, uint64(*c.Grace))
	}
	return appendString(b, fRequestID, c.RequestID)
}

func (c *Evict) decodePayload(b []byte) error {
	return walkFields(b, func(num protowire.Number, v fieldValue) error {
		switch num {
		case fNamespace:
			c.Namespace = string(v.bytes)
		case fName:
			c.Name = string(v.bytes)
		case fUID:
			c.UID = string(v.bytes)
		case fDelTime:
			c.DeletionTime = int64(v.varint)
		case fGrace:
			g := int64(v.varint)
			c.Grace = &g
		case fRequestID:
			c.RequestID = string(v.bytes)
		}
		return nil
	})
}
