// Command sigterm tests graceful termination: it prints "ready" once its
// SIGTERM handler is installed, then on SIGTERM either exits with -code after
// -delay (env DELAY), or with -ignore (env IGNORE=1) logs and keeps running
// until SIGKILL.
package main

import (
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"
)

func main() {
	def := time.Duration(0)
	if d, err := time.ParseDuration(os.Getenv("DELAY")); err == nil {
		def = d
	}
	delay := flag.Duration("delay", def, "time between SIGTERM and exit")
	ignore := flag.Bool("ignore", os.Getenv("IGNORE") == "1", "ignore SIGTERM")
	code := flag.Int("code", 0, "exit code after SIGTERM")
	flag.Parse()

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM)
	fmt.Println("ready")
	for range sig {
		if *ignore {
			fmt.Println("got SIGTERM, ignoring it")
			continue
		}
		fmt.Printf("got SIGTERM, exiting with %d in %v\n", *code, *delay)
		time.Sleep(*delay)
		os.Exit(*code)
	}
}
