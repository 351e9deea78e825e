// Command slowstart listens only after a delay, for startup and readiness
// probe tests: it waits DELAY (or -delay, default 5s), then serves 200 on
// every path of $PORT (default 8080).
package main

import (
	"flag"
	"fmt"
	"net/http"
	"os"
	"time"
)

func main() {
	def := 5 * time.Second
	if d, err := time.ParseDuration(os.Getenv("DELAY")); err == nil {
		def = d
	}
	delay := flag.Duration("delay", def, "wait before listening")
	flag.Parse()
	port := os.Getenv("PORT")
	if port == "" {
		port = "8080"
	}
	fmt.Printf("slowstart: listening on :%s in %v\n", port, *delay)
	time.Sleep(*delay)
	fmt.Println("slowstart: listening")
	err := http.ListenAndServe(":"+port, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, "ok")
	}))
	fmt.Fprintln(os.Stderr, err)
	os.Exit(1)
}
