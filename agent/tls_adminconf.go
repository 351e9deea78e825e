package agent

import (
	"path/filepath"

	"orch.dev/orch/api/client"
	"orch.dev/orch/internal/pki"
)

// adminConfFile is orchctl's connection file for this server's operator
// (as k3s writes k3s.yaml): this server's URL, the CA, and the cluster
// secret as the admin's token. 0600.
//
//	ORCH_CONFIG=DATA_DIR/admin.conf orchctl get nodes
const adminConfFile = "admin.conf"

// writeAdminConf writes DATA_DIR/admin.conf once the CA is known.
func (a *Agent) writeAdminConf() {
	select {
	case <-a.tls.Ready():
	case <-a.stop:
		return
	}
	fc := client.FileConfig{
		Servers: []string{a.scheme() + "://" + a.cfg.httpAddr()},
		CAData:  string(pki.CertPEM(a.tls.caCert())),
		User:    "cluster-admin",
		Token:   a.secret,
	}
	path := filepath.Join(a.cfg.DataDir, adminConfFile)
	if err := fc.Save(path); err != nil {
		a.logger.Error("writing the admin connection file", "file", path, "err", err)
		return
	}
	a.logger.Info("wrote the admin connection file: ORCH_CONFIG="+path+" orchctl ...", "file", path)
}

// AdminConfPath is where this server writes admin.conf (once it has the CA).
func (a *Agent) AdminConfPath() string { return filepath.Join(a.cfg.DataDir, adminConfFile) }
