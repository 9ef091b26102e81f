/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

package main

import (
	"flag"
	"strings"
	"testing"
	"time"

	"github.com/acrpull/acrpull/internal/nmi"
)

func parse(t *testing.T, env map[string]string, args ...string) (settings, error) {
	t.Helper()
	fs := flag.NewFlagSet("acrpull-nmi", flag.ContinueOnError)
	return parseFlags(fs, args, func(k string) string { return env[k] })
}

// An upstream NMI DaemonSet's arguments start the agent unchanged.
func TestUpstreamArgumentsAreAccepted(t *testing.T) {
	s, err := parse(t, map[string]string{"NODE_NAME": "aks-node-1"},
		"--node=aks-node-1", "--http-probe-port=8085", "--operation-mode=standard", "--forceNamespaced=false",
		"--allow-network-plugin-kubenet=false", "--kubelet-config=/etc/default/kubelet", "--enableScaleFeatures=true",
		"--metadata-header-required=true", "--prometheus-port=9090", "--ipt-update-interval-sec=60",
		"--retry-attempts-for-created=16", "--retry-attempts-for-assigned=4", "--find-identity-retry-interval=5",
		"--MICNamespace=default", "--log-format=json", "--block-instance-metadata", "--set-retry-after-header")
	if err != nil {
		t.Fatal(err)
	}
	if s.agent.NodeName != "aks-node-1" || s.agent.ListenAddr != "127.0.0.1:2579" || s.agent.IMDSEndpoint != "http://169.254.169.254:80" {
		t.Errorf("node %q listen %q imds %q", s.agent.NodeName, s.agent.ListenAddr, s.agent.IMDSEndpoint)
	}
	if s.iptablesMode != "auto" {
		t.Errorf("iptables mode %q, want auto", s.iptablesMode)
	}
	if s.allowKubenet || s.kubeletConfig != "/etc/default/kubelet" || s.cniConfigDir != "/etc/cni/net.d" {
		t.Errorf("kubenet check: allowed %v, kubelet flags %q, CNI %q", s.allowKubenet, s.kubeletConfig, s.cniConfigDir)
	}
	if !s.agent.Config.MetadataHeaderRequired || !s.agent.Config.BlockInstanceMetadata || !s.agent.Config.RetryAfterOnNoIdentity {
		t.Errorf("config %+v", s.agent.Config)
	}
	if s.agent.Config.MaxConcurrentRequestsPerPod != nmi.DefaultMaxConcurrentRequestsPerPod {
		t.Errorf("per-pod request bound %d, want the default %d", s.agent.Config.MaxConcurrentRequestsPerPod, nmi.DefaultMaxConcurrentRequestsPerPod)
	}
	if s.agent.ProbeAddr != ":8085" || s.agent.MetricsAddr != ":9090" {
		t.Errorf("probe %q metrics %q", s.agent.ProbeAddr, s.agent.MetricsAddr)
	}
	if s.rules.Chain != "aad-metadata" || s.rules.TargetPort != 2579 || s.rules.MetadataIP != "169.254.169.254" {
		t.Errorf("rules %+v", s.rules)
	}
	if s.agent.Type0Source != "" || s.agent.Config.ForceNamespaced || !s.agent.FollowAssignments ||
		s.agent.AssignmentCreatedWait != 80*time.Second || s.agent.AssignmentTotalWait != 100*time.Second {
		t.Errorf("standard mode: source %q namespaced %v follows %v waits %s/%s", s.agent.Type0Source,
			s.agent.Config.ForceNamespaced, s.agent.FollowAssignments, s.agent.AssignmentCreatedWait, s.agent.AssignmentTotalWait)
	}
}

// --MICNamespace has one spelling, the namespace name: upstream compared case-insensitively, so the value is
// lowercased; anything that is then not a namespace name is refused; unset, no namespace is let through.
func TestMICNamespaceCanonicalForm(t *testing.T) {
	for _, tc := range []struct{ arg, want string }{
		{"--MICNamespace=default", "default"},
		{"--MICNamespace=Kube-System", "kube-system"},
		{"--node=n", ""},
		{"--MICNamespace=", ""},
	} {
		s, err := parse(t, nil, "--node=n", tc.arg)
		if err != nil || s.agent.Config.MICNamespace != tc.want {
			t.Errorf("%s: namespace %q (%v), want %q", tc.arg, s.agent.Config.MICNamespace, err, tc.want)
		}
	}
	for _, bad := range []string{"kube-system ", "a/b", "*", "kube_system", "-x", strings.Repeat("a", 64)} {
		if _, err := parse(t, nil, "--node=n", "--MICNamespace="+bad); err == nil || !strings.Contains(err.Error(), "--MICNamespace") {
			t.Errorf("--MICNamespace=%q: %v, want an error naming the flag", bad, err)
		}
	}
}

func TestManagedModeIsNamespacedAndUsesIMDS(t *testing.T) {
	s, err := parse(t, nil, "--node=n", "--operation-mode=managed")
	if err != nil {
		t.Fatal(err)
	}
	if !s.agent.Config.ForceNamespaced || s.agent.Type0Source != nmi.SourceIMDS || s.agent.FollowAssignments {
		t.Errorf("managed: namespaced %v source %q", s.agent.Config.ForceNamespaced, s.agent.Type0Source)
	}
	if s, _ := parse(t, map[string]string{"FORCENAMESPACED": "true"}, "--node=n"); !s.agent.Config.ForceNamespaced {
		t.Error("FORCENAMESPACED=true is upstream's environment switch")
	}
}

// The bound on a pod's requests in flight is the chart's value; 0 lifts it, as upstream had none.
func TestMaxConcurrentRequestsPerPod(t *testing.T) {
	for _, tc := range []struct {
		arg  string
		want int
	}{{"--max-concurrent-requests-per-pod=4", 4}, {"--max-concurrent-requests-per-pod=0", 0}} {
		s, err := parse(t, nil, "--node=n", tc.arg)
		if err != nil || s.agent.Config.MaxConcurrentRequestsPerPod != tc.want {
			t.Errorf("%s: %d %v, want %d", tc.arg, s.agent.Config.MaxConcurrentRequestsPerPod, err, tc.want)
		}
	}
}

func TestBadArgumentsAreClearErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{}, "--node"},
		{[]string{"--node=n", "--operation-mode=classic"}, "--operation-mode"},
		{[]string{"--node=n", "--cloud=Moon"}, "--cloud"},
		{[]string{"--node=n", "--metadata-ip=imds.local"}, "must be IP addresses"},
		{[]string{"--node=n", "--iptables-mode=xtables"}, "--iptables-mode"},
		{[]string{"--node=n", "--allowed-authority-hosts=http://login.example/"}, "https URL"},
		{[]string{"--node=n", "--authority-host=https://user@login.example/"}, "user information"},
	} {
		if _, err := parse(t, nil, tc.args...); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: error %v, want one mentioning %s", tc.args, err, tc.want)
		}
	}
}

// Tenants' identities may name only the known clouds' authorities, --authority-host's and
// --allowed-authority-hosts', and only Secrets of their own namespace, unless told otherwise.
func TestCredentialDestinationsAreClosedByDefault(t *testing.T) {
	s, err := parse(t, nil, "--node=n")
	if err != nil {
		t.Fatal(err)
	}
	if s.agent.AllowCrossNamespaceSecrets || len(s.agent.AllowedAuthorityHosts) != 0 {
		t.Errorf("defaults: cross-namespace %v, authorities %q", s.agent.AllowCrossNamespaceSecrets, s.agent.AllowedAuthorityHosts)
	}
	s, err = parse(t, nil, "--node=n", "--allow-cross-namespace-secrets", "--allowed-authority-hosts= login.airgap.example, https://adfs.example/adfs/")
	if err != nil {
		t.Fatal(err)
	}
	if !s.agent.AllowCrossNamespaceSecrets || strings.Join(s.agent.AllowedAuthorityHosts, ",") != "login.airgap.example,https://adfs.example/adfs/" {
		t.Errorf("set: cross-namespace %v, authorities %q", s.agent.AllowCrossNamespaceSecrets, s.agent.AllowedAuthorityHosts)
	}
}
