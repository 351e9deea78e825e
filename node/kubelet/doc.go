// Package kubelet is the sync loop of an orch worker: it learns the pods
// bound to its node (a list+watch of the API with stale reads, resumed
// across server failures, and a copy of every desired pod in the worker's
// data directory), and drives a runtime.Runtime until what runs matches
// them. It owns everything the runtime must never decide: admission,
// volumes and environment, init container order, restart policy and
// CrashLoopBackOff, probes, graceful termination, adoption of what runs
// after an agent restart, and the pod status it reports.
//
// Each pod has one worker goroutine (podworker.go) that reconciles it
// level-triggered: woken by a new version of the pod, a container exit, a
// probe result or a timer, it looks at what the runtime reports and does
// the next step. Status goes through one status manager (status_manager.go)
// that keeps only the latest status of each pod and writes it once.
//
// This package must never stop a pod because the control plane cannot be
// reached: without the API it keeps running (and after an agent restart,
// restarts) the pods it last knew, and reconciles when the servers return.
// It never writes anything but pod status and deletion confirmations.
package kubelet
