// Package runtime is the worker's door to containers and pod networks: a
// small Runtime interface the kubelet (package node) programs against, a
// containerd implementation (containerd Go client, its own containerd
// namespace, CNI through libcni), log file helpers, and in fake/ an
// in-memory implementation for the kubelet's unit tests.
//
// A pod is a sandbox (a network namespace wired by the CNI bridge plugin
// with host-local IPAM from the node's pod CIDR, plus hostname, hosts and
// resolv.conf files) and its containers, which all join that network
// namespace. Every container carries labels naming its pod and attempt, so
// a restarted agent adopts what is running instead of restarting it.
//
// This package must never decide what should run: no restart policy,
// backoff, probing or pod status. It does what it is told, reports what it
// sees and keeps no state of its own that containerd, the CNI plugins or
// files under its state directory do not also hold.
package runtime

import (
	"context"
	"errors"
	"io"
	"time"
)

// Runtime runs pod sandboxes and their containers on one machine. All
// methods are safe for concurrent use. IDs are chosen by the runtime.
type Runtime interface {
	// EnsureImage makes ref present according to policy (pulling from its
	// registry when needed) and returns what is stored. Errors wrap
	// ErrImageNotFound (no such image locally with PullNever, or the registry
	// says it does not exist) or ErrImagePull (anything else that failed).
	EnsureImage(ctx context.Context, ref string, policy PullPolicy) (ImageInfo, error)
	// ImportImages stores every image of an OCI image layout or docker-save
	// tar stream and returns their names.
	ImportImages(ctx context.Context, r io.Reader) ([]string, error)
	// ListImages returns the images present.
	ListImages(ctx context.Context) ([]ImageInfo, error)

	// CreateSandbox creates the pod's network namespace, attaches it to the
	// pod network and writes its hostname, hosts and resolv.conf files.
	CreateSandbox(ctx context.Context, cfg SandboxConfig) (Sandbox, error)
	// RemoveSandbox detaches and deletes the sandbox's network namespace and
	// files. Its containers must have been removed first (ErrSandboxInUse).
	// Removing a sandbox that does not exist is not an error.
	RemoveSandbox(ctx context.Context, id string) error
	// ListSandboxes returns every sandbox this runtime created and has not
	// removed (after a reboot: none; network namespaces do not survive it).
	ListSandboxes(ctx context.Context) ([]Sandbox, error)

	// CreateContainer creates (does not start) a container in the sandbox.
	// The image must be present (else ErrImageNotFound).
	CreateContainer(ctx context.Context, sandboxID string, cfg ContainerConfig) (string, error)
	// StartContainer starts a created container. A process that cannot be
	// started (missing executable, bad working directory...) gives an error
	// wrapping ErrCannotRun, and the container's status says so (StateExited,
	// ReasonCannotRun, ExitCodeCannotRun). A container is started at most
	// once: a restart is a new container with the next Attempt.
	StartContainer(ctx context.Context, id string) error
	// StopContainer sends SIGTERM, waits up to grace for the process to
	// exit, then sends SIGKILL and waits for the exit. Stopping a container
	// that is not running is not an error.
	StopContainer(ctx context.Context, id string, grace time.Duration) error
	// RemoveContainer deletes a container that is not running (the caller
	// stops it first), its filesystem and its log file. Removing a container
	// that does not exist is not an error.
	RemoveContainer(ctx context.Context, id string) error
	// ContainerStatus returns a container's state; ErrNotFound if unknown.
	ContainerStatus(ctx context.Context, id string) (ContainerStatus, error)
	// ListContainers returns the status of every container of this runtime,
	// with labels, so an agent restart can adopt them.
	ListContainers(ctx context.Context) ([]ContainerStatus, error)

	// Exec runs cmd in a running container (non-interactive, no TTY, no
	// stdin), streams its output and returns its exit code. Cancel ctx to
	// kill it. The error is non-nil only when the command could not be run:
	// ErrCannotRun when it does not exist or cannot be executed. stdout and
	// stderr may be the same writer, or nil to discard.
	Exec(ctx context.Context, id string, cmd []string, stdout, stderr io.Writer) (int, error)
	// Logs writes a container's log (stdout and stderr, interleaved as
	// written) to w; see LogOptions for tail and follow.
	Logs(ctx context.Context, id string, opts LogOptions, w io.Writer) error

	// Events delivers container exits (and OOM kills) as they happen, until
	// ctx ends. Events may be lost when the connection to the runtime breaks;
	// an EventResync then tells the receiver to re-list.
	Events(ctx context.Context) <-chan Event

	// Close releases the connection; containers keep running.
	Close() error
}

// PullPolicy says when EnsureImage asks a registry.
type PullPolicy int

const (
	PullIfNotPresent PullPolicy = iota // pull only when not present
	PullAlways                         // resolve and pull every time (cheap when unchanged)
	PullNever                          // use what is present, never pull
)

// ImageInfo describes a stored image.
type ImageInfo struct {
	Ref    string // normalised name, e.g. docker.io/library/web:v1
	Digest string // manifest (or index) digest
	ID     string // config digest: the same for the same image under any name
	Size   int64  // bytes of the compressed layers
}

// SandboxConfig describes a pod's sandbox.
type SandboxConfig struct {
	Name      string // pod name
	Namespace string // pod namespace
	UID       string // pod uid
	Hostname  string // defaults to Name
	Labels    map[string]string
	DNS       DNSConfig
}

// DNSConfig is written to the pod's resolv.conf. With no Nameservers the
// host's /etc/resolv.conf is copied (Kubernetes' dnsPolicy Default).
type DNSConfig struct {
	Nameservers []string
	Searches    []string
	Options     []string
}

// Sandbox is a pod's network namespace and the files shared by its containers.
type Sandbox struct {
	ID        string
	Config    SandboxConfig
	IP        string // pod IP on the pod network
	NetNS     string // path of the bind-mounted network namespace
	CreatedAt time.Time
}

// ContainerConfig describes one container of a pod.
type ContainerConfig struct {
	Name    string // container name in the pod
	Attempt int    // restart count: 0 for the first run
	Image   string // reference, present (see EnsureImage)
	// Command replaces the image's entrypoint and Args its cmd, as in
	// Kubernetes: only Args given -> image entrypoint + Args.
	Command    []string
	Args       []string
	Env        []string // NAME=value, applied over the image's environment
	WorkingDir string
	Mounts     []Mount
	Resources  Resources
	Labels     map[string]string // kept on the container, returned by List
}

// Mount bind-mounts a host path prepared by the caller (emptyDir directory,
// configMap or secret files, hostPath) into the container.
type Mount struct {
	HostPath      string
	ContainerPath string
	ReadOnly      bool
}

// Resources become cgroup limits. Zero means unset.
type Resources struct {
	CPURequestMilli  int64 // cpu shares (1000m = 1024 shares)
	CPULimitMilli    int64 // CFS quota over a 100 ms period
	MemoryLimitBytes int64 // memory (and memory+swap) limit; exceeding it gets the container OOM-killed
}

// State is a container's lifecycle state.
type State string

const (
	StateCreated State = "created" // created, not started (a failed start is StateExited, ReasonCannotRun)
	StateRunning State = "running"
	StateExited  State = "exited"
	StateUnknown State = "unknown"
)

// Reasons for a finished container, as Kubernetes reports them.
const (
	ReasonCompleted    = "Completed"          // exit code 0
	ReasonError        = "Error"              // non-zero exit code
	ReasonOOMKilled    = "OOMKilled"          // killed by the kernel for exceeding its memory limit
	ReasonCannotRun    = "ContainerCannotRun" // the process could not be started
	ReasonTaskLost     = "TaskLost"           // StateUnknown: started, but containerd lost its process (restart, reboot)
	ExitCodeCannotRun  = 128                  // exit code reported with ReasonCannotRun
	ExitCodeStopped    = 137                  // 128+SIGKILL
	ExitCodeTerminated = 143                  // 128+SIGTERM
)

// ContainerStatus is what the runtime knows about one container.
type ContainerStatus struct {
	ID         string
	SandboxID  string
	PodUID     string
	Name       string // container name in the pod
	Attempt    int
	Image      string // reference it was created from
	ImageID    string // config digest of that image
	Labels     map[string]string
	State      State
	PID        uint32 // while running
	ExitCode   int    // when exited
	Reason     string // when exited or failed to start
	Message    string // e.g. the start error
	CreatedAt  time.Time
	StartedAt  time.Time
	FinishedAt time.Time
	LogPath    string
}

// LogOptions select what Logs writes.
type LogOptions struct {
	// TailLines, when > 0, starts at the last TailLines lines.
	TailLines int
	// LimitBytes, when > 0, stops after that many bytes.
	LimitBytes int64
	// Follow keeps writing as the log grows until the container exits (or
	// ctx ends); without it Logs writes what is there and returns.
	Follow bool
}

// EventType is the kind of an Event.
type EventType string

const (
	EventExit   EventType = "exit"   // a container's main process exited
	EventOOM    EventType = "oom"    // the kernel OOM-killed a process of the container
	EventResync EventType = "resync" // events may have been lost: list again
)

// Event reports a change the kubelet reacts to.
type Event struct {
	Type        EventType
	ContainerID string
	ExitCode    int
	At          time.Time
}

// Errors, matched with errors.Is.
var (
	ErrNotFound      = errors.New("not found")
	ErrImageNotFound = errors.New("image not found")
	ErrImagePull     = errors.New("image pull failed")
	ErrCannotRun     = errors.New("container cannot run")
	ErrSandboxInUse  = errors.New("sandbox still has containers")
	ErrNoPodNetwork  = errors.New("no pod network configured")
)

// Labels this package puts on containers (and sandboxes). Callers' labels
// with these keys are overwritten.
const (
	LabelSandbox   = "orch.dev/sandbox"
	LabelPodUID    = "orch.dev/pod-uid"
	LabelPodName   = "orch.dev/pod-name"
	LabelPodNS     = "orch.dev/pod-namespace"
	LabelContainer = "orch.dev/container"
	LabelAttempt   = "orch.dev/attempt"
)
