// Package fake is an in-memory runtime.Runtime for unit tests of what sits
// above the runtime (the kubelet): no containerd, no network namespaces, no
// processes, and no waiting unless a test lets time pass (run the test in
// a testing/synctest bubble and that is instant too).
//
// A test scripts how containers behave (Program: run, exit by themselves,
// crash, ignore SIGTERM, be OOM-killed, fail to start), which images are
// present and which the "registry" has, which calls fail (FailNext), and
// what exec commands answer (SetExec); it then reads back what was called
// (Calls). Statuses, reasons, exit codes, events and errors follow the
// runtime.Runtime contract as the containerd implementation does, so code
// tested against the fake behaves the same on a node.
//
// Like containerd, the fake's state outlives Close: to test an agent
// restart, close it and hand the same fake to the new agent. Reboot
// simulates a machine reboot.
//
// This package must never be used outside tests.
package fake

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"time"

	"orch.dev/orch/node/runtime"
)

// Options configure a fake runtime.
type Options struct {
	// PodCIDR is where sandbox IPs come from: 10.244.0.0/24 by default
	// (the first address is the bridge's, as on a node).
	PodCIDR string
	// Images are present from the start.
	Images []string
}

// Op names a Runtime method, for Calls and FailNext.
type Op string

// The operations.
const (
	OpEnsureImage     Op = "EnsureImage"
	OpImportImages    Op = "ImportImages"
	OpListImages      Op = "ListImages"
	OpCreateSandbox   Op = "CreateSandbox"
	OpRemoveSandbox   Op = "RemoveSandbox"
	OpListSandboxes   Op = "ListSandboxes"
	OpCreateContainer Op = "CreateContainer"
	OpStartContainer  Op = "StartContainer"
	OpStopContainer   Op = "StopContainer"
	OpRemoveContainer Op = "RemoveContainer"
	OpContainerStatus Op = "ContainerStatus"
	OpListContainers  Op = "ListContainers"
	OpExec            Op = "Exec"
	OpLogs            Op = "Logs"
)

// Call records one call of a Runtime method.
type Call struct {
	Op    Op
	ID    string        // sandbox or container ID, when the call names one (or created one)
	Name  string        // pod name (sandboxes), container name (containers), image reference (images)
	Grace time.Duration // StopContainer's grace
	Cmd   []string      // Exec's command
	At    time.Time
	Err   error // what the call returned
}

// Runtime is the fake. Its zero value is not usable: call New.
type Runtime struct {
	mu         sync.Mutex
	prefix     netip.Prefix
	ipsInUse   map[netip.Addr]bool
	images     map[string]runtime.ImageInfo // present, by normalised name
	registry   map[string]runtime.ImageInfo // pullable
	versions   map[string]int               // pushes per registry name: new digest each
	pullErrs   map[string]error
	sandboxes  map[string]*runtime.Sandbox
	sbOrder    []string
	containers map[string]*container
	ctrOrder   []string
	programs   map[string]Program // by container name
	imgProgs   map[string]Program // by normalised image name
	progFunc   func(runtime.SandboxConfig, runtime.ContainerConfig) Program
	failures   map[Op][]error
	exec       ExecFunc
	calls      []Call
	subs       map[*subscriber]struct{}
	next       int
	nextPID    uint32
}

var _ runtime.Runtime = (*Runtime)(nil)

// New returns a fake runtime with nothing running.
func New(opts Options) *Runtime {
	if opts.PodCIDR == "" {
		opts.PodCIDR = "10.244.0.0/24"
	}
	prefix, err := netip.ParsePrefix(opts.PodCIDR)
	if err != nil {
		panic("fake runtime: bad PodCIDR: " + err.Error())
	}
	f := &Runtime{
		prefix: prefix.Masked(), ipsInUse: map[netip.Addr]bool{},
		images: map[string]runtime.ImageInfo{}, registry: map[string]runtime.ImageInfo{},
		versions: map[string]int{}, pullErrs: map[string]error{},
		sandboxes: map[string]*runtime.Sandbox{}, containers: map[string]*container{},
		programs: map[string]Program{}, imgProgs: map[string]Program{}, failures: map[Op][]error{},
		subs: map[*subscriber]struct{}{}, nextPID: 1000,
	}
	f.AddImage(opts.Images...)
	return f
}

// record appends a call; the caller holds f.mu.
func (f *Runtime) record(c Call) {
	c.At = time.Now()
	f.calls = append(f.calls, c)
}

// failure returns the error queued for op by FailNext, if any; the caller
// holds f.mu.
func (f *Runtime) failure(op Op) error {
	q := f.failures[op]
	if len(q) == 0 {
		return nil
	}
	f.failures[op] = q[1:]
	return q[0]
}

// FailNext makes the next call of op return err (without doing anything).
// Several calls queue several failures.
func (f *Runtime) FailNext(op Op, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.failures[op] = append(f.failures[op], err)
}

// Calls returns the calls made so far of the given ops (all calls without
// ops), oldest first.
func (f *Runtime) Calls(ops ...Op) []Call {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []Call
	for _, c := range f.calls {
		if len(ops) == 0 || slices.Contains(ops, c.Op) {
			c.Cmd = slices.Clone(c.Cmd)
			out = append(out, c)
		}
	}
	return out
}

// ResetCalls forgets the calls recorded so far.
func (f *Runtime) ResetCalls() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = nil
}

func (f *Runtime) newID(kind string) string {
	f.next++
	return fmt.Sprintf("%s%d", kind, f.next)
}

// CreateSandbox implements runtime.Runtime.
func (f *Runtime) CreateSandbox(ctx context.Context, cfg runtime.SandboxConfig) (runtime.Sandbox, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	call := Call{Op: OpCreateSandbox, Name: cfg.Name}
	sb, err := f.createSandbox(cfg)
	call.ID, call.Err = sb.ID, err
	f.record(call)
	return sb, err
}

func (f *Runtime) createSandbox(cfg runtime.SandboxConfig) (runtime.Sandbox, error) {
	if err := f.failure(OpCreateSandbox); err != nil {
		return runtime.Sandbox{}, err
	}
	if cfg.Hostname == "" {
		cfg.Hostname = cfg.Name
	}
	ip, ok := f.allocIP()
	if !ok {
		return runtime.Sandbox{}, fmt.Errorf("CNI add: no IP addresses available in range set: %s", f.prefix)
	}
	id := f.newID("sb")
	sb := &runtime.Sandbox{ID: id, Config: cfg, IP: ip.String(), NetNS: "/run/orch/runtime/netns/" + id, CreatedAt: time.Now().UTC()}
	f.sandboxes[id] = sb
	f.sbOrder = append(f.sbOrder, id)
	return *sb, nil
}

func (f *Runtime) allocIP() (netip.Addr, bool) {
	// .0 is the network, the next the bridge (gateway).
	for a := f.prefix.Addr().Next().Next(); f.prefix.Contains(a); a = a.Next() {
		if !f.ipsInUse[a] && f.prefix.Contains(a.Next()) { // the last is broadcast
			f.ipsInUse[a] = true
			return a, true
		}
	}
	return netip.Addr{}, false
}

// RemoveSandbox implements runtime.Runtime.
func (f *Runtime) RemoveSandbox(ctx context.Context, id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	err := f.removeSandbox(id)
	f.record(Call{Op: OpRemoveSandbox, ID: id, Err: err})
	return err
}

func (f *Runtime) removeSandbox(id string) error {
	if err := f.failure(OpRemoveSandbox); err != nil {
		return err
	}
	n := 0
	for _, c := range f.containers {
		if c.st.SandboxID == id {
			n++
		}
	}
	if n > 0 {
		return fmt.Errorf("sandbox %s: %d containers: %w", id, n, runtime.ErrSandboxInUse)
	}
	sb, ok := f.sandboxes[id]
	if !ok {
		return nil
	}
	if ip, err := netip.ParseAddr(sb.IP); err == nil {
		delete(f.ipsInUse, ip)
	}
	delete(f.sandboxes, id)
	f.sbOrder = slices.DeleteFunc(f.sbOrder, func(s string) bool { return s == id })
	return nil
}

// ListSandboxes implements runtime.Runtime. Sandboxes are in creation order.
func (f *Runtime) ListSandboxes(ctx context.Context) ([]runtime.Sandbox, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.failure(OpListSandboxes); err != nil {
		return nil, err
	}
	out := make([]runtime.Sandbox, 0, len(f.sbOrder))
	for _, id := range f.sbOrder {
		out = append(out, *f.sandboxes[id])
	}
	return out, nil
}

// Reboot simulates a machine reboot: every sandbox is gone (network
// namespaces do not survive one), and containers that were running are
// StateUnknown with ReasonTaskLost (containerd keeps their records, not
// their processes). Nothing is sent on Events.
func (f *Runtime) Reboot() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.sandboxes, f.sbOrder, f.ipsInUse = map[string]*runtime.Sandbox{}, nil, map[netip.Addr]bool{}
	for _, c := range f.containers {
		if c.st.State == runtime.StateRunning {
			c.stopTimer()
			c.st.State, c.st.Reason, c.st.PID = runtime.StateUnknown, runtime.ReasonTaskLost, 0
			c.finish()
		}
	}
}

// digest makes a stable fake digest.
func digest(parts ...any) string {
	h := sha256.Sum256(fmt.Append(nil, parts...))
	return "sha256:" + hex.EncodeToString(h[:])
}
