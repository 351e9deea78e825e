// Package e2e holds the multi-process tests: real orchd servers (built from
// this tree) on loopback addresses, driven through the Go client, with
// servers killed, stopped and restarted while clients write.
package e2e
