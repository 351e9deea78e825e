package testnet

import (
	"fmt"
	"net"
	"os"
	"strings"
	"time"
)

// runHelper is the child side: bring up lo, optionally serve echo, say
// "ready", and live until killed.
func runHelper(mode, name string) {
	if err := setLoopbackUp(); err != nil {
		fmt.Fprintln(os.Stderr, "helper:", err)
		os.Exit(1)
	}
	if port, ok := strings.CutPrefix(mode, "echo:"); ok {
		if err := serveEcho(name, ":"+port); err != nil {
			fmt.Fprintln(os.Stderr, "helper:", err)
			os.Exit(1)
		}
	}
	fmt.Println("ready")
	// Not select{}: with no other goroutine the runtime would call that a
	// deadlock and exit.
	for {
		time.Sleep(time.Hour)
	}
}

// serveEcho answers every TCP connection and UDP datagram with
// "<name> <client ip>".
func serveEcho(name, addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	pc, err := net.ListenPacket("udp", addr)
	if err != nil {
		return err
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			host, _, _ := net.SplitHostPort(c.RemoteAddr().String())
			fmt.Fprintf(c, "%s %s\n", name, host)
			c.Close()
		}
	}()
	go func() {
		buf := make([]byte, 1500)
		for {
			_, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			host, _, _ := net.SplitHostPort(from.String())
			pc.WriteTo([]byte(fmt.Sprintf("%s %s\n", name, host)), from)
		}
	}()
	return nil
}
