package kubelet

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"orch.dev/orch/node/runtime"
)

// realProber runs httpGet, tcpSocket and exec probes against the pod's
// address and the runtime.
type realProber struct {
	rt runtime.Runtime
}

// NewProber returns the Prober the kubelet uses by default.
func NewProber(rt runtime.Runtime) Prober { return &realProber{rt: rt} }

var probeClient = &http.Client{
	Transport: &http.Transport{DisableKeepAlives: true, Proxy: nil},
	CheckRedirect: func(req *http.Request, via []*http.Request) error {
		if len(via) >= 10 || req.URL.Host != via[0].URL.Host {
			return http.ErrUseLastResponse // Kubernetes follows redirects on the same host only
		}
		return nil
	},
}

// Probe implements Prober.
func (p *realProber) Probe(ctx context.Context, pr *corev1.Probe, t ProbeTarget) (ProbeResult, string) {
	switch {
	case pr.Exec != nil:
		return p.exec(ctx, pr.Exec, t)
	case pr.HTTPGet != nil:
		return httpProbe(ctx, pr.HTTPGet, t)
	case pr.TCPSocket != nil:
		return tcpProbe(ctx, pr.TCPSocket, t)
	}
	return ProbeFailure, "the probe has no handler"
}

func (p *realProber) exec(ctx context.Context, e *corev1.ExecAction, t ProbeTarget) (ProbeResult, string) {
	var out limitedBuffer
	code, err := p.rt.Exec(ctx, t.ContainerID, e.Command, &out, &out)
	switch {
	case ctx.Err() != nil:
		return ProbeFailure, fmt.Sprintf("command %q timed out", e.Command)
	case err != nil:
		return ProbeFailure, err.Error()
	case code != 0:
		return ProbeFailure, fmt.Sprintf("command %q exited with %d: %s", e.Command, code, strings.TrimSpace(out.String()))
	}
	return ProbeSuccess, ""
}

func httpProbe(ctx context.Context, g *corev1.HTTPGetAction, t ProbeTarget) (ProbeResult, string) {
	port, err := probePort(g.Port, t.Container)
	if err != nil {
		return ProbeFailure, err.Error()
	}
	host := g.Host
	if host == "" {
		host = t.PodIP
	}
	scheme := strings.ToLower(string(g.Scheme))
	if scheme == "" {
		scheme = "http"
	}
	path := g.Path
	if !strings.HasPrefix(path, "/") {
		path = "/" + path
	}
	u := &url.URL{Scheme: scheme, Host: net.JoinHostPort(host, strconv.Itoa(port))}
	u, err = u.Parse(path)
	if err != nil {
		return ProbeFailure, err.Error()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return ProbeFailure, err.Error()
	}
	req.Header.Set("User-Agent", "orch-probe")
	for _, h := range g.HTTPHeaders {
		if strings.EqualFold(h.Name, "Host") {
			req.Host = h.Value
			continue
		}
		req.Header.Add(h.Name, h.Value)
	}
	resp, err := probeClient.Do(req)
	if err != nil {
		return ProbeFailure, err.Error()
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, io.LimitReader(resp.Body, 10<<10))
	if resp.StatusCode < 200 || resp.StatusCode >= 400 {
		return ProbeFailure, fmt.Sprintf("HTTP probe failed with statuscode: %d", resp.StatusCode)
	}
	return ProbeSuccess, ""
}

func tcpProbe(ctx context.Context, s *corev1.TCPSocketAction, t ProbeTarget) (ProbeResult, string) {
	port, err := probePort(s.Port, t.Container)
	if err != nil {
		return ProbeFailure, err.Error()
	}
	host := s.Host
	if host == "" {
		host = t.PodIP
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", net.JoinHostPort(host, strconv.Itoa(port)))
	if err != nil {
		return ProbeFailure, err.Error()
	}
	conn.Close()
	return ProbeSuccess, ""
}

// probePort resolves a probe's port, a number or the name of a container port.
func probePort(p intstr.IntOrString, c *corev1.Container) (int, error) {
	if p.Type == intstr.Int {
		if p.IntVal <= 0 || p.IntVal > 65535 {
			return 0, fmt.Errorf("invalid port %d", p.IntVal)
		}
		return int(p.IntVal), nil
	}
	if c != nil {
		for _, cp := range c.Ports {
			if cp.Name == p.StrVal {
				return int(cp.ContainerPort), nil
			}
		}
	}
	if n, err := strconv.Atoi(p.StrVal); err == nil && n > 0 && n <= 65535 {
		return n, nil
	}
	return 0, fmt.Errorf("port %q: the container has no port of that name", p.StrVal)
}

// limitedBuffer keeps the first 10 KiB written to it.
type limitedBuffer struct{ bytes.Buffer }

func (b *limitedBuffer) Write(p []byte) (int, error) {
	if room := 10<<10 - b.Len(); room > 0 {
		b.Buffer.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}
