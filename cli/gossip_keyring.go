package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"orch.dev/orch/api/client"
)

// gossipKeyringStatus is GET /v1/operator/gossip/keyring (agent.GossipKeyringStatus).
type gossipKeyringStatus struct {
	Primary string `json:"primary"`
	Keys    []struct {
		ID        string `json:"id"`
		Primary   bool   `json:"primary"`
		Holders   int    `json:"holders"`
		PrimaryOf int    `json:"primaryOf"`
		Live      int    `json:"live"`
	} `json:"keys"`
	Members []struct {
		Name   string   `json:"name"`
		Role   string   `json:"role"`
		Status string   `json:"status"`
		Keys   []string `json:"keys"`
	} `json:"members"`
}

func gossipCommand(e *env) *cli.Command {
	return &cli.Command{
		Name:   "gossip",
		Usage:  "the gossip encryption keys of every server and worker",
		Action: groupAction(e, []string{"operator", "gossip"}),
		Subcommands: []*cli.Command{{
			Name:   "keyring",
			Usage:  "list, install, use and remove gossip keys; rotate does all three safely",
			Action: groupAction(e, []string{"operator", "gossip", "keyring"}),
			Subcommands: []*cli.Command{
				{Name: "list", Usage: "the key ids (never the keys), the primary, and how many live members hold or encrypt with each",
					Flags: []cli.Flag{outputFlag("json")}, Action: e.keyringList},
				{Name: "install", Usage: "add a key every member may decrypt with (a fresh random one without KEY) and print its id",
					ArgsUsage: "[KEY, base64 of 32 bytes]", Action: e.keyringInstall},
				{Name: "use", Usage: "make an installed key the one every member encrypts with (refused until every live member holds it)",
					ArgsUsage: "ID", Action: e.keyringUse},
				{Name: "remove", Usage: "remove a key (refused for the primary, and until no live member still encrypts with it)",
					ArgsUsage: "ID", Action: e.keyringRemove},
				{Name: "rotate", Usage: "install a fresh key, wait until every member holds it, make it primary, wait, and remove the old primary",
					Flags:  []cli.Flag{&cli.DurationFlag{Name: "timeout", Value: 2 * time.Minute, Usage: "how long to wait for the members at each step"}},
					Action: e.keyringRotate},
			},
		}},
	}
}

func (e *env) keyringStatus(c *cli.Context) (gossipKeyringStatus, error) {
	var st gossipKeyringStatus
	cl, err := e.client(c)
	if err != nil {
		return st, err
	}
	err = cl.GetJSON(e.ctx, "/v1/operator/gossip/keyring", nil, &st)
	return st, err
}

func (e *env) keyringList(c *cli.Context) error {
	out := c.String("output")
	if err := checkOutput(out, outTable, outJSON); err != nil {
		return err
	}
	if c.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", c.Args().First())
	}
	st, err := e.keyringStatus(c)
	if err != nil {
		return err
	}
	if out == outJSON {
		return writeValue(e.stdout, outJSON, st)
	}
	tw := newTabWriter(e.stdout)
	writeRow(tw, []string{"KEY", "PRIMARY", "HELD BY", "PRIMARY OF"})
	for _, k := range st.Keys {
		writeRow(tw, []string{k.ID, fmt.Sprint(k.Primary), fmt.Sprintf("%d/%d", k.Holders, k.Live), fmt.Sprintf("%d/%d", k.PrimaryOf, k.Live)})
	}
	writeRow(tw, []string{"", "", "", ""})
	writeRow(tw, []string{"MEMBER", "ROLE", "STATUS", "KEYS (PRIMARY FIRST)"})
	for _, m := range st.Members {
		writeRow(tw, []string{m.Name, m.Role, m.Status, dash(strings.Join(m.Keys, ","))})
	}
	return tw.Flush()
}

func (e *env) keyringSend(c *cli.Context, method, path string, body any) (map[string]any, error) {
	cl, err := e.client(c)
	if err != nil {
		return nil, err
	}
	req := client.Request{Method: method, Path: path}
	if body != nil {
		req.Body, _ = json.Marshal(body)
		req.ContentType = "application/json"
	}
	resp, err := cl.Do(e.ctx, req)
	if err != nil {
		return nil, err
	}
	var out map[string]any
	err = json.Unmarshal(resp.Body, &out)
	return out, err
}

func (e *env) keyringInstall(c *cli.Context) error {
	if c.NArg() > 1 {
		return errors.New("KEY: at most one (base64 of 32 random bytes; none for a fresh random key)")
	}
	out, err := e.keyringSend(c, http.MethodPost, "/v1/operator/gossip/keyring", map[string]string{"key": c.Args().First()})
	if err != nil {
		return err
	}
	fmt.Fprintln(e.stdout, out["id"])
	return nil
}

func keyID(c *cli.Context, verb string) (string, error) {
	if c.NArg() != 1 || c.Args().First() == "" {
		return "", fmt.Errorf("ID is required: orchctl operator gossip keyring %s ID (see orchctl operator gossip keyring list)", verb)
	}
	return c.Args().First(), nil
}

func (e *env) keyringUse(c *cli.Context) error {
	id, err := keyID(c, "use")
	if err != nil {
		return err
	}
	if _, err := e.keyringSend(c, http.MethodPut, "/v1/operator/gossip/keyring/primary", map[string]string{"id": id}); err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "gossip key %s is primary\n", id)
	return nil
}

func (e *env) keyringRemove(c *cli.Context) error {
	id, err := keyID(c, "remove")
	if err != nil {
		return err
	}
	if _, err := e.keyringSend(c, http.MethodDelete, "/v1/operator/gossip/keyring/"+url.PathEscape(id), nil); err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "gossip key %s removed\n", id)
	return nil
}

// keyringRotate runs install, use and remove, each once every live member
// took the step before (the servers refuse a step too early anyway).
func (e *env) keyringRotate(c *cli.Context) error {
	if c.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", c.Args().First())
	}
	timeout := c.Duration("timeout")
	if timeout <= 0 {
		return fmt.Errorf("--timeout %s: must be positive", timeout)
	}
	st, err := e.keyringStatus(c)
	if err != nil {
		return err
	}
	old := st.Primary
	out, err := e.keyringSend(c, http.MethodPost, "/v1/operator/gossip/keyring", map[string]string{})
	if err != nil {
		return err
	}
	id, _ := out["id"].(string)
	fmt.Fprintf(e.stdout, "installed gossip key %s\n", id)
	wait := func(what string, done func(gossipKeyringStatus) bool) error {
		deadline := time.Now().Add(timeout)
		for {
			st, err := e.keyringStatus(c)
			if err == nil && done(st) {
				return nil
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("--timeout %s: not every live member %s (orchctl operator gossip keyring list shows which; run the remaining steps by hand)", timeout, what)
			}
			select {
			case <-e.ctx.Done():
				return e.ctx.Err()
			case <-time.After(500 * time.Millisecond):
			}
		}
	}
	key := func(st gossipKeyringStatus, id string) (holders, primaryOf, live int, ok bool) {
		for _, k := range st.Keys {
			if k.ID == id {
				return k.Holders, k.PrimaryOf, k.Live, true
			}
		}
		return 0, 0, 0, false
	}
	if err := wait("holds key "+id, func(st gossipKeyringStatus) bool { h, _, l, ok := key(st, id); return ok && h == l }); err != nil {
		return err
	}
	if _, err := e.keyringSend(c, http.MethodPut, "/v1/operator/gossip/keyring/primary", map[string]string{"id": id}); err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "gossip key %s is primary\n", id)
	if err := wait("encrypts with key "+id, func(st gossipKeyringStatus) bool { _, p, l, ok := key(st, id); return ok && p == l }); err != nil {
		return err
	}
	if old == id {
		return nil
	}
	if _, err := e.keyringSend(c, http.MethodDelete, "/v1/operator/gossip/keyring/"+url.PathEscape(old), nil); err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "gossip key %s removed\n", old)
	return wait("dropped key "+old, func(st gossipKeyringStatus) bool {
		for _, m := range st.Members {
			if slices.Contains(m.Keys, old) {
				return false
			}
		}
		return true
	})
}
