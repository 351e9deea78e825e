package cli

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/urfave/cli/v2"
	"sigs.k8s.io/yaml"

	"orch.dev/orch/api/client"
)

// The connection file ($ORCH_CONFIG, default ~/.orch/config) holds what
// the connection flags would: servers, the cluster CA, and a token or a
// client certificate. Flags and their environment variables win over it.

// connectionFlags are the global flags that say how to reach the cluster.
func connectionFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "ca-file", EnvVars: []string{"ORCH_CA_FILE"}, Usage: "the cluster CA certificate `FILE` (DATA_DIR/tls/ca.crt on a server)"},
		&cli.StringFlag{Name: "client-cert", EnvVars: []string{"ORCH_CLIENT_CERT"}, Usage: "client certificate `FILE` (PEM)"},
		&cli.StringFlag{Name: "client-key", EnvVars: []string{"ORCH_CLIENT_KEY"}, Usage: "client certificate key `FILE` (PEM)"},
	}
}

// connection merges the flags over the connection file.
func connection(c *cli.Context) (client.FileConfig, error) {
	path := client.DefaultConfigPath()
	fc, err := client.LoadConfigFile(path, os.Getenv("ORCH_CONFIG") != "")
	if err != nil {
		return fc, err
	}
	if s := c.String("server"); strings.TrimSpace(s) != "" {
		fc.Servers = []string{s}
	}
	if t := c.String("token"); t != "" {
		fc.Token = t
	}
	if f := c.String("ca-file"); f != "" {
		fc.CA, fc.CAData = f, ""
	}
	if c.String("client-cert") != "" || c.String("client-key") != "" {
		fc.ClientCert, fc.ClientKey = c.String("client-cert"), c.String("client-key")
	}
	return fc, nil
}

func configCommand(e *env) *cli.Command {
	return &cli.Command{
		Name:  "config",
		Usage: "edit the connection file ($ORCH_CONFIG, default ~/.orch/config)",
		Subcommands: []*cli.Command{
			{
				Name:      "set-cluster",
				Usage:     "set the servers and the cluster CA",
				ArgsUsage: " ",
				Flags: []cli.Flag{
					&cli.StringSliceFlag{Name: "server", Usage: "server `URL` (repeatable or comma-separated)"},
					&cli.StringFlag{Name: "ca-file", Usage: "the cluster CA certificate `FILE`"},
				},
				Action: func(c *cli.Context) error {
					return editConfig(e, func(fc *client.FileConfig) error {
						if len(c.StringSlice("server")) == 0 && c.String("ca-file") == "" {
							return errors.New("set-cluster: give --server, --ca-file or both")
						}
						if list := c.StringSlice("server"); len(list) > 0 {
							servers, err := client.ParseServers(strings.Join(list, ","))
							if err != nil {
								return fmt.Errorf("--server: %w", err)
							}
							fc.Servers = servers
						}
						if f := c.String("ca-file"); f != "" {
							abs, err := filepath.Abs(f)
							if err != nil {
								return err
							}
							if _, err := (client.TLS{CAFile: abs}).Config(); err != nil {
								return fmt.Errorf("--ca-file: %w", err)
							}
							fc.CA, fc.CAData = abs, ""
						}
						return nil
					})
				},
			},
			{
				Name:      "set-credentials",
				Usage:     "set who you are: a token, or a client certificate and key",
				ArgsUsage: "NAME",
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "token", Usage: "bearer `TOKEN`"},
					&cli.StringFlag{Name: "client-cert", Usage: "client certificate `FILE`"},
					&cli.StringFlag{Name: "client-key", Usage: "client key `FILE`"},
				},
				Action: func(c *cli.Context) error {
					if c.NArg() != 1 {
						return errors.New("set-credentials: give one NAME")
					}
					tok, cert, key := c.String("token"), c.String("client-cert"), c.String("client-key")
					switch {
					case tok != "" && (cert != "" || key != ""):
						return errors.New("set-credentials: --token, or --client-cert with --client-key, not both")
					case tok == "" && (cert == "" || key == ""):
						return errors.New("set-credentials: give --token, or --client-cert and --client-key")
					}
					return editConfig(e, func(fc *client.FileConfig) error {
						fc.User, fc.Token, fc.ClientCert, fc.ClientKey = c.Args().First(), tok, "", ""
						if cert != "" {
							for _, p := range []*string{&cert, &key} {
								abs, err := filepath.Abs(*p)
								if err != nil {
									return err
								}
								*p = abs
							}
							fc.ClientCert, fc.ClientKey = cert, key
						}
						return nil
					})
				},
			},
			{
				Name:      "view",
				Usage:     "show the connection file (the token redacted)",
				ArgsUsage: " ",
				Action: func(c *cli.Context) error {
					path := client.DefaultConfigPath()
					fc, err := client.LoadConfigFile(path, true)
					if err != nil {
						return err
					}
					if fc.Token != "" {
						fc.Token = "REDACTED"
					}
					if fc.CAData != "" {
						fc.CAData = "DATA+OMITTED"
					}
					b, err := yaml.Marshal(fc)
					if err != nil {
						return err
					}
					fmt.Fprintf(e.stdout, "# %s\n%s", path, b)
					return nil
				},
			},
		},
	}
}

// editConfig loads the connection file, applies f and saves it.
func editConfig(e *env, f func(*client.FileConfig) error) error {
	path := client.DefaultConfigPath()
	if path == "" {
		return errors.New("no connection file: set ORCH_CONFIG (there is no home directory)")
	}
	fc, err := client.LoadConfigFile(path, false)
	if err != nil {
		return err
	}
	if err := f(&fc); err != nil {
		return err
	}
	if err := fc.Save(path); err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "wrote %s\n", path)
	return nil
}
