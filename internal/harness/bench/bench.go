/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

// Package bench measures a controller at scale on a real apiserver and the fake Azure cloud: a burst of bindings,
// steady refresh cycles, memory with many unrelated objects, and throttled Azure endpoints. The controller is any
// command line configured through KUBECONFIG and the standard proxy and CA environment, so acrpull and msi-acrpull
// can be measured side by side. Figures are printed and written as JSON; nothing here is a pass/fail test.
package bench

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"k8s.io/client-go/discovery"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/acrpull/acrpull/internal/harness/azurefake"
	"github.com/acrpull/acrpull/internal/harness/testenv"
)

// Options size and select the scenarios.
type Options struct {
	// Controller is the command line to run; empty runs ./bin/acrpull (built if missing).
	Controller []string
	// ControllerFlags are added to the bench's own acrpull command line, to measure a flag's effect with everything
	// else the bench reads from its own controller (metrics, profiles, memory limit).
	ControllerFlags []string
	// Upstream, when set, is a second controller's command line (msi-acrpull) measured in the same run, on the same
	// apiserver and fake cloud, before Controller; the figures are printed side by side (see compare.go).
	Upstream   []string
	Bindings   int
	Namespaces int
	Identities int
	// Workers is the bench client's concurrency, for creating objects and for the write floor.
	Workers int
	// FloorBindings, when set and below Bindings, measures the write floor on that many bindings and scales its
	// time up in proportion: at 100,000 bindings the floor alone would take most of an hour on two cores. The
	// apiserver's writes get no cheaper as etcd grows, so a scaled floor is if anything shorter than a measured one,
	// and the burst's ratio to it no better.
	FloorBindings int
	// Scenarios to run, in order: burst, steady, noise, throttled, podidentity, nmi.
	Scenarios []string
	// NoiseObjects is how many unrelated Secrets and ConfigMaps the noise scenario creates.
	NoiseObjects int
	// AccessTokenLifetime is the registry access tokens' life; short, so steady sees refresh cycles.
	AccessTokenLifetime time.Duration
	// SteadyCycles is how many refresh cycles steady observes.
	SteadyCycles int
	// ThrottleRate is the request rate per endpoint above which the fake answers 429.
	ThrottleRate float64
	// BusyRate and BusyDuration pace the busy scenario's new bindings; RestartWindow is how long restart counts.
	BusyRate      float64
	BusyDuration  time.Duration
	RestartWindow time.Duration
	// OutageDuration is how long the outage scenario keeps the whole cloud down.
	OutageDuration time.Duration
	// ThrottleBindings and ThrottleIdentities size the throttled scenario's new bindings.
	ThrottleBindings   int
	ThrottleIdentities int
	// PodIdentity sizes the podidentity scenario (AAD Pod Identity's assignment controller and node agents).
	PodIdentity PodIdentityOptions
	// NMILoad sizes the nmi scenario (one node agent process under an open-loop load of token requests).
	NMILoad NMILoadOptions
	// ChartPolicies installs the chart's admission policies, as a cluster running acrpull from its chart has them;
	// FinalizerOnCreate is the chart value that adds the mutating policy giving new bindings the controller's
	// finalizer (where the apiserver serves MutatingAdmissionPolicy).
	ChartPolicies     bool
	FinalizerOnCreate bool
	// ProfileDir, when set, receives pprof profiles of the bench's own controller: CPU during the burst and the
	// heap after the burst and after the noise.
	ProfileDir   string
	ProfileBurst time.Duration
	// ScrapeInterval, when set, has the bench read its own controller's /metrics that often while it runs, as
	// Prometheus does (the chart renders a PodMonitor): a scrape's allocations then count in the peak RSS.
	ScrapeInterval time.Duration
	// ControllerMemoryLimit is the container memory limit the bench's own acrpull runs as if under (the chart's
	// default, 512Mi): in the chart's pod acrpull gives the Go runtime nine tenths of its cgroup limit as a soft limit;
	// the bench runs it outside a cgroup, so it sets that GOMEMLIMIT itself. 0 sets none.
	ControllerMemoryLimit int64
	// JSONPath receives every figure.
	JSONPath string
	Out      io.Writer
}

// Results are every figure a run produced.
type Results struct {
	Machine   Machine          `json:"machine"`
	Options   map[string]any   `json:"options"`
	Floor     *FloorResult     `json:"floor,omitempty"`
	Burst     *BurstResult     `json:"burst,omitempty"`
	Steady    *SteadyResult    `json:"steady,omitempty"`
	Noise     *NoiseResult     `json:"noise,omitempty"`
	Throttled *ThrottledResult `json:"throttled,omitempty"`
	Busy      *BusyResult      `json:"busy,omitempty"`
	Restart   *RestartResult   `json:"restart,omitempty"`
	Outage    *OutageResult    `json:"outage,omitempty"`
	// PodIdentity is the podidentity scenario's, which runs in-process and needs no controller command.
	PodIdentity *PodIdentityResult `json:"podIdentity,omitempty"`
	// NMILoad is the nmi scenario's, which runs node agent processes and needs no controller command.
	NMILoad *NMILoadResult `json:"nmiLoad,omitempty"`
	// ControllerPeakRSSMiB is the controller's peak resident set (VmHWM) at the end of its scenarios.
	ControllerPeakRSSMiB float64 `json:"controllerPeakRSSMiB,omitempty"`
	// ControllerScrapes is how many times the bench read the controller's metrics as Prometheus would
	// (Options.ScrapeInterval) in that process's life.
	ControllerScrapes int64 `json:"controllerScrapes,omitempty"`
	// ControllerRuntime is what those scrapes read of the Go runtime: under GOMEMLIMIT the peak RSS shows the limit
	// more than the need, the live heap and the collector's CPU show the headroom.
	ControllerRuntime *RuntimeReading `json:"controllerRuntime,omitempty"`
	// Upstream is the second controller's figures, with --upstream.
	Upstream *UpstreamResults `json:"upstream,omitempty"`
}

// Machine describes where the figures were taken.
type Machine struct {
	Cores       int    `json:"cores"`
	MemoryBytes uint64 `json:"memoryBytes"`
	GoVersion   string `json:"goVersion"`
	Kubernetes  string `json:"kubernetes"`
	Controller  string `json:"controller"`
}

const (
	registryHost = "bench.azurecr.io"
	tenantID     = "72f988bf-86f1-41af-91ab-2d7cd011db47"
	scope        = "repository:app:pull"
)

// Run runs the selected scenarios.
func Run(ctx context.Context, o Options) (*Results, error) {
	b := &bench{o: o, out: o.Out}
	defer b.cleanup()
	res := &Results{Options: map[string]any{
		"bindings": o.Bindings, "floorBindings": o.FloorBindings, "namespaces": o.Namespaces, "identities": o.Identities, "workers": o.Workers,
		"noiseObjects": o.NoiseObjects, "accessTokenLifetime": o.AccessTokenLifetime.String(), "steadyCycles": o.SteadyCycles,
		"throttleRate": o.ThrottleRate, "throttleBindings": o.ThrottleBindings, "scenarios": o.Scenarios,
		"busyRate": o.BusyRate, "busyDuration": o.BusyDuration.String(), "restartWindow": o.RestartWindow.String(),
		"outageDuration": o.OutageDuration.String(),
		"chartPolicies":  o.ChartPolicies, "finalizerOnCreate": o.FinalizerOnCreate, "controllerMemoryLimit": o.ControllerMemoryLimit, "upstream": strings.Join(o.Upstream, " "),
	}}
	if slices.Contains(o.Scenarios, "podidentity") {
		p := o.PodIdentity
		p.defaults()
		res.Options["podIdentity"] = map[string]any{"pods": p.Pods, "scaleSets": p.ScaleSets, "nodesPerScaleSet": p.NodesPerScaleSet,
			"identities": p.Identities, "serviceAccounts": p.ServiceAccounts, "agents": p.Agents, "modes": p.Modes,
			"armOperationDelay": p.ARMOperationDelay.String(), "armWritesPerSecond": p.ARMWritesPerSecond, "workers": p.Workers,
			"timeout": p.Timeout.String()}
	}
	if slices.Contains(o.Scenarios, "nmi") {
		n := o.NMILoad
		n.defaults()
		res.Options["nmi"] = map[string]any{"pods": n.Pods, "rate": n.Rate, "duration": n.Duration.String(),
			"identities": n.Identities, "modes": n.Modes, "agent": strings.Join(n.Agent, " "), "upstream": n.Upstream}
	}
	b.logf("starting control plane and fake Azure")
	if err := b.setup(ctx); err != nil {
		return nil, err
	}
	var err error
	if b.metricsAddr, err = freeLoopbackAddr(); err != nil {
		return nil, err
	}
	if b.pprofAddr, err = freeLoopbackAddr(); err != nil {
		return nil, err
	}
	res.Machine = machine(b)
	// The pod identity scenarios run their own controller and agents: alone, they need neither the write floor
	// nor the AcrPullBinding controller.
	if b.needsController() {
		// The floor's writes meet what the controller's will: the chart's validating policies, and the bench's own
		// watches, whose events the apiserver encodes for every write.
		if o.ChartPolicies {
			if err := b.installChartPolicies(ctx, validatingPoliciesTemplate); err != nil {
				return nil, err
			}
		}
		if b.ready, err = b.startReadiness(ctx); err != nil {
			return nil, err
		}
		b.logf("measuring the write floor: %d bindings' worth of secret creates, SA patches, status patches, %d workers", min(o.Bindings, cmp.Or(o.FloorBindings, o.Bindings)), o.Workers)
		if res.Floor, err = b.writeFloor(ctx); err != nil {
			return nil, fmt.Errorf("write floor: %w", err)
		}
		// After the floor, whose bindings the finalizer policy would leave waiting for a controller to delete them.
		if o.ChartPolicies && o.FinalizerOnCreate {
			if err := b.installChartPolicies(ctx, finalizerPolicyTemplate); err != nil {
				return nil, err
			}
		}
		if len(o.Upstream) > 0 {
			if res.Upstream, err = b.measureUpstream(ctx, res.Floor); err != nil {
				return res, fmt.Errorf("upstream: %w", err)
			}
		}
		b.logf("starting controller: %s", strings.Join(b.controllerArgs(), " "))
		if err := b.startController(b.controllerArgs()); err != nil {
			return nil, err
		}
		res.Machine.Controller = strings.Join(b.controllerArgs(), " ")
	} else {
		res.Machine.Controller = "none: in-process assignment controller and node agents (podidentity), node agent processes (nmi)"
	}
	if err := b.runScenarios(ctx, res); err != nil {
		// The scenarios that finished are worth printing.
		printTable(b.out, res)
		return res, err
	}
	if b.controller != nil {
		res.ControllerPeakRSSMiB = mib(b.procStatus("VmHWM"))
		res.ControllerScrapes, res.ControllerRuntime = b.scrapes.reading()
	}
	printTable(b.out, res)
	if res.Upstream != nil {
		printComparison(b.out, res)
	}
	if o.JSONPath != "" {
		data, _ := json.MarshalIndent(res, "", "  ")
		if err := os.WriteFile(o.JSONPath, data, 0o644); err != nil {
			return res, err
		}
		fmt.Fprintf(b.out, "\nfigures written to %s\n", o.JSONPath)
	}
	return res, nil
}

// runScenarios runs the selected scenarios in order against the running controller, into res.
func (b *bench) runScenarios(ctx context.Context, res *Results) error {
	var err error
	for _, s := range b.o.Scenarios {
		b.logf("scenario %s", s)
		switch s {
		case "burst":
			res.Burst, err = b.burst(ctx, res.Floor)
		case "steady":
			res.Steady, err = b.steady(ctx)
		case "noise":
			res.Noise, err = b.noise(ctx)
		case "throttled":
			res.Throttled, err = b.throttled(ctx)
		case "busy":
			res.Busy, err = b.busy(ctx)
		case "restart":
			res.Restart, err = b.restart(ctx)
		case "outage":
			res.Outage, err = b.outage(ctx)
		case "podidentity":
			res.PodIdentity, err = b.podIdentity(ctx)
		case "nmi":
			res.NMILoad, err = b.nmiLoad(ctx)
		default:
			err = fmt.Errorf("unknown scenario %q", s)
		}
		if err != nil {
			return fmt.Errorf("%s: %w", s, err)
		}
	}
	return nil
}

type bench struct {
	o     Options
	out   io.Writer
	env   *testenv.Env
	cloud *azurefake.Cloud
	c     client.Client
	// apiserver reads the apiserver's own paths (/metrics), once a second while writes are sampled.
	apiserver rest.Interface
	dir       string

	controller *exec.Cmd
	exited     chan struct{}
	// metricsAddr and pprofAddr are loopback ports free when the run started, where the bench's own controller
	// serves metrics and profiles: fixed ones would clash with another bench on the same machine.
	metricsAddr, pprofAddr string
	metricsURL             string
	profiles               *profiler
	// scrapes counts the current controller's scrapes (ScrapeInterval) and holds what they read.
	scrapes runtimeReadings
	// built is set once the bench's own acrpull is built, so a restart does not wait for the compiler.
	built bool
	// ready watches bindings, their secrets and service accounts, for any controller's readiness.
	ready *readiness
}

func (b *bench) logf(format string, args ...any) {
	fmt.Fprintf(b.out, "[%s] %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
}

func (b *bench) setup(ctx context.Context) error {
	var err error
	if b.dir, err = os.MkdirTemp("", "acrpull-bench-"); err != nil {
		return err
	}
	if b.env, err = testenv.Start(); err != nil {
		return err
	}
	b.c = b.env.Client
	cs, err := kubernetes.NewForConfig(b.env.Config)
	if err != nil {
		return err
	}
	b.apiserver = cs.RESTClient()
	if b.cloud, err = azurefake.New(azurefake.Options{}); err != nil {
		return err
	}
	if err := b.cloud.Start(); err != nil {
		return err
	}
	b.cloud.TrustIssuer(testenv.Issuer, b.env.SigningKey)
	b.cloud.AddRegistry(azurefake.Registry{Host: registryHost})
	if !b.needsController() {
		return nil
	}
	b.cloud.SetLifetimes(azurefake.Lifetimes{ACRAccess: b.o.AccessTokenLifetime})
	for i := range b.o.Identities + b.o.ThrottleIdentities {
		id := identity(i)
		b.cloud.AddIdentity(azurefake.Identity{ClientID: id, TenantID: tenantID, AssignedToVM: true})
		b.cloud.AddRoleAssignment(id, registryHost, []string{"*"}, []string{"pull"})
	}
	return b.createNamespaces(ctx)
}

// needsController says whether a selected scenario measures the AcrPullBinding controller.
func (b *bench) needsController() bool {
	return slices.ContainsFunc(b.o.Scenarios, func(s string) bool { return s != "podidentity" && s != "nmi" })
}

func (b *bench) cleanup() {
	if b.ready != nil {
		b.ready.stop()
	}
	b.stopController()
	if b.cloud != nil {
		b.cloud.Close()
	}
	if b.env != nil {
		_ = b.env.Stop()
	}
	if b.dir != "" {
		_ = os.RemoveAll(b.dir)
	}
}

// identity is the client ID of the i-th bench identity.
func identity(i int) string { return fmt.Sprintf("00000000-0000-4000-8000-%012d", i) }

func namespace(i int) string { return fmt.Sprintf("bench-%04d", i) }

func (b *bench) controllerArgs() []string {
	if len(b.o.Controller) > 0 {
		return b.o.Controller
	}
	args := []string{filepath.Join(testenv.ModuleRoot(), "bin", "acrpull"), "--metrics-bind-address=" + b.metricsAddr,
		"--health-probe-bind-address=127.0.0.1:0", "--allowed-acr-server-suffixes=azurecr.io"}
	if b.o.ProfileDir != "" {
		args = append(args, "--pprof-bind-address="+b.pprofAddr)
	}
	return append(args, b.o.ControllerFlags...)
}

// stopController interrupts the running controller, if any, and waits for it to exit (killing it after 10 s).
func (b *bench) stopController() {
	if b.controller == nil || b.controller.Process == nil {
		return
	}
	interruptThenKill(b.controller.Process, b.exited)
	b.controller = nil
}

// interruptThenKill interrupts a process the bench started and waits until exited closes, killing it after 10 s.
func interruptThenKill(p *os.Process, exited <-chan struct{}) {
	_ = p.Signal(os.Interrupt)
	select {
	case <-exited:
	case <-time.After(10 * time.Second):
		_ = p.Kill()
		<-exited
	}
}

// startController runs args as the controller. The bench's own acrpull (no --controller) is built first, and its
// metrics and profiles are read; another controller is measured from outside only.
func (b *bench) startController(args []string) error {
	b.metricsURL, b.profiles = "", nil
	var env []string
	if len(b.o.Controller) == 0 && slices.Equal(args, b.controllerArgs()) {
		if b.o.ControllerMemoryLimit > 0 {
			env = append(env, fmt.Sprintf("GOMEMLIMIT=%d", int64(float64(b.o.ControllerMemoryLimit)*0.9)))
		}
		if !b.built {
			build := exec.Command("go", "build", "-o", args[0], "./cmd/acrpull")
			build.Dir = testenv.ModuleRoot()
			if out, err := build.CombinedOutput(); err != nil {
				return fmt.Errorf("building acrpull: %v: %s", err, out)
			}
			b.built = true
		}
		b.metricsURL = "http://" + b.metricsAddr + "/metrics"
		if b.o.ProfileDir != "" {
			if err := os.MkdirAll(b.o.ProfileDir, 0o755); err != nil {
				return err
			}
			apiserverClient, err := rest.HTTPClientFor(b.env.Config)
			if err != nil {
				return err
			}
			b.profiles = &profiler{dir: b.o.ProfileDir, logf: b.logf,
				controller: pprofTarget{base: "http://" + b.pprofAddr + "/debug/pprof", client: http.DefaultClient},
				apiserver:  pprofTarget{base: strings.TrimSuffix(b.env.Config.Host, "/") + "/debug/pprof", client: apiserverClient},
			}
		}
	}
	caFile := filepath.Join(b.dir, "ca.pem")
	if err := os.WriteFile(caFile, b.cloud.CACertPEM(), 0o644); err != nil {
		return err
	}
	logFile, err := os.Create(filepath.Join(b.dir, filepath.Base(args[0])+".log"))
	if err != nil {
		return err
	}
	cmd := exec.Command(args[0], args[1:]...)
	proxy := b.cloud.ProxyURL().String()
	cmd.Env = append(os.Environ(), "KUBECONFIG="+b.env.KubeconfigPath, "HTTPS_PROXY="+proxy, "HTTP_PROXY="+proxy,
		"NO_PROXY=127.0.0.1,localhost", "SSL_CERT_FILE="+caFile)
	cmd.Env = append(cmd.Env, env...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		return err
	}
	b.controller, b.exited = cmd, make(chan struct{})
	go func() { _ = cmd.Wait(); _ = logFile.Close(); close(b.exited) }()
	b.scrapes.reset()
	if b.metricsURL != "" && b.o.ScrapeInterval > 0 {
		go b.scrapeEvery(b.metricsURL, b.o.ScrapeInterval, b.exited)
	}
	time.Sleep(2 * time.Second)
	select {
	case <-b.exited:
		return fmt.Errorf("controller exited at start; log in %s", logFile.Name())
	default:
	}
	return nil
}

// scrapeEvery reads url every interval, as Prometheus scrapes the controller, until exited closes. Like Prometheus it
// gives up on a scrape that outlasts the interval, so a stuck controller does not hold the loop.
func (b *bench) scrapeEvery(url string, interval time.Duration, exited <-chan struct{}) {
	scraper := &http.Client{Timeout: interval}
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case <-exited:
			return
		case <-tick.C:
		}
		if families, err := controllerMetrics(context.Background(), scraper, url); err == nil {
			b.scrapes.record(families)
		}
	}
}

// rss reads the controller's resident set size from /proc.
func (b *bench) rss() uint64 { return b.procStatus("VmRSS") }

// procStatus reads a size in kB from the controller's /proc/<pid>/status (VmRSS, VmHWM), in bytes.
func (b *bench) procStatus(field string) uint64 {
	if b.controller == nil || b.controller.Process == nil {
		return 0
	}
	return procStatusOf(b.controller.Process.Pid, field)
}

// procStatusOf reads a size in kB from /proc/<pid>/status (VmRSS, VmHWM), in bytes; 0 if it cannot be read.
func procStatusOf(pid int, field string) uint64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(line, field+":") {
			kb, _ := strconv.ParseUint(strings.Fields(line)[1], 10, 64)
			return kb * 1024
		}
	}
	return 0
}

func machine(b *bench) Machine {
	m := Machine{Cores: runtime.NumCPU(), GoVersion: runtime.Version()}
	if data, err := os.ReadFile("/proc/meminfo"); err == nil {
		for _, line := range strings.Split(string(data), "\n") {
			if strings.HasPrefix(line, "MemTotal:") {
				kb, _ := strconv.ParseUint(strings.Fields(line)[1], 10, 64)
				m.MemoryBytes = kb * 1024
			}
		}
	}
	if dc, err := discovery.NewDiscoveryClientForConfig(b.env.Config); err == nil {
		if v, err := dc.ServerVersion(); err == nil {
			m.Kubernetes = v.GitVersion
		}
	}
	return m
}

// freeLoopbackAddr is a loopback address whose port was free a moment ago.
func freeLoopbackAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}
