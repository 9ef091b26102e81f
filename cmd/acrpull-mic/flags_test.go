/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

package main

import (
	"flag"
	"slices"
	"strings"
	"testing"
	"time"

	"k8s.io/client-go/rest"

	"github.com/acrpull/acrpull/internal/harness/upstreamcli"
	"github.com/acrpull/acrpull/internal/mic"
)

func parse(t *testing.T, env map[string]string, args ...string) (settings, error) {
	t.Helper()
	fs := flag.NewFlagSet("acrpull-mic", flag.ContinueOnError)
	return parseFlags(fs, args, func(k string) string { return env[k] })
}

// An upstream MIC Deployment's arguments start the controller unchanged, and the ones with an effect take it.
func TestUpstreamArgumentsAreAccepted(t *testing.T) {
	s, err := parse(t, map[string]string{"MIC_POD_NAMESPACE": "kube-system"},
		"--cloudconfig=/etc/kubernetes/azure.json", "--kubeconfig=/tmp/kubeconfig", "--logtostderr", "--v=2",
		"--leader-election-namespace=aad", "--leader-election-name=aad-pod-identity-mic", "--leader-election-instance=mic-0",
		"--leader-election-duration=30s", "--syncRetryDuration=1h", "--identity-assignment-reconcile-interval=5m",
		"--immutable-user-msis=aaaa-1, bbbb-2,,", "--forceNamespaced=true", "--update-user-msi-max-retry=4",
		"--update-user-msi-retry-interval=2s", "--createDeleteBatch=40", "--clientQps=20", "--http-probe-port=8081",
		"--prometheus-port=8889", "--enable-type-upgrade=false", "--custom-user-agent=aks-addon", "--log-format=json",
		"--enableProfile=false")
	if err != nil {
		t.Fatal(err)
	}
	o := s.opts
	if s.cloudConfig != "/etc/kubernetes/azure.json" || s.namespace != "kube-system" {
		t.Errorf("cloudconfig %q namespace %q", s.cloudConfig, s.namespace)
	}
	if !o.LeaderElection || o.LeaderElectionNamespace != "aad" || o.LeaseDuration != 30*time.Second {
		t.Errorf("leader election %v ns %q duration %s", o.LeaderElection, o.LeaderElectionNamespace, o.LeaseDuration)
	}
	if o.Config.ReconcileInterval != 5*time.Minute || o.Config.UpdateRetries != 4 || !o.Config.ForceNamespaced {
		t.Errorf("config %+v", o.Config)
	}
	if !slices.Equal(o.Config.Policy.ImmutableClientIDs, []string{"aaaa-1", "bbbb-2"}) {
		t.Errorf("immutable %q", o.Config.Policy.ImmutableClientIDs)
	}
	if o.Config.RecordWriters != 40 {
		t.Errorf("record writers %d, want --createDeleteBatch's 40", o.Config.RecordWriters)
	}
	if o.ProbeAddr != ":8081" || o.MetricsAddr != ":8889" {
		t.Errorf("probe %q metrics %q", o.ProbeAddr, o.MetricsAddr)
	}
	if s.clientQPS != 20 || s.typeUpgrade || s.userAgent != "aks-addon" || s.leaseName != mic.LeaderElectionID {
		t.Errorf("qps %v type upgrade %v user agent %q lease %q", s.clientQPS, s.typeUpgrade, s.userAgent, s.leaseName)
	}
	want := []string{"enableProfile", "leader-election-instance", "logtostderr", "syncRetryDuration",
		"update-user-msi-retry-interval"}
	if got := upstreamcli.IgnoredNames(s.ignoredFlags); !slices.Equal(got, want) {
		t.Errorf("ignored flags reported %q, want %q", got, want)
	}
}

// With no arguments: upstream's defaults, leader election on, the Lease in the pod's namespace.
func TestDefaults(t *testing.T) {
	s, err := parse(t, map[string]string{"MIC_POD_NAMESPACE": "aad-system"})
	if err != nil {
		t.Fatal(err)
	}
	o := s.opts
	if !o.LeaderElection || o.LeaderElectionNamespace != "aad-system" || o.LeaseDuration != 15*time.Second {
		t.Errorf("leader election %v ns %q duration %s", o.LeaderElection, o.LeaderElectionNamespace, o.LeaseDuration)
	}
	if o.Config.ReconcileInterval != 3*time.Minute || o.Config.UpdateRetries != 2 || o.Config.ForceNamespaced ||
		len(o.Config.Policy.ImmutableClientIDs) != 0 {
		t.Errorf("config %+v", o.Config)
	}
	if o.ProbeAddr != ":8080" || o.MetricsAddr != ":8888" || s.clientQPS != 5 || !s.typeUpgrade || s.cloudConfig != "" {
		t.Errorf("probe %q metrics %q qps %v type upgrade %v cloudconfig %q", o.ProbeAddr, o.MetricsAddr, s.clientQPS, s.typeUpgrade, s.cloudConfig)
	}
	if len(s.ignoredFlags) != 0 {
		t.Errorf("ignored flags reported without being set: %q", s.ignoredFlags)
	}
	cfg := &rest.Config{}
	s.configureClient(cfg)
	if cfg.QPS != 5 || cfg.Burst != 10 || !cfg.DisableCompression {
		t.Errorf("apiserver client: qps %v burst %d, compression off %v; want 5, 10, true", cfg.QPS, cfg.Burst, cfg.DisableCompression)
	}
	withGzip, err := parse(t, nil, "--kube-api-compression")
	if err != nil {
		t.Fatal(err)
	}
	if withGzip.configureClient(cfg); cfg.DisableCompression {
		t.Error("--kube-api-compression left compression off")
	}

	s, err = parse(t, map[string]string{"FORCENAMESPACED": "true"})
	if err != nil {
		t.Fatal(err)
	}
	if !s.opts.Config.ForceNamespaced {
		t.Error("FORCENAMESPACED=true is upstream's environment switch")
	}
	if s.opts.LeaderElectionNamespace != "default" || s.namespace != "default" {
		t.Errorf("without MIC_POD_NAMESPACE: lease ns %q, namespace %q; want default", s.opts.LeaderElectionNamespace, s.namespace)
	}
	if s, _ := parse(t, nil, "--http-probe-port=0", "--prometheus-port=0"); s.opts.ProbeAddr != "0" || s.opts.MetricsAddr != "0" {
		t.Errorf("port 0 disables: probe %q metrics %q", s.opts.ProbeAddr, s.opts.MetricsAddr)
	}
}

func TestBadArgumentsAreClearErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--leader-election-duration=5s"}, "renew deadline"},
		{[]string{"--identity-assignment-reconcile-interval=0s"}, "--identity-assignment-reconcile-interval"},
		{[]string{"--update-user-msi-max-retry=-1"}, "--update-user-msi-max-retry"},
		{[]string{"--clientQps=0"}, "--clientQps"},
		{[]string{"--http-probe-port=70000"}, "--http-probe-port"},
		{[]string{"--syncRetryDuration=soon"}, "syncRetryDuration"},
		{[]string{"--no-such-flag"}, "no-such-flag"},
		{[]string{"stray"}, "unexpected arguments"},
	} {
		if _, err := parse(t, nil, tc.args...); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: error %v, want one mentioning %s", tc.args, err, tc.want)
		}
	}
}

// The migration cutoff: pods created from then on are left to federation.
func TestAssignPodsCreatedBefore(t *testing.T) {
	s, err := parse(t, nil, "--assign-pods-created-before=2026-12-01T00:00:00Z")
	if err != nil {
		t.Fatal(err)
	}
	if want := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC); !s.opts.Config.AssignPodsCreatedBefore.Equal(want) {
		t.Errorf("cutoff %s, want %s", s.opts.Config.AssignPodsCreatedBefore, want)
	}
	if _, err := parse(t, nil, "--assign-pods-created-before=tomorrow"); err == nil {
		t.Error("a malformed time was accepted")
	}
}
