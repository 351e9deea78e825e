package cli

import (
	"fmt"
	"sort"
	"strings"

	"github.com/urfave/cli/v2"

	"orch.dev/orch/api"
)

// The completion scripts ask orchctl itself for candidates (urfave/cli's
// --generate-bash-completion protocol). They are adapted from urfave/cli's
// autocomplete scripts so that they need neither the bash-completion
// package nor eval of the command line, and name the program explicitly
// (`source <(orchctl completion bash)` has no useful $BASH_SOURCE).
const bashCompletion = `# orchctl completion for bash: source <(orchctl completion bash)
_orchctl_complete() {
  local cur="${COMP_WORDS[COMP_CWORD]}"
  local -a words=("${COMP_WORDS[@]:0:COMP_CWORD}")
  local opts
  if [[ "$cur" == -* ]]; then
    # "--" would end flag parsing and disable completion: ask with "-".
    local flag="$cur"
    [[ "$flag" == "--" ]] && flag="-"
    opts=$("${words[@]}" "$flag" --generate-bash-completion 2>/dev/null)
  else
    opts=$("${words[@]}" --generate-bash-completion 2>/dev/null)
  fi
  COMPREPLY=($(compgen -W "${opts}" -- "${cur}"))
  return 0
}
complete -o bashdefault -o default -F _orchctl_complete orchctl
`

const zshCompletion = `#compdef orchctl
# orchctl completion for zsh: source <(orchctl completion zsh) (after compinit)
_orchctl() {
  local -a opts
  local cur=${words[-1]}
  if [[ "$cur" == -* ]]; then
    opts=("${(@f)$(${words[@]:0:#words[@]-1} ${cur} --generate-bash-completion 2>/dev/null)}")
  else
    opts=("${(@f)$(${words[@]:0:#words[@]-1} --generate-bash-completion 2>/dev/null)}")
  fi
  if [[ "${opts[1]}" != "" ]]; then
    _describe 'values' opts
  else
    _files
  fi
}
compdef _orchctl orchctl
`

func completionCommand(e *env) *cli.Command {
	return &cli.Command{
		Name:      "completion",
		Usage:     "print a shell completion script",
		ArgsUsage: "bash|zsh",
		Action: func(c *cli.Context) error {
			switch c.Args().First() {
			case "bash":
				fmt.Fprint(e.stdout, bashCompletion)
			case "zsh":
				fmt.Fprint(e.stdout, zshCompletion)
			case "":
				return fmt.Errorf("SHELL is required: orchctl completion bash|zsh")
			default:
				return fmt.Errorf("unsupported shell %q: use bash or zsh", c.Args().First())
			}
			return nil
		},
	}
}

// resourceCommands take a resource type as their first argument.
var resourceCommands = map[string]bool{"get": true, "describe": true, "delete": true, "label": true, "scale": true,
	"status": true, "history": true, "undo": true, "restart": true, "image": true}

// completer answers --generate-bash-completion for cmd (nil for the app):
// flags when the word being completed starts with "-", else subcommands,
// else resource types. It reads the word from the arguments orchctl was
// run with (urfave/cli's default reads os.Args, which is wrong in-process).
func (e *env) completer(app *cli.App, cmd *cli.Command) cli.BashCompleteFunc {
	return func(c *cli.Context) {
		w := c.App.Writer
		var cur string
		if n := len(e.args); n > 2 {
			cur = e.args[n-2]
		}
		flags, subs := app.Flags, app.Commands
		if cmd != nil {
			flags, subs = cmd.Flags, cmd.Subcommands
		}
		if strings.HasPrefix(cur, "-") {
			for _, f := range flags {
				for _, n := range f.Names() {
					cand := "--" + n
					if len(n) == 1 {
						cand = "-" + n
					}
					if strings.HasPrefix(cand, cur) {
						fmt.Fprintln(w, cand)
					}
				}
			}
			return
		}
		for _, s := range subs {
			if !s.Hidden {
				fmt.Fprintln(w, s.Name)
			}
		}
		if cmd == nil || !resourceCommands[cmd.Name] || c.NArg() > 0 {
			return
		}
		var names []string
		for _, k := range api.Kinds {
			names = append(names, k.Resource)
		}
		sort.Strings(names)
		for _, n := range names {
			fmt.Fprintln(w, n)
		}
	}
}
