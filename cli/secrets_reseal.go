package cli

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"

	"github.com/urfave/cli/v2"

	"orch.dev/orch/api/client"
)

func secretsCommand(e *env) *cli.Command {
	return &cli.Command{
		Name:   "secrets",
		Usage:  "Secret encryption at rest",
		Action: groupAction(e, []string{"operator", "secrets"}),
		Subcommands: []*cli.Command{
			{Name: "reseal", Usage: "re-seal every Secret with the current cluster secret (after servers were restarted with a new --token and --previous-cluster-secret)",
				Action: e.secretsReseal},
		},
	}
}

func (e *env) secretsReseal(c *cli.Context) error {
	if c.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", c.Args().First())
	}
	cl, err := e.client(c)
	if err != nil {
		return err
	}
	resp, err := cl.Do(e.ctx, client.Request{Method: http.MethodPost, Path: "/v1/operator/secrets/reseal"})
	if err != nil {
		return err
	}
	var res struct {
		Resealed           int      `json:"resealed"`
		Failed             []string `json:"failed"`
		GossipKeyringSaved bool     `json:"gossipKeyringSaved"`
	}
	if err := json.Unmarshal(resp.Body, &res); err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "re-sealed %d Secrets with the current cluster secret\n", res.Resealed)
	if res.GossipKeyringSaved {
		fmt.Fprintln(e.stdout, "stored the gossip keyring in the cluster state (gossip no longer depends on the cluster secret)")
	}
	if len(res.Failed) > 0 {
		return fmt.Errorf("%d could not be re-sealed (keep --previous-cluster-secret until they are):\n  %s", len(res.Failed), strings.Join(res.Failed, "\n  "))
	}
	return nil
}
