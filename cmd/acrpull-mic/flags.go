/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

package main

import (
	"flag"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"sigs.k8s.io/controller-runtime/pkg/client/config"

	"github.com/acrpull/acrpull/internal/mic"
)

// renewDeadline is controller-runtime's leader-election renew deadline, which mic.NewManager leaves at its default; a
// lease must outlast it.
const renewDeadline = 10 * time.Second

type settings struct {
	opts mic.Options
	// cloudConfig is the azure.json path; empty reads the Azure configuration from the environment.
	cloudConfig string
	// namespace is the controller's own (MIC_POD_NAMESPACE): the type upgrade's ConfigMap lives there.
	namespace    string
	typeUpgrade  bool
	clientQPS    float64
	userAgent    string
	leaseName    string
	ignoredFlags []string
}

// Upstream MIC flags acrpull accepts but does not use, so that an existing Deployment's arguments start it
// unchanged; why each has no effect is in docs/pod-identity.md.
var (
	ignoredStringFlags   = []string{"leader-election-instance", "log-format"}
	ignoredDurationFlags = []string{"syncRetryDuration", "update-user-msi-retry-interval"}
	ignoredIntFlags      = []string{"v"}
	ignoredBoolFlags     = []string{"enableProfile", "logtostderr"}
)

// parseFlags reads upstream MIC's flags. getenv supplies MIC_POD_NAMESPACE and FORCENAMESPACED, as upstream read them.
func parseFlags(fs *flag.FlagSet, args []string, getenv func(string) string) (settings, error) {
	var (
		s                         settings
		immutable                 string
		probePort, prometheusPort int
		reconcileInterval, lease  time.Duration
		retries                   int
		leaderElection            bool
		ignoredString             string
		ignoredDuration           time.Duration
		ignoredInt                int
		ignoredBool               bool
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
	fs.IntVar(&probePort, "http-probe-port", 8080, "Port of /healthz and /readyz (0 disables).")
	fs.IntVar(&prometheusPort, "prometheus-port", 8888, "Port of /metrics (0 disables).")
	fs.BoolVar(&s.typeUpgrade, "enable-type-upgrade", true, "At start, rewrite aadpodidentity.k8s.io objects stored with pre-v1.6 field names, once (ConfigMap "+mic.TypeUpgradeConfigMap+").")
	fs.StringVar(&s.userAgent, "custom-user-agent", "", "Suffix of the User-Agent of apiserver and Azure requests.")
	for _, name := range ignoredStringFlags {
		fs.StringVar(&ignoredString, name, "", "Accepted for compatibility; ignored.")
	}
	// Upstream's defaults, shown in --help so the flags read as upstream's.
	fs.DurationVar(&ignoredDuration, "syncRetryDuration", time.Hour, "Accepted for compatibility; ignored (cycles are event-driven).")
	fs.DurationVar(&ignoredDuration, "update-user-msi-retry-interval", time.Second, "Accepted for compatibility; ignored (a refused update is retried at once without the refused identities).")
	fs.IntVar(&s.opts.Config.RecordWriters, "createDeleteBatch", 20, "AzureAssignedIdentity writes in flight at once.")
	fs.IntVar(&ignoredInt, "v", 0, "Accepted for compatibility; ignored (use --zap-log-level).")
	for _, name := range ignoredBoolFlags {
		fs.BoolVar(&ignoredBool, name, false, "Accepted for compatibility; ignored.")
	}
	if err := fs.Parse(args); err != nil {
		return s, err
	}
	if fs.NArg() > 0 {
		return s, fmt.Errorf("unexpected arguments %q: every setting is a --flag", fs.Args())
	}
	fs.Visit(func(f *flag.Flag) {
		if isIgnored(f.Name) {
			s.ignoredFlags = append(s.ignoredFlags, f.Name)
		}
	})

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

func isIgnored(name string) bool {
	for _, list := range [][]string{ignoredStringFlags, ignoredDurationFlags, ignoredIntFlags, ignoredBoolFlags} {
		if slices.Contains(list, name) {
			return true
		}
	}
	return false
}

func portAddr(port int) string {
	if port == 0 {
		return "0"
	}
	return ":" + strconv.Itoa(port)
}
