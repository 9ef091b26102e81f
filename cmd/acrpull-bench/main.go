/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

// Command acrpull-bench measures a controller at scale (`make bench`). See internal/bench.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/acrpull/acrpull/internal/bench"
)

func main() {
	var o bench.Options
	var controller, scenarios string
	flag.StringVar(&controller, "controller", "", "Controller command line (space-separated); default: bin/acrpull with loopback metrics. "+
		"It is run with KUBECONFIG, HTTPS_PROXY, HTTP_PROXY, NO_PROXY and SSL_CERT_FILE set.")
	flag.IntVar(&o.Bindings, "bindings", 10000, "Bindings in the burst.")
	flag.IntVar(&o.Namespaces, "namespaces", 1000, "Namespaces the bindings spread over.")
	flag.IntVar(&o.Identities, "identities", 10, "Identities the bindings share.")
	flag.IntVar(&o.Workers, "workers", 16, "The bench client's concurrency (also the write floor's).")
	flag.StringVar(&scenarios, "scenarios", "burst,steady,noise,throttled", "Scenarios to run, in order.")
	flag.IntVar(&o.NoiseObjects, "noise-objects", 50000, "Unrelated Secrets and ConfigMaps for the noise scenario.")
	flag.DurationVar(&o.AccessTokenLifetime, "access-token-lifetime", 5*time.Minute, "Registry access token lifetime (steady's refresh cycle is half of it).")
	flag.IntVar(&o.SteadyCycles, "steady-cycles", 3, "Refresh cycles steady observes.")
	flag.Float64Var(&o.ThrottleRate, "throttle-rate", 5, "Requests per second per Azure endpoint above which the fake answers 429.")
	flag.IntVar(&o.ThrottleBindings, "throttle-bindings", 1000, "New bindings in the throttled scenario.")
	flag.IntVar(&o.ThrottleIdentities, "throttle-identities", 50, "New identities (cache misses) in the throttled scenario.")
	flag.StringVar(&o.JSONPath, "out", "bench-results.json", "JSON file for every figure.")
	flag.Parse()
	o.Out = os.Stdout
	if controller != "" {
		o.Controller = strings.Fields(controller)
	}
	o.Scenarios = strings.Split(scenarios, ",")
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if _, err := bench.Run(ctx, o); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}
