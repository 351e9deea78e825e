// Package cli is orchctl, the kubectl of orch: it owns the command line
// (commands, flags, the argument reordering that lets flags follow
// arguments), client-side manifest handling (apply's three-way merge),
// and the kubectl-compatible output formats (tables, -o json|yaml|name,
// describe). It talks to the cluster only through orch.dev/orch/api/client
// and never holds cluster state of its own.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"
	apierrors "k8s.io/apimachinery/pkg/api/errors"

	"orch.dev/orch/api/client"
)

// Version is the client's version, set at build time with
// -ldflags "-X orch.dev/orch/cli.Version=...".
var Version = "dev"

// kubernetesMinor is the Kubernetes release whose API orch serves; it must
// match agent.KubernetesMinor (a test checks).
const kubernetesMinor = "37"

// defaultRequestTimeout bounds how long one call keeps retrying across
// servers and elections: a person at a terminal should get an answer, or
// an error naming the servers, within seconds.
const defaultRequestTimeout = 10 * time.Second

// Main runs orchctl and returns its exit code. SIGINT and SIGTERM cancel
// the running command (a watch ends cleanly).
func Main(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return Run(ctx, args, stdin, stdout, stderr)
}

// env is what every command runs with.
type env struct {
	ctx    context.Context
	stdin  io.Reader
	stdout io.Writer
	stderr io.Writer
	now    func() time.Time
	args   []string // as given, for shell completion
}

// Run is Main with an explicit context (tests cancel watches with it).
func Run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	e := &env{ctx: ctx, stdin: stdin, stdout: stdout, stderr: stderr, now: time.Now}
	app := newApp(e)
	if len(args) == 0 {
		args = []string{"orchctl"}
	}
	e.args = args
	if args[len(args)-1] != "--generate-bash-completion" {
		inv := reorder(app, args)
		if inv.help {
			printHelp(stdout, app, inv.path)
			return 0
		}
		args = inv.args
	}
	err := app.RunContext(ctx, args)
	if err == nil {
		return 0
	}
	var ec exitCode
	if errors.As(err, &ec) {
		return int(ec)
	}
	fmt.Fprintln(stderr, errorLine(err))
	return 1
}

// newApp builds the command tree. Help is handled by printHelp rather than
// by urfave/cli's shared help flag and command, which it mutates on every
// run (a data race when tests run commands concurrently).
func newApp(e *env) *cli.App {
	app := &cli.App{
		Name:                 "orchctl",
		HelpName:             "orchctl",
		Usage:                "control an orch cluster",
		Reader:               e.stdin,
		Writer:               e.stdout,
		ErrWriter:            e.stderr,
		HideHelp:             true,
		HideHelpCommand:      true,
		HideVersion:          true,
		EnableBashCompletion: true,
		ExitErrHandler:       func(*cli.Context, error) {},
		OnUsageError:         usageError,
		Flags: append([]cli.Flag{
			&cli.StringFlag{Name: "server", Aliases: []string{"s"}, EnvVars: []string{"ORCH_ADDR"},
				Usage: "orch API servers, comma-separated `URL`s (the CLI fails over between them)"},
			&cli.StringFlag{Name: "token", EnvVars: []string{"ORCH_TOKEN"}, Usage: "bearer `TOKEN` (the cluster secret)"},
			&cli.StringFlag{Name: "namespace", Aliases: []string{"n"}, Value: "default", Usage: "`NAMESPACE` of namespaced objects"},
			&cli.StringFlag{Name: "request-timeout", Value: defaultRequestTimeout.String(),
				Usage: "how long a request keeps retrying across servers and elections (`DURATION`, 0 = no limit)"},
		}, connectionFlags()...), // config.go
		Commands: []*cli.Command{
			applyCommand(e), createCommand(e), getCommand(e), describeCommand(e), deleteCommand(e),
			labelCommand(e), scaleCommand(e), rolloutCommand(e), setCommand(e),
			logsCommand(e), execCommand(e), imageCommand(e),
			cordonCommand(e, true), cordonCommand(e, false), drainCommand(e), membersCommand(e), operatorCommand(e),
			apiResourcesCommand(e), versionCommand(e), completionCommand(e), helpCommand(e),
			configCommand(e),
		},
		Action: groupAction(e, nil),
	}
	app.BashComplete = e.completer(app, nil)
	e.finish(app, app.Commands)
	return app
}

// finish gives every command its own help flag and completer, and turns
// urfave/cli's usage errors into plain errors (printed once, on one line).
func (e *env) finish(app *cli.App, cmds []*cli.Command) {
	for _, c := range cmds {
		c.HideHelp, c.HideHelpCommand = true, true
		c.Flags = append(c.Flags, helpFlag())
		c.OnUsageError = usageError
		c.BashComplete = e.completer(app, c)
		e.finish(app, c.Subcommands)
	}
}

func helpFlag() cli.Flag {
	return &cli.BoolFlag{Name: "help", Aliases: []string{"h"}, Usage: "show help"}
}

func usageError(_ *cli.Context, err error, _ bool) error { return err }

// groupAction runs when a command that only groups subcommands is invoked
// without one.
func groupAction(e *env, path []string) cli.ActionFunc {
	return func(c *cli.Context) error {
		if c.Args().Present() {
			return fmt.Errorf("unknown command %q for %q", c.Args().First(), strings.Join(append([]string{"orchctl"}, path...), " "))
		}
		printHelp(e.stdout, c.App, commandPath(c.App, path))
		return nil
	}
}

// exitCode ends a command with that code after it has reported its errors
// itself.
type exitCode int

func (e exitCode) Error() string { return "exit status " + strconv.Itoa(int(e)) }

// opError adds what was being done to an error ("error when creating
// "cm.yaml""), keeping a server's Status visible to errorLine.
type opError struct {
	op  string
	err error
}

func (e *opError) Error() string { return e.op + ": " + e.err.Error() }
func (e *opError) Unwrap() error { return e.err }

// errorLine renders err as kubectl does, on one line: server answers as
// `Error from server (NotFound): configmaps "x" not found`, everything else
// as `error: ...`.
func errorLine(err error) string {
	var ops []string
	for e := err; e != nil; {
		switch t := e.(type) {
		case *opError:
			ops = append(ops, t.op)
			e = t.err
			continue
		case *apierrors.StatusError:
			msg := strings.Join(append(ops, t.ErrStatus.Message), ": ")
			if t.ErrStatus.Reason != "" && t.ErrStatus.Reason != "Unknown" {
				return oneLine(fmt.Sprintf("Error from server (%s): %s", t.ErrStatus.Reason, msg))
			}
			return oneLine("Error from server: " + msg)
		}
		break
	}
	return oneLine("error: " + err.Error())
}

func oneLine(s string) string {
	return strings.Join(strings.Fields(strings.ReplaceAll(s, "\n", " ")), " ")
}

// client connects to the servers the global flags name.
func (e *env) client(c *cli.Context) (*client.Client, error) {
	fc, err := connection(c) // flags over the connection file (config.go)
	if err != nil {
		return nil, err
	}
	list := strings.Join(fc.Servers, ",")
	if strings.TrimSpace(list) == "" {
		return nil, errors.New("no orch server given: set --server or ORCH_ADDR (e.g. https://127.0.0.1:7400), or ORCH_CONFIG")
	}
	servers, err := client.ParseServers(list)
	if err != nil {
		return nil, fmt.Errorf("--server: %w", err)
	}
	tlsCfg := fc.TLS()
	if tlsCfg.Enabled() {
		// Addresses without a scheme mean HTTPS when a CA is given.
		if servers, err = client.ParseServersScheme(list, "https"); err != nil {
			return nil, fmt.Errorf("--server: %w", err)
		}
	}
	timeout, err := parseTimeout(c.String("request-timeout"))
	if err != nil {
		return nil, err
	}
	cfg := client.Config{Servers: servers, Token: fc.Token, TLS: tlsCfg, RetryFor: timeout,
		AttemptTimeout: min(timeout, 30*time.Second), UserAgent: "orchctl/" + Version}
	return client.New(cfg)
}

// parseTimeout reads --request-timeout as kubectl does: a duration ("5s",
// "1m") or a number of seconds; 0 means no limit.
func parseTimeout(s string) (time.Duration, error) {
	d, err := time.ParseDuration(s)
	if err != nil {
		n, nerr := strconv.Atoi(s)
		if nerr != nil || n < 0 {
			return 0, fmt.Errorf("--request-timeout %q: must be a duration such as 10s or 1m, or a number of seconds", s)
		}
		d = time.Duration(n) * time.Second
	}
	if d < 0 {
		return 0, fmt.Errorf("--request-timeout %q: must not be negative", s)
	}
	if d == 0 {
		d = 365 * 24 * time.Hour
	}
	return d, nil
}

// namespaceFlag is -n (the namespace of namespaced objects without one).
func namespaceFlag(c *cli.Context) string { return c.String("namespace") }
