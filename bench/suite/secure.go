package suite

import (
	"net/http"
	"sync"
	"time"

	"orch.dev/orch/api/client"
	"orch.dev/orch/internal/testcluster"
)

// The clusters run with security on (HTTPS with the cluster CA, the
// cluster secret as bearer token). The harness talks to the cluster it
// started last, through these.

var (
	secureMu sync.Mutex
	secureOf *testcluster.Cluster
)

// started records c as the cluster the harness talks to and returns it.
func started(c *testcluster.Cluster) *testcluster.Cluster {
	secureMu.Lock()
	secureOf = c
	secureMu.Unlock()
	return c
}

func current() *testcluster.Cluster {
	secureMu.Lock()
	defer secureMu.Unlock()
	return secureOf
}

// orchConfig is a client configuration for the current cluster.
func orchConfig(servers []string) client.Config { return clusterConfig(current(), servers) }

// clusterConfig is a client configuration for c.
func clusterConfig(c *testcluster.Cluster, servers []string) client.Config {
	return client.Config{Servers: servers, Token: c.BearerToken(), TLS: c.TLS()}
}

// orchHTTP is an HTTPS client of the current cluster with a timeout (0: none).
func orchHTTP(timeout time.Duration) *http.Client {
	hc := current().HTTPClient()
	hc.Timeout = timeout
	return hc
}
