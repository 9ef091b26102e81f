/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

package main

import (
	"flag"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/acrpull/acrpull/internal/azauth"
	"github.com/acrpull/acrpull/internal/imdsredirect"
	"github.com/acrpull/acrpull/internal/nmi"
	"github.com/acrpull/acrpull/internal/upstreamflag"
)

// upstreamFlags are the flags of aad-pod-identity v1.8.x's nmi (cmd/nmi, version, and klog's), with what each does
// here. parseFlags defines those used here itself; the ignored ones are defined from this table. docs/pod-identity.md's
// "Upstream flags" table is checked against it.
var upstreamFlags = append([]upstreamflag.Flag{
	{Name: "node", Disposition: upstreamflag.Same, Why: "also env NODE_NAME"},
	{Name: "nmi-listen-address", Default: "127.0.0.1", Disposition: upstreamflag.Same},
	{Name: "nmi-port", Default: "2579", Disposition: upstreamflag.Same},
	{Name: "metadata-ip", Default: "169.254.169.254", Disposition: upstreamflag.Same},
	{Name: "metadata-port", Default: "80", Disposition: upstreamflag.Same},
	{Name: "ipt-update-interval-sec", Default: "60", Disposition: upstreamflag.Same},
	{Name: "forceNamespaced", Bool: true, Default: "false", Disposition: upstreamflag.Same, Why: "also env FORCENAMESPACED"},
	{Name: "http-probe-port", Default: "8080", Disposition: upstreamflag.Same, Why: "default 8085 here (upstream's chart sets 8085); `/healthz` answers `Active`"},
	{Name: "prometheus-port", Default: "9090", Disposition: upstreamflag.Same},
	{Name: "retry-attempts-for-created", Default: "16", Disposition: upstreamflag.Same},
	{Name: "retry-attempts-for-assigned", Default: "4", Disposition: upstreamflag.Same},
	{Name: "find-identity-retry-interval", Default: "5", Disposition: upstreamflag.Same, Why: "the agent answers as soon as the record is Assigned, not on this grid"},
	{Name: "block-instance-metadata", Bool: true, Default: "false", Disposition: upstreamflag.Same},
	{Name: "metadata-header-required", Bool: true, Default: "true", Disposition: upstreamflag.Same},
	{Name: "operation-mode", Default: "standard", Disposition: upstreamflag.Same},
	{Name: "allow-network-plugin-kubenet", Bool: true, Default: "false", Disposition: upstreamflag.Same, Why: "the check also reads the CNI configuration (--cni-config-dir)"},
	{Name: "kubelet-config", Default: "/etc/default/kubelet", Disposition: upstreamflag.Same},
	{Name: "set-retry-after-header", Bool: true, Default: "false", Disposition: upstreamflag.Same},
	{Name: "enable-conntrack-deletion", Bool: true, Default: "false", Disposition: upstreamflag.Same},
	{Name: "custom-user-agent", Disposition: upstreamflag.Same, Why: "appended to the User-Agent of Entra ID and apiserver requests"},
	{Name: "version", Bool: true, Default: "false", Disposition: upstreamflag.Same, Why: "prints acrpull's version"},
	{Name: "log-format", Default: "text", Disposition: upstreamflag.Same, Why: "text is zap's console encoding; without the flag, JSON; --zap-encoder wins"},
	{Name: "MICNamespace", Default: "default", Disposition: upstreamflag.Same, Why: "pods of this namespace controlled by a ReplicaSet `mic-*` (upstream's MIC) reach the node's IMDS; default empty here (none), so upstream's manifests' MIC in `default` needs `--MICNamespace=default`; matched case-insensitively as upstream; see docs/security.md"},
	{Name: "enableScaleFeatures", Bool: true, Default: "true", Disposition: upstreamflag.Ignored, Why: "the agent always caches only this node's pods and assignment records"},
	{Name: "enableProfile", Bool: true, Default: "false", Disposition: upstreamflag.Ignored, Why: "no profiling endpoint is served"},
	{Name: "host-ip", Disposition: upstreamflag.Ignored, Why: "upstream's chart rendered it for nmi images up to v1.6.1"},
	{Name: "prometheus-address", Disposition: upstreamflag.Ignored, Why: "/metrics listens on every address at --prometheus-port"},
}, upstreamflag.Klog...)

// Operation modes, as upstream names them.
const (
	// modeStandard: identities may be assigned to nodes by an assignment controller (MIC).
	modeStandard = "standard"
	// modeManaged: no assignment controller; identities of type 0 come from the node's IMDS, where they were
	// assigned by hand, and every identity is namespaced.
	modeManaged = "managed"
)

type settings struct {
	agent            nmi.Options
	rules            *imdsredirect.Rules
	redirect         bool
	redirectInterval time.Duration
	flushConntrack   bool
	routeLocalnet    bool
	// allowKubenet skips the refusal to run on a node whose pods share a bridge; kubeletConfig and cniConfigDir are
	// where that is read from (see kubenetEvidence).
	allowKubenet  bool
	kubeletConfig string
	cniConfigDir  string
	// iptablesMode picks the iptables backend the redirect is written to (imdsredirect.ChooseIPTables).
	iptablesMode string
	// printVersion: --version was given; nothing else is checked.
	printVersion bool
	// logging holds -v and --log-format for the logger; ignored names the ignored upstream flags given, for the log.
	logging *upstreamflag.Logging
	ignored []string
}

// parseFlags reads upstream NMI's flags (those acrpull has a use for; the rest are accepted and ignored, so existing
// manifests start unchanged) and acrpull's own.
func parseFlags(fs *flag.FlagSet, args []string, getenv func(string) string) (settings, error) {
	var (
		s                                   settings
		listenIP, metadataIP                string
		nmiPort, metadataPort               int
		probePort, prometheusPort           int
		iptUpdateSeconds                    int
		mode, cloudName, authorityHost      string
		hostTokenAudiences                  string
		forceNamespaced                     bool
		retryAttemptsCreated, retryAttempts int
		findInterval                        int
		allowedAuthorityHosts               string
		micNamespace                        string
	)
	fs.StringVar(&s.agent.NodeName, "node", getenv("NODE_NAME"), "Name of this node (env NODE_NAME).")
	fs.StringVar(&listenIP, "nmi-listen-address", "127.0.0.1", "Address the token endpoint listens on.")
	fs.IntVar(&nmiPort, "nmi-port", 2579, "Port the token endpoint listens on.")
	fs.StringVar(&metadataIP, "metadata-ip", "169.254.169.254", "Instance metadata service address pods call.")
	fs.IntVar(&metadataPort, "metadata-port", 80, "Instance metadata service port.")
	fs.IntVar(&iptUpdateSeconds, "ipt-update-interval-sec", 60, "Seconds between checks that the redirect chain is intact.")
	fs.BoolVar(&s.redirect, "redirect", true, "Install the aad-metadata nat chain (false when something else redirects).")
	fs.BoolVar(&s.routeLocalnet, "set-route-localnet", true, "Set net.ipv4.conf.all.route_localnet=1, which DNAT to 127.0.0.1 needs.")
	fs.StringVar(&s.iptablesMode, "iptables-mode", imdsredirect.BackendAuto, "iptables backend of the redirect: auto (the one holding the node's Kubernetes rules), legacy or nft.")
	fs.BoolVar(&s.flushConntrack, "enable-conntrack-deletion", false, "Delete conntrack entries to the metadata address at start, so connections opened before the agent are redirected too.")
	fs.BoolVar(&forceNamespaced, "forceNamespaced", strings.EqualFold(getenv("FORCENAMESPACED"), "true"), "Identities are used only by pods in their own namespace (env FORCENAMESPACED).")
	fs.BoolVar(&s.agent.Config.MetadataHeaderRequired, "metadata-header-required", true, "Refuse token requests without the Metadata: true header.")
	fs.BoolVar(&s.agent.Config.BlockInstanceMetadata, "block-instance-metadata", false, "Answer /metadata/instance with 403.")
	fs.BoolVar(&s.agent.Config.RetryAfterOnNoIdentity, "set-retry-after-header", false, "Answer 503 with Retry-After instead of 404 while a pod has no identity.")
	fs.StringVar(&mode, "operation-mode", modeStandard, "standard or managed (identities assigned to nodes by hand; implies --forceNamespaced and --token-source=imds).")
	fs.StringVar(&s.agent.Type0Source, "token-source", "", "Where tokens of user-assigned identities (type 0) come from: federation (a token of the pod's service account, bound to the pod, traded at Entra ID), imds (the node's metadata service), or auto (imds for pods an assignment controller assigned, federation for the rest). Default auto, imds in managed mode; the annotation "+nmi.TokenSourceAnnotation+" overrides it per identity.")
	fs.StringVar(&s.agent.ServiceAccountAudience, "service-account-token-audience", "api://AzureADTokenExchange", "Audience of the pod-bound service-account tokens presented to Entra ID.")
	fs.StringVar(&s.agent.DefaultTenantID, "tenant-id", getenv("AZURE_TENANT_ID"), "Tenant of identities without spec.tenantID (env AZURE_TENANT_ID).")
	fs.StringVar(&cloudName, "cloud", "PublicCloud", "Azure cloud: PublicCloud, USGovernmentCloud or ChinaCloud.")
	fs.StringVar(&authorityHost, "authority-host", getenv("AZURE_AUTHORITY_HOST"), "Entra ID authority host, overriding --cloud's (env AZURE_AUTHORITY_HOST).")
	fs.StringVar(&hostTokenAudiences, "host-token-audiences", "", "Comma-separated audiences accepted on /host/token callers' service-account tokens; empty accepts the apiserver's.")
	fs.IntVar(&s.agent.Config.MaxConcurrentRequestsPerPod, "max-concurrent-requests-per-pod", nmi.DefaultMaxConcurrentRequestsPerPod,
		"Requests one source address (a pod; node-local callers share 127.0.0.1) may have in flight; more are answered 429 with Retry-After. 0: no bound.")
	fs.IntVar(&probePort, "http-probe-port", 8085, "Port of /healthz and /readyz (0 disables).")
	fs.IntVar(&prometheusPort, "prometheus-port", 9090, "Port of /metrics (0 disables).")
	fs.IntVar(&retryAttemptsCreated, "retry-attempts-for-created", 16, "Standard mode: intervals to wait for the assignment controller to record a pod's identity.")
	fs.IntVar(&retryAttempts, "retry-attempts-for-assigned", 4, "Standard mode: further intervals to wait for the recorded identity to be assigned.")
	fs.IntVar(&findInterval, "find-identity-retry-interval", 5, "Standard mode: seconds per interval. The agent answers as soon as the record is Assigned, not on this grid.")
	fs.BoolVar(&s.allowKubenet, "allow-network-plugin-kubenet", false, "Run on nodes whose pods share a bridge (kubenet), where a pod with NET_RAW can take another pod's address and tokens. Set it only where pods are denied NET_RAW.")
	fs.StringVar(&s.kubeletConfig, "kubelet-config", "/etc/default/kubelet", "The kubelet's flags file, read for --network-plugin=kubenet (empty: not read).")
	fs.StringVar(&s.cniConfigDir, "cni-config-dir", "/etc/cni/net.d", "The node's CNI configuration directory, read for the bridge plugin (kubenet; empty: not read).")
	// Credential destinations a tenant's AzureIdentity may not choose by itself.
	fs.StringVar(&allowedAuthorityHosts, "allowed-authority-hosts", "", "Comma-separated Entra ID authorities identities' spec.adEndpoint may name besides the Azure clouds' and --authority-host: https URLs (a path, e.g. /adfs/, must then match exactly) or host[:port] names, meaning https://host[:port]/.")
	fs.BoolVar(&s.agent.AllowCrossNamespaceSecrets, "allow-cross-namespace-secrets", false, "Let identities' spec.clientPassword name Secrets in other namespaces, as upstream did; by default only the identity's own namespace is read.")
	fs.StringVar(&micNamespace, "MICNamespace", "", "Namespace of upstream's MIC during a migration: its pods controlled by a ReplicaSet mic-* get the node's identities from its IMDS without a binding. Only a namespace only administrators write; empty (default) lets none through.")
	fs.StringVar(&s.agent.UserAgentSuffix, "custom-user-agent", "", "Suffix of the User-Agent of Entra ID and apiserver requests.")
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
	s.ignored = upstreamflag.IgnoredGiven(fs, upstreamFlags)

	if s.agent.NodeName == "" {
		return s, fmt.Errorf("--node (or env NODE_NAME) is required")
	}
	switch mode {
	case modeStandard:
		// Classic mode: follow the assignment controller's records, waiting as upstream's flags say.
		s.agent.FollowAssignments = true
		interval := time.Duration(max(findInterval, 1)) * time.Second
		s.agent.AssignmentCreatedWait = time.Duration(retryAttemptsCreated) * interval
		s.agent.AssignmentTotalWait = time.Duration(retryAttemptsCreated+retryAttempts) * interval
	case modeManaged:
		forceNamespaced = true
		if s.agent.Type0Source == "" {
			s.agent.Type0Source = nmi.SourceIMDS
		}
	default:
		return s, fmt.Errorf("--operation-mode %q: use %s or %s", mode, modeStandard, modeManaged)
	}
	s.agent.Config.ForceNamespaced = forceNamespaced
	micNS, err := canonicalNamespace(micNamespace)
	if err != nil {
		return s, fmt.Errorf("--MICNamespace: %w", err)
	}
	s.agent.Config.MICNamespace = micNS
	cloud, ok := azauth.CloudNamed(cloudName)
	if !ok && authorityHost == "" {
		return s, fmt.Errorf("--cloud %q is not known: use PublicCloud, USGovernmentCloud or ChinaCloud, or set --authority-host", cloudName)
	}
	if authorityHost != "" {
		cloud.AuthorityHost = authorityHost
	}
	s.agent.Cloud = cloud
	s.agent.AllowedAuthorityHosts = azauth.SplitAuthorityHostList(allowedAuthorityHosts)
	if _, err := azauth.NewAuthorityHosts(append(s.agent.AllowedAuthorityHosts, cloud.AuthorityHost)...); err != nil {
		return s, fmt.Errorf("--allowed-authority-hosts or --authority-host: %w", err)
	}
	for _, a := range strings.Split(hostTokenAudiences, ",") {
		if a = strings.TrimSpace(a); a != "" {
			s.agent.Config.HostTokenAudiences = append(s.agent.Config.HostTokenAudiences, a)
		}
	}
	switch s.iptablesMode {
	case imdsredirect.BackendAuto, imdsredirect.BackendLegacy, imdsredirect.BackendNFT:
	default:
		return s, fmt.Errorf("--iptables-mode %q: use auto, legacy or nft", s.iptablesMode)
	}
	if net.ParseIP(listenIP) == nil || net.ParseIP(metadataIP) == nil {
		return s, fmt.Errorf("--nmi-listen-address and --metadata-ip must be IP addresses")
	}
	s.agent.ListenAddr = net.JoinHostPort(listenIP, strconv.Itoa(nmiPort))
	s.agent.IMDSEndpoint = "http://" + net.JoinHostPort(metadataIP, strconv.Itoa(metadataPort))
	s.agent.MetricsAddr = portAddr(prometheusPort)
	s.agent.ProbeAddr = portAddr(probePort)
	s.rules = &imdsredirect.Rules{Chain: "aad-metadata", MetadataIP: metadataIP, MetadataPort: metadataPort, TargetIP: listenIP, TargetPort: nmiPort}
	s.redirectInterval = time.Duration(max(iptUpdateSeconds, 1)) * time.Second
	return s, nil
}

// canonicalNamespace is the one spelling of a namespace name the agent compares pods' namespaces with: upstream
// compared case-insensitively, and namespace names are lowercase, so the value is lowercased and must then be a
// namespace name; empty stays empty.
func canonicalNamespace(name string) (string, error) {
	if name == "" {
		return "", nil
	}
	lower := strings.ToLower(name)
	if errs := validation.IsDNS1123Label(lower); len(errs) > 0 {
		return "", fmt.Errorf("%q is not a namespace name: %s", name, strings.Join(errs, "; "))
	}
	return lower, nil
}

func portAddr(port int) string {
	if port == 0 {
		return "0"
	}
	return ":" + strconv.Itoa(port)
}
