package chaos

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"

	"orch.dev/orch/api"
	"orch.dev/orch/api/client"
)

// serverState is one server's own (stale) view of the ConfigMaps.
type serverState struct {
	index   uint64            // the list's resourceVersion: its applied index
	objects map[string]string // namespace/name -> resourceVersion and data
}

func (c *Cluster) localState(ctx context.Context, h *Host) (serverState, error) {
	cl, err := client.New(client.Config{Servers: []string{h.URL()}, Token: c.Token, TLS: client.TLS{CAPEM: c.caPEM()}, RetryFor: 5 * time.Second, AttemptTimeout: 5 * time.Second})
	if err != nil {
		return serverState{}, err
	}
	list, err := cl.ListAll(ctx, api.ConfigMap, "", client.ListOptions{Stale: true})
	if err != nil {
		return serverState{}, err
	}
	st := serverState{objects: map[string]string{}}
	st.index, _ = strconv.ParseUint(list.ResourceVersion, 10, 64)
	for _, o := range list.Items {
		cm := o.(*corev1.ConfigMap)
		data, _ := json.Marshal(cm.Data)
		st.objects[cm.Namespace+"/"+cm.Name] = cm.ResourceVersion + " " + string(data)
	}
	return st, nil
}

// CheckConvergence waits until every running server has applied the same
// index (the cluster is idle once the clients stopped) and compares their
// ConfigMaps, read from each server's own state: the state machines must
// be identical at equal indexes. It returns what differs, or why the
// servers never reached a common index within timeout.
func (c *Cluster) CheckConvergence(timeout time.Duration) []string {
	ctx := context.Background()
	deadline := time.Now().Add(timeout)
	var last map[*Host]serverState
	var lastErr error
	for time.Now().Before(deadline) {
		states := map[*Host]serverState{}
		lastErr = nil
		for _, h := range c.Servers {
			if !h.Running() {
				continue
			}
			st, err := c.localState(ctx, h)
			if err != nil {
				lastErr = fmt.Errorf("%s: %w", h.Name, err)
				break
			}
			states[h] = st
		}
		if lastErr == nil {
			last = states
			if diff, equalIndex := compareStates(c.Servers, states); equalIndex {
				return diff
			}
		}
		sleepPoll()
	}
	if lastErr != nil {
		return []string{fmt.Sprintf("could not read every server's state: %v", lastErr)}
	}
	var idx []string
	for _, h := range c.Servers {
		if st, ok := last[h]; ok {
			idx = append(idx, fmt.Sprintf("%s at %d", h.Name, st.index))
		}
	}
	return []string{fmt.Sprintf("the servers never reached a common applied index within %s (last: %s)", timeout, strings.Join(idx, ", "))}
}

// compareStates reports whether all states are at one index and, if so,
// how they differ.
func compareStates(servers []*Host, states map[*Host]serverState) (diff []string, equalIndex bool) {
	var ref *Host
	for _, h := range servers {
		st, ok := states[h]
		if !ok {
			continue
		}
		if ref == nil {
			ref = h
			continue
		}
		if st.index != states[ref].index {
			return nil, false
		}
	}
	if ref == nil {
		return []string{"no running server"}, true
	}
	want := states[ref]
	for _, h := range servers {
		st, ok := states[h]
		if !ok || h == ref {
			continue
		}
		for k, v := range want.objects {
			if got, ok := st.objects[k]; !ok {
				diff = append(diff, fmt.Sprintf("at index %d %s holds %s (%s) and %s does not", st.index, ref.Name, k, v, h.Name))
			} else if got != v {
				diff = append(diff, fmt.Sprintf("at index %d %s: %s on %s, %s on %s", st.index, k, v, ref.Name, got, h.Name))
			}
		}
		for k, v := range st.objects {
			if _, ok := want.objects[k]; !ok {
				diff = append(diff, fmt.Sprintf("at index %d %s holds %s (%s) and %s does not", st.index, h.Name, k, v, ref.Name))
			}
		}
	}
	return diff, true
}
