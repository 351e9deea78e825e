package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"

	"github.com/urfave/cli/v2"

	"orch.dev/orch/api/client"
)

const logsUsage = "expected 'logs [-f] [-p] (POD | TYPE/NAME) [-c CONTAINER]'. POD or TYPE/NAME is a required argument for the logs command"

func logsCommand(e *env) *cli.Command {
	return &cli.Command{
		Name:      "logs",
		Usage:     "print the logs of a container in a pod",
		ArgsUsage: "[-f] [-p] (POD | TYPE/NAME) [-c CONTAINER]",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "container", Aliases: []string{"c"}, Usage: "print the logs of this `CONTAINER` (default: the pod's default container)"},
			&cli.BoolFlag{Name: "follow", Aliases: []string{"f"}, Usage: "keep printing the log as it grows"},
			&cli.BoolFlag{Name: "previous", Aliases: []string{"p"}, Usage: "print the log of the previous, terminated instance of the container"},
			&cli.IntFlag{Name: "tail", Value: -1, Usage: "`LINES` of the most recent log to print (-1: all)"},
			&cli.Int64Flag{Name: "limit-bytes", Usage: "print at most `BYTES` of log"},
		},
		Action: e.logs,
	}
}

func (e *env) logs(c *cli.Context) error {
	args := c.Args().Slice()
	if len(args) == 0 || len(args) > 2 {
		return errors.New(logsUsage)
	}
	container := c.String("container")
	if len(args) == 2 {
		if container != "" {
			return errors.New("only one of -c or an inline [CONTAINER] arg is allowed")
		}
		container = args[1]
	}
	tail := c.Int("tail")
	if tail < -1 {
		return errors.New("--tail must be greater than or equal to -1")
	}
	if c.IsSet("limit-bytes") && c.Int64("limit-bytes") < 1 {
		return errors.New("--limit-bytes must be greater than 0")
	}
	cl, err := e.client(c)
	if err != nil {
		return err
	}
	ns := namespaceFlag(c)
	pod, n, err := e.podFor(cl, ns, args[0])
	if err != nil {
		return err
	}
	if n > 1 {
		fmt.Fprintf(e.stderr, "Found %d pods, using pod/%s\n", n, pod.Name)
	}
	container, err = podContainer(pod, container, false, func(s string) { fmt.Fprintln(e.stderr, s) })
	if err != nil {
		return err
	}
	q := url.Values{"container": {container}}
	if c.Bool("follow") {
		q.Set("follow", "true")
	}
	if c.Bool("previous") {
		q.Set("previous", "true")
	}
	if tail >= 0 {
		q.Set("tailLines", strconv.Itoa(tail))
	}
	if c.IsSet("limit-bytes") {
		q.Set("limitBytes", strconv.FormatInt(c.Int64("limit-bytes"), 10))
	}
	resp, err := cl.Do(e.ctx, client.Request{Method: http.MethodGet, Path: podPath(ns, pod.Name) + "/log", Query: q,
		Accept: "text/plain", Stream: true})
	if err != nil {
		return err
	}
	defer resp.Stream.Close()
	if _, err := io.Copy(e.stdout, resp.Stream); err != nil && !errors.Is(e.ctx.Err(), context.Canceled) {
		return fmt.Errorf("reading the log of %s/%s: %w", pod.Name, container, err)
	}
	return nil
}

// podPath is a pod's REST path.
func podPath(ns, name string) string {
	return "/api/v1/namespaces/" + url.PathEscape(ns) + "/pods/" + url.PathEscape(name)
}
