package runtime

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	goruntime "runtime"
	"sync"
	"time"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/remotes"
	"github.com/containerd/containerd/v2/core/remotes/docker"
	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	"github.com/distribution/reference"
)

// Config configures the containerd runtime. Zero fields take the defaults
// shown.
type Config struct {
	Address     string // containerd socket: /run/containerd/containerd.sock
	Namespace   string // containerd namespace: "orch"
	Snapshotter string // "overlayfs"
	// StateDir holds sandbox records, network namespace mounts, IPAM and CNI
	// state and exec FIFOs: /run/orch/runtime. Keep it on a tmpfs: like the
	// network namespaces it describes, it must not survive a reboot.
	StateDir string
	// LogDir holds container logs, one file per container attempt:
	// /var/log/orch/pods.
	LogDir string
	// RuncRoot is runc's state directory for this runtime's containers;
	// empty: runc's default under /run/containerd/runc.
	RuncRoot string
	Network  NetworkConfig
	// PlainHTTPRegistries are registry hosts (host:port) pulled from over
	// plain HTTP; loopback hosts always are.
	PlainHTTPRegistries []string
	// DialTimeout bounds connecting to containerd: 10 s.
	DialTimeout time.Duration
	// Parallel is how many steps of each kind run at once: pod network
	// setups and teardowns (CNI), container creations, task starts. Zero:
	// the number of CPUs. See gate.
	Parallel int
	Logger   *slog.Logger
}

func (c *Config) defaults() {
	def := func(s *string, v string) {
		if *s == "" {
			*s = v
		}
	}
	def(&c.Address, "/run/containerd/containerd.sock")
	def(&c.Namespace, "orch")
	def(&c.Snapshotter, "overlayfs")
	def(&c.StateDir, "/run/orch/runtime")
	def(&c.LogDir, "/var/log/orch/pods")
	if c.DialTimeout == 0 {
		c.DialTimeout = 10 * time.Second
	}
	if c.Parallel <= 0 {
		c.Parallel = goruntime.NumCPU()
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	c.Network.defaults()
}

// Containerd is the Runtime on a containerd daemon.
type Containerd struct {
	cfg    Config
	client *containerd.Client
	net    *podNetwork // nil without a pod CIDR
	log    *slog.Logger

	mon   *monitor
	locks keyedMutex // per container: start, finalize and remove do not interleave
	// Steps that a burst of pods would otherwise run all at once.
	netGate, createGate, startGate gate
	clientLog                      *log.Entry // see withClientLog
}

var _ Runtime = (*Containerd)(nil)

// New connects to containerd and starts watching container exits. It fails
// when containerd does not answer within cfg.DialTimeout.
func New(ctx context.Context, cfg Config) (*Containerd, error) {
	cfg.defaults()
	for _, d := range []string{cfg.StateDir, cfg.LogDir} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, err
		}
	}
	cl, err := containerd.New(cfg.Address, containerd.WithDefaultNamespace(cfg.Namespace),
		containerd.WithDefaultRuntime("io.containerd.runc.v2"), containerd.WithTimeout(cfg.DialTimeout))
	if err != nil {
		return nil, fmt.Errorf("containerd at %s: %w", cfg.Address, err)
	}
	vctx, cancel := context.WithTimeout(ctx, cfg.DialTimeout)
	defer cancel()
	if _, err := cl.Version(vctx); err != nil {
		cl.Close()
		return nil, fmt.Errorf("containerd at %s does not answer: %w", cfg.Address, err)
	}
	c := &Containerd{cfg: cfg, client: cl, log: cfg.Logger, clientLog: newClientLog(cfg.Logger),
		netGate: newGate(cfg.Parallel), createGate: newGate(cfg.Parallel), startGate: newGate(cfg.Parallel)}
	if cfg.Network.PodCIDR != "" {
		if c.net, err = newPodNetwork(cfg.Network, filepath.Join(cfg.StateDir, "cni")); err != nil {
			cl.Close()
			return nil, err
		}
	}
	startMonitor(c)
	return c, nil
}

// Close stops watching events and closes the connection. Containers and
// sandboxes keep running.
func (c *Containerd) Close() error {
	c.mon.stop()
	return c.client.Close()
}

// NormalizeImageRef returns the full form of an image reference as Docker
// and containerd name images ("web" -> "docker.io/library/web:latest").
func NormalizeImageRef(ref string) (string, error) {
	n, err := reference.ParseDockerRef(ref)
	if err != nil {
		return "", fmt.Errorf("image %q: %w", ref, err)
	}
	return n.String(), nil
}

// EnsureImage implements Runtime.
func (c *Containerd) EnsureImage(ctx context.Context, ref string, policy PullPolicy) (ImageInfo, error) {
	ctx = c.withClientLog(ctx)
	name, err := NormalizeImageRef(ref)
	if err != nil {
		return ImageInfo{}, fmt.Errorf("%w: %v", ErrImagePull, err)
	}
	if policy != PullAlways {
		img, err := c.client.GetImage(ctx, name)
		switch {
		case err == nil:
			if err := c.unpack(ctx, img); err != nil {
				return ImageInfo{}, err
			}
			return imageInfo(ctx, img)
		case !errdefs.IsNotFound(err):
			return ImageInfo{}, err
		case policy == PullNever:
			return ImageInfo{}, fmt.Errorf("image %s is not present and pull policy is Never: %w", name, ErrImageNotFound)
		}
	}
	img, err := c.client.Pull(ctx, name,
		containerd.WithPullUnpack, containerd.WithPullSnapshotter(c.cfg.Snapshotter),
		containerd.WithResolver(c.resolver()))
	if err != nil {
		if errdefs.IsNotFound(err) {
			return ImageInfo{}, fmt.Errorf("pull %s: %w: %v", name, ErrImageNotFound, err)
		}
		return ImageInfo{}, fmt.Errorf("pull %s: %w: %v", name, ErrImagePull, err)
	}
	return imageInfo(ctx, img)
}

func (c *Containerd) resolver() remotes.Resolver {
	plain := map[string]bool{}
	for _, h := range c.cfg.PlainHTTPRegistries {
		plain[h] = true
	}
	hc := &http.Client{Transport: &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: 10 * time.Second}).DialContext,
		TLSHandshakeTimeout:   10 * time.Second,
		ResponseHeaderTimeout: 30 * time.Second,
	}}
	return docker.NewResolver(docker.ResolverOptions{Hosts: docker.ConfigureDefaultRegistries(
		docker.WithClient(hc),
		docker.WithPlainHTTP(func(host string) (bool, error) {
			if plain[host] {
				return true, nil
			}
			return docker.MatchLocalhost(host)
		}),
	)})
}

func (c *Containerd) unpack(ctx context.Context, img containerd.Image) error {
	ok, err := img.IsUnpacked(ctx, c.cfg.Snapshotter)
	if err == nil && !ok {
		err = img.Unpack(ctx, c.cfg.Snapshotter)
	}
	if err != nil {
		return fmt.Errorf("unpack %s: %w", img.Name(), err)
	}
	return nil
}

func imageInfo(ctx context.Context, img containerd.Image) (ImageInfo, error) {
	info := ImageInfo{Ref: img.Name(), Digest: img.Target().Digest.String()}
	cfg, err := img.Config(ctx)
	if err != nil {
		return info, fmt.Errorf("image %s: %w", img.Name(), err)
	}
	info.ID = cfg.Digest.String()
	info.Size, _ = img.Size(ctx)
	return info, nil
}

// ImportImages implements Runtime.
func (c *Containerd) ImportImages(ctx context.Context, r io.Reader) ([]string, error) {
	ctx = c.withClientLog(ctx)
	imgs, err := c.client.Import(ctx, r)
	if err != nil {
		return nil, fmt.Errorf("import: %w", err)
	}
	var names []string
	for _, i := range imgs {
		if err := c.unpack(ctx, containerd.NewImage(c.client, i)); err != nil {
			return names, err
		}
		names = append(names, i.Name)
	}
	if len(names) == 0 {
		return nil, errors.New("import: the archive holds no image for this platform")
	}
	return names, nil
}

// ListImages implements Runtime.
func (c *Containerd) ListImages(ctx context.Context) ([]ImageInfo, error) {
	imgs, err := c.client.ListImages(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]ImageInfo, 0, len(imgs))
	for _, img := range imgs {
		if info, err := imageInfo(ctx, img); err == nil {
			out = append(out, info)
		}
	}
	return out, nil
}

// keyedMutex serialises work on one container without blocking others.
type keyedMutex struct {
	mu    sync.Mutex
	locks map[string]*keyedLock
}

type keyedLock struct {
	sync.Mutex
	refs int
}

func (k *keyedMutex) lock(key string) func() {
	k.mu.Lock()
	if k.locks == nil {
		k.locks = map[string]*keyedLock{}
	}
	l := k.locks[key]
	if l == nil {
		l = &keyedLock{}
		k.locks[key] = l
	}
	l.refs++
	k.mu.Unlock()
	l.Lock()
	return func() {
		l.Unlock()
		k.mu.Lock()
		if l.refs--; l.refs == 0 {
			delete(k.locks, key)
		}
		k.mu.Unlock()
	}
}
