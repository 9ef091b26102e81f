/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

// Command acrpull-bench measures a controller at scale (`make bench`). See internal/harness/bench.
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

	"github.com/go-logr/logr"
	"k8s.io/apimachinery/pkg/api/resource"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/acrpull/acrpull/internal/harness/bench"
)

func main() {
	var o bench.Options
	var controller, controllerFlags, upstream, scenarios, podIdentityModes, nmiAgent, nmiModes string
	flag.StringVar(&controller, "controller", "", "Controller command line (space-separated); default: bin/acrpull with loopback metrics. "+
		"It is run with KUBECONFIG, HTTPS_PROXY, HTTP_PROXY, NO_PROXY and SSL_CERT_FILE set.")
	flag.StringVar(&controllerFlags, "controller-flags", "", "Flags (space-separated) added to the bench's own acrpull command line, "+
		"to measure their effect with the figures only the bench's own controller gives (metrics, profiles); not with --controller.")
	flag.StringVar(&upstream, "upstream", "", "A second controller's command line (msi-acrpull; see make bench-upstream), measured first in the same run "+
		"on the same apiserver and fake cloud, then stopped and its bindings removed; scenarios burst, steady, busy and restart only. Figures are printed side by side.")
	flag.IntVar(&o.Bindings, "bindings", 10000, "Bindings in the burst.")
	flag.IntVar(&o.Namespaces, "namespaces", 1000, "Namespaces the bindings spread over.")
	flag.IntVar(&o.Identities, "identities", 10, "Identities the bindings share.")
	flag.IntVar(&o.Workers, "workers", 16, "The bench client's concurrency (also the write floor's).")
	flag.IntVar(&o.FloorBindings, "floor-bindings", 0, "Measure the write floor on this many bindings' writes and scale it to --bindings (0: all of them). "+
		"For sizes where the floor itself would take most of the run.")
	flag.StringVar(&scenarios, "scenarios", "burst,steady,noise,throttled", "Scenarios to run, in order; busy (new bindings at --busy-rate among those present) and restart (the controller "+
		"restarted with every binding current) and outage (the whole fake cloud down for --outage-duration, with the bindings present) "+
		"are available but not run by default; podidentity (AAD Pod Identity's "+
		"assignment controller and node agents, in-process) is available but not run by default; nmi (one node agent process under "+
		"an open-loop load of token requests, see --nmi-*; make bench-nmi) is available but not run by default.")
	flag.IntVar(&o.NoiseObjects, "noise-objects", 50000, "Unrelated Secrets and ConfigMaps for the noise scenario.")
	flag.DurationVar(&o.AccessTokenLifetime, "access-token-lifetime", 5*time.Minute, "Registry access token lifetime (steady's refresh cycle is half of it).")
	flag.IntVar(&o.SteadyCycles, "steady-cycles", 3, "Refresh cycles steady observes.")
	flag.Float64Var(&o.BusyRate, "busy-rate", 20, "busy: new bindings per second, created while the others are present and refreshing.")
	flag.DurationVar(&o.BusyDuration, "busy-duration", time.Minute, "busy: how long new bindings keep arriving.")
	flag.DurationVar(&o.RestartWindow, "restart-window", time.Minute, "restart: how long after the new process starts its writes and Azure requests are counted.")
	flag.DurationVar(&o.OutageDuration, "outage-duration", 2*time.Minute, "outage: how long every Azure endpoint answers 503.")
	flag.Float64Var(&o.ThrottleRate, "throttle-rate", 5, "Requests per second per Azure endpoint above which the fake answers 429.")
	flag.IntVar(&o.ThrottleBindings, "throttle-bindings", 1000, "New bindings in the throttled scenario.")
	flag.IntVar(&o.ThrottleIdentities, "throttle-identities", 50, "New identities (cache misses) in the throttled scenario.")
	flag.IntVar(&o.PodIdentity.Pods, "podidentity-pods", 2000, "podidentity: labelled pods per mode.")
	flag.IntVar(&o.PodIdentity.ScaleSets, "podidentity-scale-sets", 3, "podidentity: scale sets.")
	flag.IntVar(&o.PodIdentity.NodesPerScaleSet, "podidentity-nodes-per-scale-set", 10, "podidentity: nodes in each scale set.")
	flag.IntVar(&o.PodIdentity.Identities, "podidentity-identities", 10, "podidentity: identities (AzureIdentity and binding each).")
	flag.IntVar(&o.PodIdentity.ServiceAccounts, "podidentity-service-accounts", 3, "podidentity: service accounts federated with the identities (federation mode).")
	flag.IntVar(&o.PodIdentity.Agents, "podidentity-agents", 0, "podidentity: nodes running an in-process node agent, spread over the scale sets; 0 is every node. "+
		"Pods of other nodes are checked by their record (standard) or not at all (federation).")
	flag.StringVar(&podIdentityModes, "podidentity-modes", "standard,federation", "podidentity: modes to measure, in order.")
	flag.DurationVar(&o.PodIdentity.ARMOperationDelay, "podidentity-arm-delay", 5*time.Second,
		"podidentity: how long the fake's scale-set updates stay in progress (real ones take 40-60 s).")
	flag.Float64Var(&o.PodIdentity.ARMWritesPerSecond, "podidentity-arm-writes", 1, "podidentity: Resource Manager writes per second per caller above which the fake answers 429 (0: no limit).")
	flag.IntVar(&o.PodIdentity.Workers, "podidentity-workers", 32, "podidentity: concurrent token requests.")
	flag.DurationVar(&o.PodIdentity.Timeout, "podidentity-timeout", 20*time.Minute, "podidentity: bound on each mode from its first pod creation.")
	flag.IntVar(&o.NMILoad.Pods, "nmi-pods", 100, "nmi: pods of the one node asking for tokens (at most 254).")
	flag.Float64Var(&o.NMILoad.Rate, "nmi-rate", 500, "nmi: token requests per second of all pods together, sent at a constant rate whatever the answers take (open loop).")
	flag.DurationVar(&o.NMILoad.Duration, "nmi-duration", 30*time.Second, "nmi: the measured window, after each pod's first token.")
	flag.IntVar(&o.NMILoad.Identities, "nmi-identities", 10, "nmi: identities the pods use (each with its own service account).")
	flag.StringVar(&nmiModes, "nmi-modes", "federation,standard", "nmi: modes to measure acrpull's agent in, in order (federation: per-pod workload identity federation; standard: classic, records and IMDS).")
	flag.StringVar(&nmiAgent, "nmi-agent", "", "nmi: the node agent's command line (space-separated); default bin/acrpull-nmi, built first.")
	flag.StringVar(&o.NMILoad.Upstream, "nmi-upstream", "", "nmi: aad-pod-identity's nmi binary (v1.8.x, see make bench-nmi), measured in standard mode after acrpull's agent on the same pods.")
	flag.BoolVar(&o.ChartPolicies, "chart-policies", true, "Install the chart's admission policies before the scenarios, as the chart does.")
	flag.BoolVar(&o.FinalizerOnCreate, "finalizer-on-create", false, "With --chart-policies: the chart value finalizerOnCreate (a MutatingAdmissionPolicy "+
		"that gives new bindings the controller's finalizer, saving one write per binding). Off, as in the chart, so the headline is the chart's defaults.")
	flag.StringVar(&o.ProfileDir, "profile", "", "Directory for pprof profiles: the bench's own controller's and kube-apiserver's CPU during the burst, the controller's heap after burst and noise; empty takes none.")
	flag.DurationVar(&o.ProfileBurst, "profile-burst", time.Minute, "Length of the CPU profile taken from the start of the burst.")
	flag.DurationVar(&o.ScrapeInterval, "scrape-interval", 30*time.Second, "Read the bench's own controller's /metrics this often while it runs, as the chart's "+
		"PodMonitor has Prometheus do (monitoring.interval), so the scrapes count in its peak RSS and the bench reads its live heap; 0 reads it only where a scenario needs to.")
	memoryLimit := flag.String("controller-memory-limit", "512Mi", "The container memory limit the bench's own acrpull runs as if under (the chart's default): "+
		"it gets GOMEMLIMIT at nine tenths of it, as acrpull sets itself from its cgroup in the chart's pod. 0: none.")
	flag.StringVar(&o.JSONPath, "out", "bench-results.json", "JSON file for every figure.")
	flag.Parse()
	// The bench's own clients log nothing (controller-runtime would otherwise print a stack once, then drop every
	// apiserver warning, such as the one about msi-acrpull's finalizer name); the controller logs to its own file.
	ctrllog.SetLogger(logr.Discard())
	o.Out = os.Stdout
	limit, err := resource.ParseQuantity(*memoryLimit)
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench: --controller-memory-limit:", err)
		os.Exit(2)
	}
	o.ControllerMemoryLimit = limit.Value()
	if controller != "" {
		o.Controller = strings.Fields(controller)
	}
	if controller != "" && controllerFlags != "" {
		fmt.Fprintln(os.Stderr, "bench: --controller-flags adds to the bench's own acrpull; with --controller, put the flags in its command line")
		os.Exit(2)
	}
	o.ControllerFlags = strings.Fields(controllerFlags)
	o.Upstream = strings.Fields(upstream)
	o.Scenarios = strings.Split(scenarios, ",")
	o.PodIdentity.Modes = strings.Split(podIdentityModes, ",")
	o.NMILoad.Modes = strings.Split(nmiModes, ",")
	o.NMILoad.Agent = strings.Fields(nmiAgent)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if _, err := bench.Run(ctx, o); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}
