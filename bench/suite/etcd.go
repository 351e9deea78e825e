package suite

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// EtcdBin is the etcd server the comparison runs (Debian's etcd-server).
var EtcdBin = "/usr/bin/etcd"

// Etcd is a 3-member etcd cluster on one loopback /24, with etcd's default
// settings (fsync on every commit, as orch does).
type Etcd struct {
	Endpoints []string
	Dir       string
	procs     []*exec.Cmd
	done      []chan struct{}
	logs      []string
}

// EtcdVersion asks the binary for its version line.
func EtcdVersion() string {
	out, err := exec.Command(EtcdBin, "--version").Output()
	if err != nil {
		return "unknown (" + err.Error() + ")"
	}
	line, _, _ := strings.Cut(string(out), "\n")
	return strings.TrimSpace(strings.TrimPrefix(line, "etcd Version:"))
}

func freeEtcdPrefix() (string, error) {
	for range 50 {
		prefix := fmt.Sprintf("127.%d.%d.", 100+rand.IntN(150), rand.IntN(256))
		free := true
		for _, host := range []string{"21", "22", "23"} {
			for _, port := range []string{"2379", "2380"} {
				ln, err := net.Listen("tcp", prefix+host+":"+port)
				if err != nil {
					free = false
					break
				}
				ln.Close()
			}
		}
		if free {
			return prefix, nil
		}
	}
	return "", errors.New("no free loopback /24 for etcd")
}

// StartEtcd starts three members and waits until they have a leader and
// serve a linearizable read. They are killed, and their data removed, by
// env's cleanup.
func StartEtcd(env *Env) *Etcd {
	if _, err := os.Stat(EtcdBin); err != nil {
		env.Fatalf("etcd server not found (%v): run `scripts/deps.sh bench` (Debian's etcd-server)", err)
	}
	prefix, err := freeEtcdPrefix()
	if err != nil {
		env.Fatal(err)
	}
	e := &Etcd{Dir: env.TempDir()}
	env.Cleanup(e.stop)
	var initial []string
	for i := range 3 {
		initial = append(initial, fmt.Sprintf("e%d=http://%s%d:2380", i+1, prefix, 21+i))
	}
	token := fmt.Sprintf("orch-bench-%d", rand.Uint32())
	for i := range 3 {
		name, ip := fmt.Sprintf("e%d", i+1), fmt.Sprintf("%s%d", prefix, 21+i)
		client, peer := "http://"+ip+":2379", "http://"+ip+":2380"
		e.Endpoints = append(e.Endpoints, client)
		logPath := filepath.Join(e.Dir, name+".log")
		log, err := os.Create(logPath)
		if err != nil {
			env.Fatal(err)
		}
		cmd := exec.Command(EtcdBin,
			"--name", name,
			"--data-dir", filepath.Join(e.Dir, name),
			"--listen-client-urls", client, "--advertise-client-urls", client,
			"--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
			"--initial-cluster", strings.Join(initial, ","),
			"--initial-cluster-state", "new", "--initial-cluster-token", token,
			"--logger", "zap", "--log-outputs", "stderr",
		)
		cmd.Stdout, cmd.Stderr = log, log
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
		if err := cmd.Start(); err != nil {
			log.Close()
			env.Fatal(err)
		}
		done := make(chan struct{})
		go func() {
			cmd.Wait()
			log.Close()
			close(done)
		}()
		e.procs, e.done, e.logs = append(e.procs, cmd), append(e.done, done), append(e.logs, logPath)
	}
	if err := e.waitHealthy(60 * time.Second); err != nil {
		for _, l := range e.logs {
			b, _ := os.ReadFile(l)
			if len(b) > 4000 {
				b = b[len(b)-4000:]
			}
			fmt.Fprintf(os.Stderr, "==== %s\n%s\n", l, b)
		}
		env.Fatal(err)
	}
	return e
}

// Client is one client for all three members, as an application uses it.
func (e *Etcd) Client() (*clientv3.Client, error) {
	return clientv3.New(clientv3.Config{Endpoints: e.Endpoints, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
}

func (e *Etcd) waitHealthy(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	cl, err := e.Client()
	if err != nil {
		return err
	}
	defer cl.Close()
	var last error
	for time.Now().Before(deadline) {
		last = e.healthy(cl)
		if last == nil {
			return nil
		}
		time.Sleep(50 * time.Millisecond) // polling interval
	}
	return fmt.Errorf("etcd cluster not healthy after %s: %v", timeout, last)
}

func (e *Etcd) healthy(cl *clientv3.Client) error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	for _, ep := range e.Endpoints {
		st, err := cl.Status(ctx, ep)
		if err != nil {
			return err
		}
		if st.Leader == 0 {
			return fmt.Errorf("%s has no leader", ep)
		}
	}
	_, err := cl.Get(ctx, "health") // linearizable: needs a working quorum
	return err
}

func (e *Etcd) stop() {
	for i, p := range e.procs {
		if p.Process != nil {
			p.Process.Kill()
			<-e.done[i]
		}
	}
	e.procs = nil
	os.RemoveAll(e.Dir)
}
