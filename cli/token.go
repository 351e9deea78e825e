package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"time"

	"github.com/urfave/cli/v2"
	"k8s.io/apimachinery/pkg/util/duration"

	"orch.dev/orch/api/client"
)

// tokenInfo is a token as GET /v1/tokens lists it (agent.TokenInfo): never
// its secret.
type tokenInfo struct {
	ID        string     `json:"id"`
	Role      string     `json:"role"`
	User      string     `json:"user,omitempty"`
	CreatedAt time.Time  `json:"createdAt"`
	CreatedBy string     `json:"createdBy,omitempty"`
	ExpiresAt time.Time  `json:"expiresAt"`
	SingleUse bool       `json:"singleUse,omitempty"`
	UsedAt    *time.Time `json:"usedAt,omitempty"`
	UsedBy    string     `json:"usedBy,omitempty"`
	RevokedAt *time.Time `json:"revokedAt,omitempty"`
	Status    string     `json:"status"`
}

func tokenCommand(e *env) *cli.Command {
	return &cli.Command{
		Name:   "token",
		Usage:  "create, list and revoke join tokens (workers, servers) and user API tokens (admin, edit, view)",
		Action: groupAction(e, []string{"operator", "token"}),
		Subcommands: []*cli.Command{
			{Name: "create", Usage: "create a token and print it (it is shown only once)",
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "role", Required: true, Usage: "`ROLE`: worker or server (a join token), admin, edit or view (a user token)"},
					&cli.DurationFlag{Name: "ttl", Value: 24 * time.Hour, Usage: "how long the token is valid"},
					&cli.BoolFlag{Name: "single-use", Usage: "a join token that admits one node only"},
					&cli.StringFlag{Name: "user", Usage: "the user `NAME` a user token authenticates (required for admin, edit, view)"},
					outputFlag("json"),
				},
				Action: e.tokenCreate},
			{Name: "list", Usage: "list tokens: id, role, user, expiry and whether they are still valid",
				Flags: []cli.Flag{outputFlag("json")}, Action: e.tokenList},
			{Name: "revoke", Usage: "revoke a token: it no longer joins nodes or authenticates", ArgsUsage: "ID", Action: e.tokenRevoke},
		},
	}
}

func (e *env) tokenCreate(c *cli.Context) error {
	out := c.String("output")
	if err := checkOutput(out, outTable, outJSON); err != nil {
		return err
	}
	if c.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", c.Args().First())
	}
	if c.Duration("ttl") <= 0 {
		return fmt.Errorf("--ttl %s: must be positive", c.Duration("ttl"))
	}
	body, _ := json.Marshal(map[string]any{"role": c.String("role"), "ttl": c.Duration("ttl").String(),
		"singleUse": c.Bool("single-use"), "user": c.String("user")})
	cl, err := e.client(c)
	if err != nil {
		return err
	}
	resp, err := cl.Do(e.ctx, client.Request{Method: http.MethodPost, Path: "/v1/tokens", Body: body, ContentType: "application/json"})
	if err != nil {
		return err
	}
	var created struct {
		Token string `json:"token"`
		tokenInfo
	}
	if err := json.Unmarshal(resp.Body, &created); err != nil {
		return err
	}
	if out == outJSON {
		_, err := e.stdout.Write(append(resp.Body, '\n'))
		return err
	}
	fmt.Fprintln(e.stdout, created.Token)
	return nil
}

func (e *env) tokenList(c *cli.Context) error {
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
	var tokens []tokenInfo
	if err := cl.GetJSON(e.ctx, "/v1/tokens", nil, &tokens); err != nil {
		return err
	}
	if tokens == nil {
		tokens = []tokenInfo{}
	}
	if out == outJSON {
		return writeValue(e.stdout, outJSON, tokens)
	}
	now := time.Now()
	tw := newTabWriter(e.stdout)
	writeRow(tw, []string{"ID", "ROLE", "USER", "STATUS", "EXPIRES", "SINGLE-USE", "USED BY", "CREATED BY"})
	for _, t := range tokens {
		expires := "in " + duration.HumanDuration(t.ExpiresAt.Sub(now))
		if !now.Before(t.ExpiresAt) {
			expires = duration.HumanDuration(now.Sub(t.ExpiresAt)) + " ago"
		}
		writeRow(tw, []string{t.ID, t.Role, dash(t.User), t.Status, expires, fmt.Sprint(t.SingleUse), dash(t.UsedBy), dash(t.CreatedBy)})
	}
	return tw.Flush()
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func (e *env) tokenRevoke(c *cli.Context) error {
	if c.NArg() != 1 {
		return errors.New("ID is required: orchctl operator token revoke ID (see orchctl operator token list)")
	}
	id := c.Args().First()
	cl, err := e.client(c)
	if err != nil {
		return err
	}
	if _, err := cl.Do(e.ctx, client.Request{Method: http.MethodDelete, Path: "/v1/tokens/" + url.PathEscape(id)}); err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "token %s revoked\n", id)
	return nil
}
