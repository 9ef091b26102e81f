/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

package main

import (
	"flag"
	"fmt"
	"strconv"
	"strings"
	"time"

	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client/config"

	"github.com/acrpull/acrpull/internal/mic"
	"github.com/acrpull/acrpull/internal/upstreamflag"
)

// renewDeadline is controller-runtime's leader-election renew deadline, which mic.NewManager leaves at its default; a
// lease must outlast it.
const renewDeadline = 10 * time.Second

type settings struct {
	opts mic.Options
	// cloudConfig is the azure.json path; empty reads the Azure configuration from the environment.
	cloudConfig string
	// namespace is the controller's own (MIC_POD_NAMESPACE): the type upgrade's ConfigMap lives there.
	namespace   string
	typeUpgrade bool
	clientQPS   float64
	userAgent   string
	// compression asks the apiserver to gzip its responses and watch streams (--kube-api-compression): off, as for
	// kube-controller-manager, because next to the apiserver gzip spends its CPU on every pod event of the cluster.
	compression  bool
	leaseName    string
	ignoredFlags []string

	// printVersion: --version was given; nothing else is checked.
	printVersion bool
	// logging holds -v and --log-format for the logger.
	logging *upstreamflag.Logging
}

// upstreamFlags are the flags of aad-pod-identity v1.8.x's mic (cmd/mic, version, and klog's), with what each does
// here. parseFlags defines those used here itself; the ignored ones are defined from this table. docs/pod-identity.md's
// "Upstream flags" table is checked against it.
var upstreamFlags = append([]upstreamflag.Flag{
	{Name: "kubeconfig", Disposition: upstreamflag.Same},
	{Name: "cloudconfig", Disposition: upstreamflag.Same, Why: "empty reads the Azure configuration from the environment; the file is re-read when it changes"},
	{Name: "forceNamespaced", Bool: true, Default: "false", Disposition: upstreamflag.Same, Why: "also env FORCENAMESPACED"},
	{Name: "version", Bool: true, Default: "false", Disposition: upstreamflag.Same, Why: "prints acrpull's version"},
	{Name: "leader-election-namespace", Default: "default", Disposition: upstreamflag.Same, Why: "default env MIC_POD_NAMESPACE here"},
	{Name: "leader-election-name", Default: "aad-pod-identity-mic", Disposition: upstreamflag.Same, Why: "names a Lease (upstream: an Endpoints object)"},
	{Name: "leader-election-duration", Default: "15s", Disposition: upstreamflag.Same, Why: "must exceed the 10s renew deadline"},
	{Name: "http-probe-port", Default: "8080", Disposition: upstreamflag.Same, Why: "`/healthz` answers `Active`"},
	{Name: "prometheus-port", Default: "8888", Disposition: upstreamflag.Same},
	{Name: "createDeleteBatch", Default: "20", Disposition: upstreamflag.Same, Why: "AzureAssignedIdentity writes in flight at once"},
	{Name: "clientQps", Default: "5", Disposition: upstreamflag.Same, Why: "burst twice that, at least 10 (upstream: equal)"},
	{Name: "immutable-user-msis", Disposition: upstreamflag.Same},
	{Name: "enable-type-upgrade", Bool: true, Default: "true", Disposition: upstreamflag.Same},
	{Name: "update-user-msi-max-retry", Default: "2", Disposition: upstreamflag.Same},
	{Name: "identity-assignment-reconcile-interval", Default: "3m0s", Disposition: upstreamflag.Same},
	{Name: "custom-user-agent", Disposition: upstreamflag.Same, Why: "appended to the User-Agent of apiserver, Entra ID and Resource Manager requests"},
	{Name: "log-format", Default: "text", Disposition: upstreamflag.Same, Why: "text is zap's console encoding; without the flag, JSON; --zap-encoder wins"},
	{Name: "leader-election-instance", Disposition: upstreamflag.Ignored, Why: "controller-runtime names the Lease holder by host and a random suffix"},
	{Name: "syncRetryDuration", Kind: upstreamflag.Duration, Default: "1h0m0s", Disposition: upstreamflag.Ignored, Why: "cycles are event-driven; the periodic check is --identity-assignment-reconcile-interval"},
	{Name: "update-user-msi-retry-interval", Kind: upstreamflag.Duration, Default: "1s", Disposition: upstreamflag.Ignored, Why: "a refused update is retried at once, without the refused identities"},
	{Name: "enableProfile", Bool: true, Default: "false", Disposition: upstreamflag.Ignored, Why: "no profiling endpoint is served"},
	{Name: "enableScaleFeatures", Bool: true, Default: "false", Disposition: upstreamflag.Ignored, Why: "deprecated and without effect in upstream's MIC too"},
	{Name: "config-map-name", Default: mic.TypeUpgradeConfigMap, Disposition: upstreamflag.Ignored, Why: "the type upgrade is recorded in ConfigMap " + mic.TypeUpgradeConfigMap + ", the one the chart's Role grants; with another name upstream recorded, the upgrade runs once more (it is idempotent)"},
	{Name: "type-upgrade-status-key", Default: mic.TypeUpgradeStatusKey, Disposition: upstreamflag.Ignored, Why: "the type upgrade is recorded under key " + mic.TypeUpgradeStatusKey + "; with another key upstream recorded, the upgrade runs once more (it is idempotent)"},
}, upstreamflag.Klog...)

// parseFlags reads upstream MIC's flags. getenv supplies MIC_POD_NAMESPACE and FORCENAMESPACED, as upstream read them.
func parseFlags(fs *flag.FlagSet, args []string, getenv func(string) string) (settings, error) {
	var (
		s                         settings
		immutable                 string
		probePort, prometheusPort int
		reconcileInterval, lease  time.Duration
		retries                   int
		leaderElection            bool
		leaderElectionNamespace   string
		defaultNamespace          = getenv("MIC_POD_NAMESPACE")
	)
	if defaultNamespace == "" {
		defaultNamespace = "default"
	}
	config.RegisterFlags(fs) // --kubeconfig, as upstream and every controller-runtime manager offer
	fs.StringVar(&s.cloudConfig, "cloudconfig", "", "Path of the Azure configuration (azure.json); empty reads it from the environment (CLOUD, TENANT_ID, CLIENT_ID, CLIENT_SECRET, USE_MSI, USER_ASSIGNED_MSI_CLIENT_ID, ...). The file is re-read when it changes.")
	fs.BoolVar(&leaderElection, "leader-elect", true, "Elect one active replica with a Lease (acrpull's switch; upstream always elected).")
	fs.StringVar(&leaderElectionNamespace, "leader-election-namespace", defaultNamespace, "Namespace of the leader-election Lease (default env MIC_POD_NAMESPACE, else default).")
	fs.StringVar(&s.leaseName, "leader-election-name", mic.LeaderElectionID, "Name of the leader-election Lease.")
	fs.DurationVar(&lease, "leader-election-duration", 15*time.Second, "Lease duration; a new leader takes over at most this long after the old one stops renewing.")
	fs.DurationVar(&reconcileInterval, "identity-assignment-reconcile-interval", 3*time.Minute, "How often every assigned identity is checked on its VM or scale set and re-added if it was removed.")
	fs.Func("assign-pods-created-before", "RFC 3339 time: pods created from then on are not assigned and get their tokens by the node agent's federation (token source auto), so a cluster migrates pod by pod. Empty assigns every pod.", func(v string) error {
		t, err := time.Parse(time.RFC3339, v)
		if err != nil {
			return fmt.Errorf("want an RFC 3339 time such as 2026-12-01T00:00:00Z: %w", err)
		}
		s.opts.Config.AssignPodsCreatedBefore = t
		return nil
	})
	fs.StringVar(&immutable, "immutable-user-msis", "", "Comma-separated client IDs of identities never removed from VMs and scale sets.")
	fs.BoolVar(&s.opts.Config.ForceNamespaced, "forceNamespaced", strings.EqualFold(getenv("FORCENAMESPACED"), "true"), "Identities are used only by pods in their own namespace (env FORCENAMESPACED).")
	fs.IntVar(&retries, "update-user-msi-max-retry", 2, "How often an update is retried without the identities Resource Manager refused to assign (LinkedAuthorizationFailed).")
	fs.Float64Var(&s.clientQPS, "clientQps", 5, "Requests per second to the apiserver.")
	fs.BoolVar(&s.compression, "kube-api-compression", false, "Ask the apiserver to gzip its responses; off, as kube-controller-manager does, to spare the apiserver's CPU.")
	fs.IntVar(&probePort, "http-probe-port", 8080, "Port of /healthz and /readyz (0 disables).")
	fs.IntVar(&prometheusPort, "prometheus-port", 8888, "Port of /metrics (0 disables).")
	fs.BoolVar(&s.typeUpgrade, "enable-type-upgrade", true, "At start, rewrite aadpodidentity.k8s.io objects stored with pre-v1.6 field names, once (ConfigMap "+mic.TypeUpgradeConfigMap+").")
	fs.StringVar(&s.userAgent, "custom-user-agent", "", "Suffix of the User-Agent of apiserver and Azure requests.")
	fs.IntVar(&s.opts.Config.RecordWriters, "createDeleteBatch", 20, "AzureAssignedIdentity writes in flight at once.")
	fs.BoolVar(&s.printVersion, "version", false, "Print the version and exit.")
	s.logging = upstreamflag.RegisterLogging(fs)
	// Upstream flags with no meaning here.
	upstreamflag.Register(fs, upstreamFlags)
	if err := fs.Parse(args); err != nil {
		return s, err
	}
	if s.printVersion {
		return s, nil
	}
	if fs.NArg() > 0 {
		return s, fmt.Errorf("unexpected arguments %q: every setting is a --flag", fs.Args())
	}
	s.ignoredFlags = upstreamflag.IgnoredGiven(fs, upstreamFlags)

	if lease <= renewDeadline {
		return s, fmt.Errorf("--leader-election-duration=%s: the lease must be longer than the %s renew deadline", lease, renewDeadline)
	}
	if reconcileInterval < time.Second {
		return s, fmt.Errorf("--identity-assignment-reconcile-interval=%s: use at least 1s", reconcileInterval)
	}
	if retries < 0 {
		return s, fmt.Errorf("--update-user-msi-max-retry=%d: must not be negative", retries)
	}
	if s.clientQPS <= 0 {
		return s, fmt.Errorf("--clientQps=%v: must be positive", s.clientQPS)
	}
	for _, p := range []struct {
		name string
		port int
	}{{"--http-probe-port", probePort}, {"--prometheus-port", prometheusPort}} {
		if p.port < 0 || p.port > 65535 {
			return s, fmt.Errorf("%s=%d is not a port", p.name, p.port)
		}
	}
	for _, id := range strings.Split(immutable, ",") {
		if id = strings.TrimSpace(id); id != "" {
			s.opts.Config.Policy.ImmutableClientIDs = append(s.opts.Config.Policy.ImmutableClientIDs, id)
		}
	}
	s.namespace = defaultNamespace
	s.opts.LeaderElection = leaderElection
	s.opts.LeaderElectionNamespace = leaderElectionNamespace
	s.opts.LeaderElectionID = s.leaseName
	s.opts.LeaseDuration = lease
	s.opts.Config.ReconcileInterval = reconcileInterval
	s.opts.Config.UpdateRetries = retries
	s.opts.ProbeAddr = portAddr(probePort)
	s.opts.MetricsAddr = portAddr(prometheusPort)
	return s, nil
}

func portAddr(port int) string {
	if port == 0 {
		return "0"
	}
	return ":" + strconv.Itoa(port)
}

// configureClient sets the apiserver client's rate, User-Agent and compression from the settings.
func (s settings) configureClient(cfg *rest.Config) {
	cfg.QPS = float32(s.clientQPS)
	cfg.Burst = max(10, int(2*s.clientQPS))
	cfg.UserAgent = rest.DefaultKubernetesUserAgent()
	if s.userAgent != "" {
		cfg.UserAgent += " " + s.userAgent
	}
	cfg.DisableCompression = !s.compression
}
