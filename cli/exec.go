package cli

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"

	"github.com/urfave/cli/v2"
	corev1 "k8s.io/api/core/v1"

	"orch.dev/orch/api/client"
	"orch.dev/orch/node/worker/execstream"
)

const execUsage = "expected 'exec (POD | TYPE/NAME) [-c CONTAINER] -- COMMAND [args...]'. POD or TYPE/NAME and COMMAND are required arguments for the exec command"

func execCommand(e *env) *cli.Command {
	return &cli.Command{
		Name:      "exec",
		Usage:     "run a command in a container (non-interactive: no stdin, no TTY)",
		ArgsUsage: "(POD | TYPE/NAME) [-c CONTAINER] -- COMMAND [args...]",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "container", Aliases: []string{"c"}, Usage: "run in this `CONTAINER` (default: the pod's default container)"},
			&cli.BoolFlag{Name: "quiet", Aliases: []string{"q"}, Usage: "print only what the command prints"},
			&cli.BoolFlag{Name: "stdin", Aliases: []string{"i"}, Usage: "not supported: orch's exec is non-interactive"},
			&cli.BoolFlag{Name: "tty", Aliases: []string{"t"}, Usage: "not supported: orch's exec is non-interactive"},
		},
		// -it, as kubectl users type it.
		UseShortOptionHandling: true,
		Action:                 e.exec,
	}
}

// execArgs splits exec's arguments into the pod and the command, using the
// command line as typed: the arguments were reordered (flags first), and
// the command is what followed "--".
func execArgs(typed, args []string) (string, []string, error) {
	dash := slices.Index(typed, "--")
	if dash < 0 {
		if len(args) > 1 {
			return "", nil, errors.New("exec [POD] [COMMAND] is not supported anymore. Use exec [POD] -- [COMMAND] instead")
		}
		if len(args) == 1 {
			return "", nil, errors.New("you must specify at least one command for the container")
		}
		return "", nil, errors.New(execUsage)
	}
	n := len(typed) - dash - 1 // words of the command
	if n > len(args) {
		n = len(args)
	}
	before, cmd := args[:len(args)-n], args[len(args)-n:]
	switch {
	case len(before) == 0:
		return "", nil, errors.New(execUsage)
	case len(before) > 1:
		return "", nil, fmt.Errorf("exec takes one pod, and the command after --; got %q before --", before)
	case len(cmd) == 0:
		return "", nil, errors.New("you must specify at least one command for the container")
	}
	return before[0], cmd, nil
}

func (e *env) exec(c *cli.Context) error {
	if c.Bool("stdin") || c.Bool("tty") {
		return errors.New("-i/--stdin and -t/--tty: orch's exec is non-interactive (run a command that needs no input or terminal)")
	}
	podArg, cmd, err := execArgs(e.args, c.Args().Slice())
	if err != nil {
		return err
	}
	cl, err := e.client(c)
	if err != nil {
		return err
	}
	ns := namespaceFlag(c)
	pod, _, err := e.podFor(cl, ns, podArg)
	if err != nil {
		return err
	}
	if pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed {
		return fmt.Errorf("cannot exec into a container in a completed pod; current phase is %s", pod.Status.Phase)
	}
	container, err := podContainer(pod, c.String("container"), c.Bool("quiet"), func(s string) { fmt.Fprintln(e.stderr, s) })
	if err != nil {
		return err
	}
	q := url.Values{"container": {container}, "command": cmd, "stdout": {"true"}, "stderr": {"true"}}
	// Sent once: a command is never run twice because a connection broke.
	resp, err := cl.Do(e.ctx, client.Request{Method: http.MethodPost, Path: podPath(ns, pod.Name) + "/exec", Query: q,
		Stream: true, NoResend: true})
	if err != nil {
		return err
	}
	defer resp.Stream.Close()
	code, err := execstream.Read(resp.Stream, e.stdout, e.stderr)
	if err != nil {
		return err
	}
	if code != 0 {
		fmt.Fprintf(e.stderr, "command terminated with exit code %d\n", code)
		return exitCode(code)
	}
	return nil
}
