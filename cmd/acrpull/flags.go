/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

package main

import (
	"flag"
	"fmt"
	"slices"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/rest"

	"github.com/acrpull/acrpull/internal/azauth"
	"github.com/acrpull/acrpull/internal/identityallowlist"
	"github.com/acrpull/acrpull/internal/manager"
)

// kubeClientSettings are the apiserver client's rate limits and compression. controller-runtime's default (20 QPS)
// would cap the controller at about 20 writes a second, far below what the apiserver takes.
type kubeClientSettings struct {
	qps   float32
	burst int
	// compression asks the apiserver to gzip its responses and watch streams. Off by default, as kube-controller-manager
	// and kube-scheduler have it: next to the apiserver, gzip costs its CPU (the resource a burst of bindings is short
	// of) and saves bandwidth nobody is short of. A controller far from its apiserver turns it on.
	compression bool
}

// apply sets the rate limits and compression on the apiserver client's configuration.
func (k kubeClientSettings) apply(cfg *rest.Config) {
	cfg.QPS, cfg.Burst = k.qps, k.burst
	cfg.DisableCompression = !k.compression
}

// suffixList collects --allowed-acr-server-suffixes, which may be repeated and may hold comma-separated values.
type suffixList []string

func (s *suffixList) String() string { return strings.Join(*s, ",") }

func (s *suffixList) Set(v string) error {
	for _, part := range strings.Split(v, ",") {
		part = strings.Trim(strings.ToLower(strings.TrimSpace(part)), ".")
		if part != "" && !slices.Contains(*s, part) {
			*s = append(*s, part)
		}
	}
	return nil
}

// flagGiven says whether the command line set the flag, whatever its value.
func flagGiven(fs *flag.FlagSet, name string) (given bool) {
	fs.Visit(func(f *flag.Flag) { given = given || f.Name == name })
	return given
}

// parseFlags reads msi-acrpull's flags and environment defaults (and its older flag spellings), plus acrpull's own.
func parseFlags(fs *flag.FlagSet, args []string, getenv func(string) string) (manager.Options, kubeClientSettings, error) {
	var (
		opts          manager.Options
		kube          kubeClientSettings
		suffixes      suffixList
		selector      string
		qps           float64
		legacyMetrics string
		legacyLeader  bool
		authorities   string
	)
	c := &opts.Controller
	fs.StringVar(&opts.MetricsAddr, "metrics-bind-address", ":8080", "Address the metrics endpoint binds to; 0 disables it.")
	fs.StringVar(&legacyMetrics, "metrics-addr", "", "Deprecated spelling of --metrics-bind-address (msi-acrpull v1beta1 manifests).")
	fs.BoolVar(&opts.MetricsSecure, "metrics-secure", false, "Serve metrics over HTTPS, only to callers the apiserver authenticates and authorizes for GET /metrics.")
	fs.StringVar(&opts.ProbeAddr, "health-probe-bind-address", ":8081", "Address the /healthz and /readyz probes bind to.")
	fs.StringVar(&opts.PprofAddr, "pprof-bind-address", "", "Address serving Go's /debug/pprof profiles; empty (the default) serves none.")
	fs.BoolVar(&opts.LeaderElection, "leader-elect", false, "Elect a leader, so only one replica acts at a time.")
	fs.BoolVar(&legacyLeader, "enable-leader-election", false, "Deprecated spelling of --leader-elect.")
	fs.StringVar(&opts.LeaderElectionNamespace, "leader-election-namespace", "", "Namespace of the leader-election Lease (needed outside a cluster).")
	fs.IntVar(&opts.Workers, "workers", 16, "Bindings reconciled concurrently, per API version.")
	fs.Float64Var(&qps, "kube-api-qps", 1000, "Requests per second to the apiserver.")
	fs.IntVar(&kube.burst, "kube-api-burst", 2000, "Burst of requests to the apiserver.")
	fs.BoolVar(&kube.compression, "kube-api-compression", false,
		"Ask the apiserver to gzip its responses; off, as kube-controller-manager does, to spare the apiserver's CPU.")
	fs.DurationVar(&opts.AzureCallTimeout, "azure-timeout", 30*time.Second, "Bound on each Azure request; a slower answer counts as a failure and is retried with backoff.")
	fs.StringVar(&c.ServiceAccountTokenAudience, "service-account-token-audience", "api://AzureCRTokenExchange",
		"The only audience of the service-account tokens presented to Entra ID; federated credentials must name it.")
	fs.StringVar(&c.ACRAudience, "acr-token-audience", azauth.ACRAudience,
		"Entra ID audience tried first for registry tokens; empty uses the cloud's ARM audience only.")
	fs.Float64Var(&c.TTLRotationFraction, "ttl-rotation-fraction", 0.5, "Share of a v1beta2 token's lifetime after which it is replaced (0 < f < 1).")
	fs.BoolVar(&c.VerifyPull, "verify-pull", true,
		"After each new credential, ask the registry once (GET /v2/<repository>/tags/list?n=1, with that credential) whether it can read the scope's repository, and report it as the Verified condition.")
	fs.StringVar(&selector, "label-selector", "", "Serve only bindings matching this label selector (sharding).")
	fs.Var(&suffixes, "allowed-acr-server-suffixes", "Registry host suffixes tokens may be sent to (comma-separated, repeatable); unset: the Azure clouds' (azurecr.io, azurecr.us, azurecr.cn).")
	fs.StringVar(&authorities, "allowed-authority-hosts", "", "Comma-separated Entra ID authorities AirgappedCloud bindings may name besides the Azure clouds': https URLs (a path, e.g. /adfs/, must then match exactly) or host[:port] names, meaning https://host[:port]/.")
	fs.StringVar(&c.V1beta1.ACRServer, "default-acr-server", getenv("ACR_SERVER"), "v1beta1 default registry (env ACR_SERVER).")
	fs.StringVar(&c.V1beta1.ClientID, "default-managed-identity-client-id", getenv("MANAGED_IDENTITY_CLIENT_ID"),
		"v1beta1 default identity client ID (env MANAGED_IDENTITY_CLIENT_ID).")
	fs.StringVar(&c.V1beta1.ResourceID, "default-managed-identity-resource-id", getenv("MANAGED_IDENTITY_RESOURCE_ID"),
		"v1beta1 default identity resource ID (env MANAGED_IDENTITY_RESOURCE_ID).")
	fs.StringVar(&c.V1beta1.ARMResource, "arm-resource", getenv("ARM_RESOURCE"),
		"v1beta1 ARM audience override (env ARM_RESOURCE); default https://management.azure.com/.")
	// Managed-identity allow-list: kept in a block of its own.
	var identityAllowList string
	fs.StringVar(&identityAllowList, "managed-identity-allow-list", "",
		"Directory of the mounted managed-identity allow-list ConfigMap (keys <rule>.namespaces, <rule>.clientIDs, "+
			"<rule>.resourceIDs); bindings may use only the identities it gives their namespace. Empty (the default) allows any.")

	if err := fs.Parse(args); err != nil {
		return opts, kube, err
	}
	if identityAllowList != "" {
		allowList, err := identityallowlist.Open(identityAllowList)
		if err != nil {
			return opts, kube, fmt.Errorf("--managed-identity-allow-list: %w", err)
		}
		c.ManagedIdentityAllowList = allowList
	}
	if legacyMetrics != "" {
		opts.MetricsAddr = legacyMetrics
	}
	opts.LeaderElection = opts.LeaderElection || legacyLeader
	if c.TTLRotationFraction <= 0 || c.TTLRotationFraction >= 1 {
		return opts, kube, fmt.Errorf("--ttl-rotation-fraction must be between 0 and 1, got %v", c.TTLRotationFraction)
	}
	if c.ServiceAccountTokenAudience == "" {
		return opts, kube, fmt.Errorf("--service-account-token-audience must not be empty")
	}
	if selector != "" {
		sel, err := labels.Parse(selector)
		if err != nil {
			return opts, kube, fmt.Errorf("--label-selector: %w", err)
		}
		c.LabelSelector = sel
	}
	// Unset means the Azure clouds' registries, not msi-acrpull's "no check": a binding's author chooses its server,
	// and the controller sends an identity's token there. Given but naming nothing is a mistake to report, not a
	// way to switch the check off.
	c.AllowedServerSuffixes = azauth.KnownRegistrySuffixes()
	if flagGiven(fs, "allowed-acr-server-suffixes") {
		if len(suffixes) == 0 {
			return opts, kube, fmt.Errorf("--allowed-acr-server-suffixes names no suffix; leave it out for the Azure clouds' registries (%s)",
				strings.Join(azauth.KnownRegistrySuffixes(), ", "))
		}
		c.AllowedServerSuffixes = suffixes
	}
	hosts, err := azauth.NewAuthorityHosts(azauth.SplitAuthorityHostList(authorities)...)
	if err != nil {
		return opts, kube, fmt.Errorf("--allowed-authority-hosts: %w", err)
	}
	c.AuthorityHosts = hosts
	kube.qps = float32(qps)
	return opts, kube, nil
}
