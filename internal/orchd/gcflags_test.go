package orchd

import (
	"flag"
	"testing"

	"github.com/urfave/cli/v2"
)

func gcContext(t *testing.T, args ...string) *cli.Context {
	t.Helper()
	fs := flag.NewFlagSet("agent", flag.ContinueOnError)
	for _, f := range gcFlags() {
		if err := f.Apply(fs); err != nil {
			t.Fatal(err)
		}
	}
	if err := fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	return cli.NewContext(cli.NewApp(), fs, nil)
}

// The server's collector settings: flags, defaults from the machine's
// memory, and the environment's GOGC and GOMEMLIMIT taking precedence.
func TestServerGCSettings(t *testing.T) {
	const gib = int64(1) << 30
	noEnv := func(string) string { return "" }
	cases := []struct {
		name string
		args []string
		env  map[string]string
		mem  int64
		want gcSettings
	}{
		{"defaults", nil, nil, 8 * gib, gcSettings{percent: defaultServerGCPercent, limit: 4 * gib}},
		{"memory unknown", nil, nil, 0, gcSettings{percent: defaultServerGCPercent}},
		{"flags", []string{"--gc-percent", "150", "--memory-limit", "1Gi"}, nil, 8 * gib, gcSettings{percent: 150, limit: gib}},
		{"no limit", []string{"--memory-limit", "0"}, nil, 8 * gib, gcSettings{percent: defaultServerGCPercent}},
		{"environment wins", []string{"--gc-percent", "150"}, map[string]string{"GOGC": "100", "GOMEMLIMIT": "1GiB"}, 8 * gib, gcSettings{}},
	}
	for _, tc := range cases {
		getenv := noEnv
		if tc.env != nil {
			getenv = func(k string) string { return tc.env[k] }
		}
		got, err := serverGCSettings(gcContext(t, tc.args...), getenv, tc.mem)
		if err != nil || got != tc.want {
			t.Errorf("%s: got %+v, %v; want %+v", tc.name, got, err, tc.want)
		}
	}
}
