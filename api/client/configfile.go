package client

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"sigs.k8s.io/yaml"

	"orch.dev/orch/internal/atomicfile"
)

// FileConfig is orchctl's connection file ($ORCH_CONFIG, default
// ~/.orch/config), YAML. Every server also writes one for its operator,
// DATA_DIR/admin.conf, with the cluster secret as token (as k3s writes
// k3s.yaml):
//
//	servers: [https://10.0.0.11:7400, https://10.0.0.12:7400]
//	ca: /etc/orch/ca.crt          # or caData: the PEM itself
//	user: admin
//	token: ...                    # or clientCert and clientKey (files)
type FileConfig struct {
	Servers    []string `json:"servers,omitempty"`
	CA         string   `json:"ca,omitempty"`
	CAData     string   `json:"caData,omitempty"`
	User       string   `json:"user,omitempty"`
	Token      string   `json:"token,omitempty"`
	ClientCert string   `json:"clientCert,omitempty"`
	ClientKey  string   `json:"clientKey,omitempty"`
}

// DefaultConfigPath is $ORCH_CONFIG, else ~/.orch/config ("" when there is
// no home directory).
func DefaultConfigPath() string {
	if p := os.Getenv("ORCH_CONFIG"); p != "" {
		return p
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return ""
	}
	return filepath.Join(home, ".orch", "config")
}

// LoadConfigFile reads path; a missing file is an empty configuration
// unless must is set.
func LoadConfigFile(path string, must bool) (FileConfig, error) {
	var fc FileConfig
	if path == "" {
		return fc, nil
	}
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) && !must {
		return fc, nil
	}
	if err != nil {
		return fc, fmt.Errorf("config file: %w", err)
	}
	if err := yaml.UnmarshalStrict(b, &fc); err != nil {
		return fc, fmt.Errorf("config file %s: %w", path, err)
	}
	return fc, nil
}

// Save writes the file (0600: it may hold a token), creating its directory.
func (fc FileConfig) Save(path string) error {
	b, err := yaml.Marshal(fc)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	return atomicfile.Write(path, b, 0o600)
}

// TLS is the file's TLS settings.
func (fc FileConfig) TLS() TLS {
	return TLS{CAFile: fc.CA, CAPEM: []byte(fc.CAData), CertFile: fc.ClientCert, KeyFile: fc.ClientKey}
}
