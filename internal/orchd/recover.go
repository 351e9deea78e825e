package orchd

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"orch.dev/orch/agent"
	"orch.dev/orch/internal/logging"
)

// recoverCommand is `orchd recover`: quorum-loss recovery on the one
// server that survived (docs/operations.md has the runbook).
func recoverCommand() *cli.Command {
	return &cli.Command{
		Name:  "recover",
		Usage: "make this stopped server the only Raft voter, after the cluster lost its quorum for good",
		Description: "Run on the surviving server while orchd is stopped there. Every entry in its log becomes\n" +
			"committed and it becomes the only voter; start orchd again with the same --data-dir and it\n" +
			"serves alone. New servers (empty data dirs) then join it as usual. The lost servers must never\n" +
			"come back with their old data dirs: wipe them first. See docs/operations.md.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "data-dir", Usage: "the stopped server's data dir"},
			&cli.StringFlag{Name: "name", Usage: "the server's name (only needed when the data dir does not record it)"},
			&cli.StringFlag{Name: "log-level", Value: "warn", Usage: "debug, info, warn or error"},
		},
		Action: func(c *cli.Context) error {
			if c.NArg() > 0 {
				return fmt.Errorf("unexpected argument %q (flags only)", c.Args().First())
			}
			level, ok := logging.ParseLevel(c.String("log-level"))
			if !ok {
				return fmt.Errorf("--log-level %q: use debug, info, warn or error", c.String("log-level"))
			}
			stdout := c.App.Writer
			start := time.Now()
			res, err := agent.Recover(agent.RecoverOptions{DataDir: c.String("data-dir"), Name: c.String("name"),
				Logger: logging.New(c.App.ErrWriter, level, "recover")})
			if err != nil {
				return err
			}
			var before []string
			for _, s := range res.Previous {
				before = append(before, fmt.Sprintf("%s (%s, %s)", s.ID, s.Address, strings.ToLower(s.Suffrage.String())))
			}
			sort.Strings(before)
			fmt.Fprintf(stdout, "Recovered %s in %s: %s at %s is now the only voter, with the state up to index %d.\n",
				c.String("data-dir"), time.Since(start).Round(time.Millisecond), res.ID, res.Address, res.LastIndex)
			fmt.Fprintf(stdout, "Previous configuration: %s\n", strings.Join(before, ", "))
			fmt.Fprintf(stdout, "Next: start orchd agent with the same --data-dir; join new servers with empty data dirs to it.\n")
			return nil
		},
	}
}
