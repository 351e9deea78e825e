// Package worker is the worker agent, `orch-worker` (or `orchd agent
// --worker`): it joins the cluster by gossip and learns the API servers
// from it, registers and keeps its Node (capacity of the machine, labels
// and taints as configured), sends heartbeats to the leader, connects the
// container runtime to its pod CIDR, runs the kubelet, and serves the
// worker API (logs and exec, port 7403) that the API servers proxy to.
//
// It owns the wiring and the node's identity, nothing of the pod
// lifecycle (package kubelet) or of containers (package runtime). It must
// keep running, and keep its pods running, while the control plane is
// unreachable, including when it starts that way. It must not import the
// server (fsm, agent, Raft): orch-worker links what this package links.
package worker

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"

	"orch.dev/orch/api/client"
	"orch.dev/orch/internal/atomicfile"
	"orch.dev/orch/internal/pki"
	"orch.dev/orch/node/kubelet"
	"orch.dev/orch/node/runtime"
)

// Config configures a worker. Zero values take the defaults shown.
type Config struct {
	Name      string
	DataDir   string
	Bind      string // address gossip and the worker API listen on
	Advertise string // node address (InternalIP); default Bind
	// Join are gossip addresses of any members; Servers, when set,
	// replaces gossip with a fixed list of API URLs (a worker in the same
	// process as a server).
	Join       []string
	Servers    []string
	GossipPort int // 7402
	APIPort    int // 7403; the worker API
	// Token is the cluster secret (gossip key, bearer token, the sealed
	// CA's key), or empty with JoinToken.
	Token string
	// JoinToken, instead of Token, is a join token (orch1.<id>.<secret>.<ca>,
	// `orchctl operator token create --role worker`): the worker joins
	// through the API of the servers Join names (port 7400 unless given),
	// gets its certificate and the gossip key, and keeps them in
	// DataDir/tls (tls.go); gossip is joined on the same hosts' port 7402.
	JoinToken string
	// CA, when set (a worker in a server's process), is the cluster CA
	// with its key: the worker issues itself its certificate with it.
	CA *pki.CA
	// RenewCheckInterval is how often the certificate is checked for
	// renewal (1m).
	RenewCheckInterval time.Duration
	// TLS is how the worker speaks to the API (the cluster CA); without a
	// CA it waits for the one the servers send over gossip.
	TLS client.TLS

	Labels  map[string]string
	Taints  []corev1.Taint // set when the Node is created
	CPU     resource.Quantity
	Memory  resource.Quantity // default: the machine's
	MaxPods int               // 110
	GPUs    int64             // nvidia.com/gpu advertised

	// ImagesDir holds image archives to import (imagesdir.go); default
	// DataDir/images, "-" for none.
	ImagesDir string

	// NewRuntime connects the runtime once the pod CIDR is known; nil:
	// containerd as RuntimeConfig says, with the pod CIDR filled in.
	NewRuntime    func(ctx context.Context, podCIDR string) (runtime.Runtime, error)
	RuntimeConfig runtime.Config
	// Kubelet is passed on with NodeName, NodeIP, DataDir, Runtime,
	// Cluster and Logger filled in.
	Kubelet kubelet.Config
	// Network: service proxy, cluster DNS, routes between nodes.
	Network NetworkConfig

	HeartbeatInterval time.Duration // 1s
	RegisterInterval  time.Duration // 30s: how often the Node is checked
	Version           string
	Logger            *slog.Logger
}

func (c *Config) defaults() error {
	if c.Name == "" || c.DataDir == "" {
		return errors.New("worker: a name and a data directory are required")
	}
	if c.Bind == "" {
		c.Bind = "127.0.0.1"
	}
	if c.Advertise == "" {
		if ip := net.ParseIP(c.Bind); ip == nil || ip.IsUnspecified() {
			return fmt.Errorf("--advertise: required when --bind is %q", c.Bind)
		}
		c.Advertise = c.Bind
	}
	if len(c.Join) == 0 && len(c.Servers) == 0 {
		return errors.New("--join: required (the address of any cluster member)")
	}
	if c.GossipPort == 0 {
		c.GossipPort = 7402
	}
	if c.APIPort == 0 {
		c.APIPort = 7403
	}
	if c.MaxPods == 0 {
		c.MaxPods = 110
	}
	if c.RenewCheckInterval == 0 {
		c.RenewCheckInterval = time.Minute
	}
	if c.HeartbeatInterval == 0 {
		c.HeartbeatInterval = time.Second
	}
	if c.RegisterInterval == 0 {
		c.RegisterInterval = 30 * time.Second
	}
	if c.Version == "" {
		c.Version = "dev"
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return nil
}

// Worker is a running worker agent.
type Worker struct {
	cfg     Config
	log     *slog.Logger
	machine machine
	servers *servers

	apiLn   net.Listener
	tls     *nodeTLS
	apiTLS  bool // the worker API speaks mutual TLS (else plain HTTP: no cluster CA)
	kubelet *kubelet.Kubelet
	rt      runtime.Runtime
	started chan struct{}
}

// New checks cfg and binds the worker API port (so a clash fails early).
func New(cfg Config) (*Worker, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("--data-dir %s: %w", cfg.DataDir, err)
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(cfg.Bind, strconv.Itoa(cfg.APIPort)))
	if err != nil {
		return nil, fmt.Errorf("worker API: %w", err)
	}
	w := &Worker{cfg: cfg, log: cfg.Logger, machine: readMachine(cfg.Version), servers: newServers(cfg.DataDir, cfg.Token, cfg.TLS),
		apiLn: ln, started: make(chan struct{}), tls: newNodeTLS(&cfg)}
	w.apiTLS = cfg.JoinToken != "" || cfg.CA != nil || (len(cfg.Servers) == 0 && cfg.Token != "")
	if cfg.JoinToken != "" {
		w.servers.token = "" // the certificate is the credential
	}
	return w, nil
}

// APIAddr is where the worker API listens.
func (w *Worker) APIAddr() string { return w.apiLn.Addr().String() }

// Kubelet is the worker's kubelet, once Started is closed.
func (w *Worker) Kubelet() *kubelet.Kubelet { return w.kubelet }

// Started is closed once the runtime is connected and the kubelet runs.
func (w *Worker) Started() <-chan struct{} { return w.started }

// state is what the worker keeps about itself in its data directory.
type state struct {
	PodCIDR string `json:"podCIDR"`
}

func (w *Worker) statePath() string { return filepath.Join(w.cfg.DataDir, "worker.json") }

// Run runs the worker until ctx ends. Its pods keep running afterwards.
func (w *Worker) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() {
		cancel()
		wg.Wait()
		if w.rt != nil {
			w.rt.Close()
		}
		w.apiLn.Close()
	}()
	go1 := func(f func()) {
		wg.Add(1)
		go func() { defer wg.Done(); f() }()
	}

	if err := w.startTLS(ctx, go1); err != nil {
		return err
	}
	w.servers.load()
	if len(w.cfg.Servers) > 0 {
		if err := w.servers.set(w.cfg.Servers, false); err != nil {
			return err
		}
	} else {
		go1(func() { w.servers.follow(ctx, w) })
	}
	var st state
	if b, err := os.ReadFile(w.statePath()); err == nil {
		json.Unmarshal(b, &st)
	}
	if st.PodCIDR == "" {
		// First start: nothing can run before the Node has a pod network.
		cidr, err := w.firstRegistration(ctx)
		if err != nil {
			return err
		}
		st.PodCIDR = cidr
		b, _ := json.Marshal(st)
		if err := atomicfile.Write(w.statePath(), b, 0o600); err != nil {
			return err
		}
	}
	rt, err := w.connectRuntime(ctx, st.PodCIDR)
	if err != nil {
		return err
	}
	w.rt = rt
	if err := w.startImagesDir(ctx, rt, go1); err != nil {
		return err
	}
	podDNS, err := w.startNetwork(ctx, st.PodCIDR, go1)
	if err != nil {
		return err
	}

	kcfg := w.cfg.Kubelet
	if podDNS != nil {
		kcfg.PodDNS = podDNS
	}
	kcfg.NodeName, kcfg.NodeIP, kcfg.Runtime, kcfg.Logger = w.cfg.Name, w.cfg.Advertise, rt, w.log.With("component", "kubelet")
	kcfg.DataDir = filepath.Join(w.cfg.DataDir, "kubelet")
	kcfg.Cluster = kubelet.ClientCluster{Client: w.servers.clientOrUnreachable}
	k, err := kubelet.New(kcfg)
	if err != nil {
		return err
	}
	w.kubelet = k
	go1(func() { k.Run(ctx) })
	go1(func() { w.registerLoop(ctx, st.PodCIDR) })
	go1(func() { w.heartbeatLoop(ctx) })

	as := &apiServer{pods: k, rt: rt, token: w.cfg.Token, log: w.log}
	apiLn := w.apiLn
	if w.apiTLS {
		// Mutual TLS: only servers get in; no bearer token.
		as.token = ""
		apiLn = tls.NewListener(apiLn, &tls.Config{MinVersion: tls.VersionTLS13, GetConfigForClient: w.tls.serverConfig})
	}
	srv := &http.Server{Handler: as.handler(), ReadHeaderTimeout: 10 * time.Second,
		// Refused handshakes (a client that is not a server) at debug level.
		ErrorLog: slog.NewLogLogger(w.log.Handler(), slog.LevelDebug)}
	go1(func() {
		if err := srv.Serve(apiLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
			w.log.Error("worker API stopped", "err", err)
		}
	})
	select {
	case <-k.Ready():
	case <-ctx.Done():
	}
	w.log.Info("worker running", "node", w.cfg.Name, "podCIDR", st.PodCIDR, "api", w.APIAddr())
	close(w.started)
	<-ctx.Done()
	sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer scancel()
	srv.Shutdown(sctx)
	return nil
}

// startTLS gets the worker its certificate: the one kept from an earlier
// run, else by the join handshake (JoinToken) or issued with Config.CA; a
// worker with the cluster secret and gossip issues it once it has the CA
// (servers.follow). It then keeps it renewed.
func (w *Worker) startTLS(ctx context.Context, go1 func(func())) error {
	now := time.Now()
	w.tls.load(now)
	_, cert, _ := w.tls.current()
	switch {
	case w.cfg.JoinToken != "" && cert == nil:
		if err := w.tls.joinWithToken(ctx, w.cfg.JoinToken, apiAddrs(w.cfg.Join)); err != nil {
			return err
		}
	case w.cfg.CA != nil && w.tls.needsCert(now):
		if err := w.tls.issueSelf(w.cfg.CA, now); err != nil {
			return fmt.Errorf("worker certificate: %w", err)
		}
	}
	if w.cfg.JoinToken != "" {
		ca, _, certs := w.tls.current()
		w.servers.mu.Lock()
		w.servers.tls = client.TLS{CAPEM: pki.CertPEM(ca), Certs: certs}
		w.servers.mu.Unlock()
	}
	if w.apiTLS {
		go1(func() {
			w.tls.renewLoop(ctx, func() []string {
				list := w.servers.addrs()
				if w.cfg.JoinToken != "" {
					list = append(list, apiAddrs(w.cfg.Join)...)
				}
				return list
			}, w.cfg.RenewCheckInterval)
		})
	}
	return nil
}

// firstRegistration waits for an API server, registers the Node and
// returns its pod CIDR.
func (w *Worker) firstRegistration(ctx context.Context) (string, error) {
	select {
	case <-w.servers.ready:
	case <-ctx.Done():
		return "", ctx.Err()
	}
	delay := 500 * time.Millisecond
	for {
		n, err := w.register(ctx)
		if err == nil {
			if n.Spec.PodCIDR == "" {
				return "", fmt.Errorf("node %s has no pod CIDR: the cluster's pod range is used up, or the Node was created without one (delete it and start the worker again)", w.cfg.Name)
			}
			return n.Spec.PodCIDR, nil
		}
		w.log.Warn("cannot register the node yet", "err", err)
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-time.After(delay):
		}
		delay = min(2*delay, 10*time.Second)
	}
}

func (w *Worker) connectRuntime(ctx context.Context, podCIDR string) (runtime.Runtime, error) {
	if w.cfg.NewRuntime != nil {
		return w.cfg.NewRuntime(ctx, podCIDR)
	}
	rc := w.cfg.RuntimeConfig
	rc.Network.PodCIDR = podCIDR
	if rc.StateDir == "" {
		rc.StateDir = filepath.Join("/run/orch", w.cfg.Name)
	}
	if rc.LogDir == "" {
		rc.LogDir = filepath.Join(w.cfg.DataDir, "logs")
	}
	if rc.Logger == nil {
		rc.Logger = w.log.With("component", "runtime")
	}
	rt, err := runtime.New(ctx, rc)
	if err != nil {
		return nil, err
	}
	return rt, nil
}

// clientOrUnreachable returns the current client; before any server is
// known, one that fails at once (the kubelet then runs offline).
func (s *servers) clientOrUnreachable() *client.Client {
	if cl := s.client(); cl != nil {
		return cl
	}
	cl, _ := client.New(client.Config{Servers: []string{"http://127.0.0.1:1"}, RetryFor: time.Millisecond})
	return cl
}
