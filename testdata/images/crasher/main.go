// Command crasher exits with a chosen code after a delay, optionally after
// allocating memory until its cgroup limit kills it. Flags win over the
// environment (EXIT_CODE, DELAY, ALLOC_MB).
//
//	crasher -code 3 -after 2s        prints a line, waits 2 s, exits 3
//	crasher -alloc-mb 512            touches 512 MiB (OOM-killed under a lower limit)
package main

import (
	"flag"
	"fmt"
	"os"
	"strconv"
	"time"
)

func main() {
	code := flag.Int("code", envInt("EXIT_CODE", 1), "exit code")
	after := flag.Duration("after", envDuration("DELAY", 0), "delay before exiting")
	allocMB := flag.Int("alloc-mb", envInt("ALLOC_MB", 0), "MiB of memory to touch before exiting")
	flag.Parse()

	fmt.Printf("crasher: exiting with code %d after %v\n", *code, *after)
	var hold [][]byte
	for i := 0; i < *allocMB; i++ {
		b := make([]byte, 1<<20)
		for j := range b {
			b[j] = byte(j)
		}
		hold = append(hold, b)
	}
	if *allocMB > 0 {
		fmt.Printf("crasher: holding %d MiB\n", len(hold))
	}
	time.Sleep(*after)
	os.Exit(*code)
}

func envInt(name string, def int) int {
	if n, err := strconv.Atoi(os.Getenv(name)); err == nil {
		return n
	}
	return def
}

func envDuration(name string, def time.Duration) time.Duration {
	if d, err := time.ParseDuration(os.Getenv(name)); err == nil {
		return d
	}
	return def
}
