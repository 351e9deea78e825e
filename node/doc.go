// Package node is the worker side of orch (the kubelet of Kubernetes): it
// joins the cluster by gossip, learns the API servers from it, and runs the
// pods bound to its node. Its subpackages hold the simulated worker used for
// scale tests and capacity planning.
package node
