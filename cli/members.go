package cli

import (
	"fmt"
	"sort"
	"strings"

	"github.com/urfave/cli/v2"
	"k8s.io/apimachinery/pkg/version"

	"orch.dev/orch/api"
)

// member is one gossip member, as GET /v1/members reports it and as
// `members -o json` prints it (DESIGN.md contract).
type member struct {
	Name    string `json:"name"`
	Address string `json:"address"`
	Role    string `json:"role"`
	Status  string `json:"status"`
}

func membersCommand(e *env) *cli.Command {
	return &cli.Command{
		Name:  "members",
		Usage: "list the cluster's members (servers and workers) as gossip sees them",
		Flags: []cli.Flag{outputFlag("json")},
		Action: func(c *cli.Context) error {
			out := c.String("output")
			if err := checkOutput(out, outTable, outJSON); err != nil {
				return err
			}
			if c.NArg() > 0 {
				return fmt.Errorf("unexpected argument %q", c.Args().First())
			}
			cl, err := e.client(c)
			if err != nil {
				return err
			}
			members := []member{}
			if err := cl.GetJSON(e.ctx, "/v1/members", nil, &members); err != nil {
				return err
			}
			sort.SliceStable(members, func(i, j int) bool { return members[i].Name < members[j].Name })
			if out == outJSON {
				return writeValue(e.stdout, outJSON, members)
			}
			tw := newTabWriter(e.stdout)
			writeRow(tw, []string{"NAME", "ADDRESS", "ROLE", "STATUS"})
			for _, m := range members {
				writeRow(tw, []string{m.Name, m.Address, m.Role, m.Status})
			}
			return tw.Flush()
		},
	}
}

// clientVersion mirrors the server's version string (agent/discovery.go).
func clientVersion() string {
	return fmt.Sprintf("v1.%s.0-orch+%s", kubernetesMinor, strings.ReplaceAll(Version, "+", "."))
}

func versionCommand(e *env) *cli.Command {
	return &cli.Command{
		Name:  "version",
		Usage: "print the client and server versions",
		Flags: []cli.Flag{&cli.BoolFlag{Name: "client", Usage: "print the client version only"}},
		Action: func(c *cli.Context) error {
			fmt.Fprintf(e.stdout, "Client Version: %s\n", clientVersion())
			if c.Bool("client") {
				return nil
			}
			cl, err := e.client(c)
			if err != nil {
				return err
			}
			var info version.Info
			if err := cl.GetJSON(e.ctx, "/version", nil, &info); err != nil {
				return err
			}
			fmt.Fprintf(e.stdout, "Server Version: %s\n", info.GitVersion)
			return nil
		},
	}
}

func apiResourcesCommand(e *env) *cli.Command {
	return &cli.Command{
		Name:  "api-resources",
		Usage: "list the supported resource types",
		Action: func(c *cli.Context) error {
			tw := newTabWriter(e.stdout)
			writeRow(tw, []string{"NAME", "SHORTNAMES", "APIVERSION", "NAMESPACED", "KIND"})
			kinds := append([]*api.Kind(nil), api.Kinds...)
			sort.Slice(kinds, func(i, j int) bool { return kinds[i].Resource < kinds[j].Resource })
			for _, k := range kinds {
				writeRow(tw, []string{k.Resource, strings.Join(k.ShortNames, ","), k.APIVersion(), fmt.Sprint(k.Namespaced), k.Kind})
			}
			return tw.Flush()
		},
	}
}
