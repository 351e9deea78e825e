package cli

import (
	"strings"

	"github.com/urfave/cli/v2"
)

// invocation is a command line rewritten so that urfave/cli parses it the
// way kubectl users type it.
type invocation struct {
	args []string       // rewritten arguments, args[0] is the program
	path []*cli.Command // the (sub)commands named, outermost first
	help bool           // -h/--help was given anywhere
}

// flagToken is one flag occurrence, with its value token when the value was
// given as a separate argument.
type flagToken struct {
	name   string
	tokens []string
}

// reorder rewrites args so that every flag precedes the positional
// arguments of the command that defines it. urfave/cli v2 (like Go's flag
// package) stops parsing flags at the first positional argument and only
// accepts a command's flags right after the command's name, so
// `orchctl get pods -n kube-system -o wide` would otherwise treat "-n",
// "kube-system", "-o" and "wide" as names of pods.
//
// The walk knows each command's flags, so it knows which flags take a value
// (`-o wide`) and which do not (`-w`, `--overwrite`), accepts `--flag=value`,
// and treats everything after `--` as positional. A flag is moved to the
// deepest command in the path that defines it (the command's own flags
// shadow global ones); a flag no command defines is left at the end of the
// path, where urfave/cli reports it as undefined.
func reorder(app *cli.App, args []string) invocation {
	inv := invocation{}
	if len(args) == 0 {
		return inv
	}
	var (
		path        []*cli.Command
		flags       []flagToken
		positionals []string
		dashdash    bool
	)
	levels := func() [][]cli.Flag {
		out := [][]cli.Flag{app.Flags}
		for _, c := range path {
			out = append(out, c.Flags)
		}
		return out
	}
	subcommands := func() []*cli.Command {
		if len(path) == 0 {
			return app.Commands
		}
		return path[len(path)-1].Subcommands
	}
	rest := args[1:]
	for i := 0; i < len(rest); i++ {
		tok := rest[i]
		if dashdash {
			positionals = append(positionals, tok)
			continue
		}
		if tok == "--" {
			dashdash = true
			continue
		}
		if name, hasValue, ok := flagName(tok); ok {
			ft := flagToken{name: name, tokens: []string{tok}}
			if name == "help" || name == "h" {
				inv.help = true
			}
			f := findFlag(levels(), name)
			if f == nil {
				f = findFlagBelow(subcommands(), name)
			}
			if !hasValue && f != nil && takesValue(f) && i+1 < len(rest) {
				i++
				ft.tokens = append(ft.tokens, rest[i])
			}
			flags = append(flags, ft)
			continue
		}
		if len(positionals) == 0 {
			if sub := findCommand(subcommands(), tok); sub != nil {
				path = append(path, sub)
				continue
			}
		}
		positionals = append(positionals, tok)
	}

	// Assign each flag to the deepest command that defines it.
	lv := levels()
	placed := make([][]string, len(lv))
	for _, ft := range flags {
		at := len(lv) - 1
		for l := len(lv) - 1; l >= 0; l-- {
			if findFlag(lv[l:l+1], ft.name) != nil {
				at = l
				break
			}
		}
		placed[at] = append(placed[at], ft.tokens...)
	}
	out := []string{args[0]}
	out = append(out, placed[0]...)
	for i, c := range path {
		out = append(out, c.Name)
		out = append(out, placed[i+1]...)
	}
	for _, p := range positionals {
		if strings.HasPrefix(p, "-") && p != "-" {
			out = append(out, "--")
			break
		}
	}
	out = append(out, positionals...)
	inv.args, inv.path = out, path
	return inv
}

// flagName parses a flag token: "-o", "--output", "--output=json". "-" (a
// file name meaning stdin) is not a flag.
func flagName(tok string) (name string, hasValue, ok bool) {
	if len(tok) < 2 || tok[0] != '-' {
		return "", false, false
	}
	name = strings.TrimPrefix(tok[1:], "-")
	if name == "" || name[0] == '-' || name[0] == '=' {
		return "", false, false
	}
	if i := strings.IndexByte(name, '='); i >= 0 {
		return name[:i], true, true
	}
	return name, false, true
}

func findFlag(levels [][]cli.Flag, name string) cli.Flag {
	for l := len(levels) - 1; l >= 0; l-- {
		for _, f := range levels[l] {
			for _, n := range f.Names() {
				if n == name {
					return f
				}
			}
		}
	}
	return nil
}

// findFlagBelow looks for a flag among the subcommands not yet named, so
// that `orchctl -o json members` knows "-o" takes a value before it has seen
// "members".
func findFlagBelow(cmds []*cli.Command, name string) cli.Flag {
	for _, c := range cmds {
		if f := findFlag([][]cli.Flag{c.Flags}, name); f != nil {
			return f
		}
		if f := findFlagBelow(c.Subcommands, name); f != nil {
			return f
		}
	}
	return nil
}

func findCommand(cmds []*cli.Command, name string) *cli.Command {
	for _, c := range cmds {
		if c.HasName(name) {
			return c
		}
	}
	return nil
}

func takesValue(f cli.Flag) bool {
	if d, ok := f.(cli.DocGenerationFlag); ok {
		return d.TakesValue()
	}
	return false
}
