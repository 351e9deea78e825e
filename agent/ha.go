package agent

// startHA starts the background work of HAConfig: the free-disk guard and
// periodic snapshots. Dead-server cleanup runs in autopilot, on the leader.
func (a *Agent) startHA() {
	if a.cfg.HA.MinFreeDisk > 0 {
		a.disk.reserve.Store(a.cfg.HA.MinFreeDisk)
		a.checkDisk() // a server that starts on a full disk refuses writes at once
		a.goRun(a.diskLoop)
	}
	if a.cfg.HA.AutoSnapshotInterval > 0 {
		a.goRun(a.autoSnapshotLoop)
	}
}
