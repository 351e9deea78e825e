package cli

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/urfave/cli/v2"
)

func helpCommand(e *env) *cli.Command {
	return &cli.Command{
		Name:      "help",
		Usage:     "show help for orchctl or for a command",
		ArgsUsage: "[COMMAND...]",
		Action: func(c *cli.Context) error {
			path := commandPath(c.App, c.Args().Slice())
			if len(path) != c.NArg() {
				return fmt.Errorf("unknown command %q", strings.Join(c.Args().Slice(), " "))
			}
			printHelp(e.stdout, c.App, path)
			return nil
		},
	}
}

// commandPath resolves command names to commands, stopping at the first
// name that is not one.
func commandPath(app *cli.App, names []string) []*cli.Command {
	var path []*cli.Command
	cmds := app.Commands
	for _, n := range names {
		c := findCommand(cmds, n)
		if c == nil {
			break
		}
		path = append(path, c)
		cmds = c.Subcommands
	}
	return path
}

// printHelp writes the help of the app (empty path) or of the last command
// in path.
func printHelp(w io.Writer, app *cli.App, path []*cli.Command) {
	names := []string{app.Name}
	for _, c := range path {
		names = append(names, c.Name)
	}
	full := strings.Join(names, " ")
	usage, args, subs, flags := app.Usage, "", app.Commands, []cli.Flag(nil)
	desc := ""
	if len(path) > 0 {
		c := path[len(path)-1]
		usage, args, subs, flags, desc = c.Usage, c.ArgsUsage, c.Subcommands, c.Flags, c.Description
	}
	fmt.Fprintf(w, "%s - %s\n\n", full, usage)
	if desc != "" {
		fmt.Fprintf(w, "%s\n\n", strings.TrimSpace(desc))
	}
	switch {
	case len(subs) > 0:
		fmt.Fprintf(w, "Usage:\n  %s COMMAND [ARGS] [FLAGS]\n\nCommands:\n", full)
		tw := tabwriter.NewWriter(w, 0, 8, 3, ' ', 0)
		for _, s := range subs {
			if !s.Hidden {
				fmt.Fprintf(tw, "  %s\t%s\n", s.Name, s.Usage)
			}
		}
		tw.Flush()
	default:
		fmt.Fprintf(w, "Usage:\n  %s %s [FLAGS]\n", full, args)
	}
	writeFlags(w, "Flags", flags)
	writeFlags(w, "Global flags", app.Flags)
	if len(subs) > 0 {
		fmt.Fprintf(w, "\nRun '%s COMMAND --help' for more about a command.\n", full)
	}
}

func writeFlags(w io.Writer, title string, flags []cli.Flag) {
	if len(flags) == 0 {
		return
	}
	fmt.Fprintf(w, "\n%s:\n", title)
	tw := tabwriter.NewWriter(w, 0, 8, 3, ' ', 0)
	for _, f := range flags {
		d, ok := f.(cli.DocGenerationFlag)
		if !ok {
			continue
		}
		var names []string
		for _, n := range f.Names() {
			if len(n) == 1 {
				names = append(names, "-"+n)
			} else {
				names = append(names, "--"+n)
			}
		}
		spec := strings.Join(names, ", ")
		if d.TakesValue() {
			spec += " value"
		}
		usage := d.GetUsage()
		if def := d.GetDefaultText(); d.TakesValue() && def != "" && def != `""` && def != "[]" {
			usage += " (default " + def + ")"
		}
		if env := d.GetEnvVars(); len(env) > 0 {
			usage += " [$" + strings.Join(env, ", $") + "]"
		}
		fmt.Fprintf(tw, "  %s\t%s\n", spec, strings.ReplaceAll(usage, "`", ""))
	}
	tw.Flush()
}
