/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

package main

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap/zapcore"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/acrpull/acrpull/internal/harness/testenv"
	"github.com/acrpull/acrpull/internal/harness/upstreamcli"
)

// Arguments upstream's chart (aad-pod-identity v1.8.17, charts/aad-pod-identity/templates/mic-deployment.yaml)
// renders for its mic Deployment.
var (
	// With the chart's default values.
	upstreamChartDefaults = []string{"--cloudconfig=/etc/kubernetes/azure.json", "--logtostderr"}
	// With every optional value set.
	upstreamChartAllValues = []string{
		"--cloudconfig=/etc/kubernetes/azure.json", "--logtostderr", "--log-format=json", "-v=4",
		"--leader-election-instance=mic-0", "--leader-election-namespace=aad", "--leader-election-name=aad-pod-identity-mic",
		"--leader-election-duration=30s", "--http-probe-port=8080", "--createDeleteBatch=40", "--clientQps=20",
		"--immutable-user-msis=aaaa-1,bbbb-2", "--prometheus-port=8888", "--syncRetryDuration=3600s",
		"--update-user-msi-max-retry=4", "--update-user-msi-retry-interval=2s",
		"--identity-assignment-reconcile-interval=5m", "--custom-user-agent=contoso-aks/1.0",
	}
	// Flags upstream's mic defines that its chart does not render.
	upstreamUnrendered = append(append([]string{}, upstreamChartDefaults...), "--kubeconfig=", "--forceNamespaced=false",
		"--enableProfile=false", "--enableScaleFeatures=true", "--config-map-name=aad-pod-identity-config",
		"--type-upgrade-status-key=type-upgrade-status", "--enable-type-upgrade=true")
)

// underTest is this command for the shared upstream command-line tests.
var underTest = &upstreamcli.Program{
	Name: "acrpull-mic", Upstream: "mic", Table: upstreamFlags,
	Parse: func(fs *flag.FlagSet, args []string, env map[string]string) ([]string, error) {
		s, err := parseFlags(fs, args, func(k string) string { return env[k] })
		return s.ignoredFlags, err
	},
}

func TestMain(m *testing.M) {
	code := m.Run()
	underTest.Remove()
	os.Exit(code)
}

// Upstream's chart-rendered command lines parse, take their upstream meaning, and name what they ignore.
func TestUpstreamChartCommandLinesParse(t *testing.T) {
	env := map[string]string{"MIC_POD_NAMESPACE": "kube-system"}
	underTest.CheckCommandLines(t, []upstreamcli.CommandLine{
		{Name: "defaults", Args: upstreamChartDefaults, Env: env, WantIgnored: "logtostderr"},
		{Name: "all values", Args: upstreamChartAllValues, Env: env,
			WantIgnored: "leader-election-instance logtostderr syncRetryDuration update-user-msi-retry-interval"},
		{Name: "flags the chart does not render", Args: upstreamUnrendered, Env: env,
			WantIgnored: "config-map-name enableProfile enableScaleFeatures logtostderr type-upgrade-status-key"},
	})
	s, err := parse(t, env, upstreamChartAllValues...)
	if err != nil {
		t.Fatal(err)
	}
	if s.userAgent != "contoso-aks/1.0" || s.clientQPS != 20 || s.opts.Config.RecordWriters != 40 ||
		s.opts.LeaseDuration != 30*time.Second || s.opts.Config.UpdateRetries != 4 {
		t.Errorf("upstream's meaning not taken: %+v", s)
	}
	var o zap.Options
	fs := flag.NewFlagSet("acrpull-mic", flag.ContinueOnError)
	s, err = parseFlags(fs, upstreamChartAllValues, func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	s.logging.Apply(fs, &o)
	if o.Level == nil || !o.Level.Enabled(zapcore.Level(-4)) || o.Level.Enabled(zapcore.Level(-5)) {
		t.Errorf("-v=4 should enable logr V(4) and not V(5), level %v", o.Level)
	}
	if o.Encoder == nil {
		t.Error("--log-format=json should choose the encoder")
	}
}

// Every upstream flag in the table (and so in docs/pod-identity.md) is accepted, alone, with a value of its kind.
func TestEveryUpstreamFlagIsAccepted(t *testing.T) { underTest.CheckEveryFlagAccepted(t) }

// docs/pod-identity.md's table of upstream flags is the one in the code.
func TestUpstreamFlagsDocumented(t *testing.T) { underTest.CheckDocumented(t) }

func TestVersionFlag(t *testing.T) { underTest.CheckVersionFlag(t) }

// The real binary, given upstream's chart-rendered command line with every value set, starts against a real
// apiserver: /healthz answers upstream's "Active", /metrics has acrpull_build_info, the ignored flags are logged once
// each with why.
func TestUpstreamChartCommandLineStartsTheController(t *testing.T) {
	env, err := testenv.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.Stop() })
	azureJSON := filepath.Join(t.TempDir(), "azure.json")
	if err := os.WriteFile(azureJSON, []byte(`{"cloud":"AzurePublicCloud","tenantId":"t","subscriptionId":"s",
		"resourceGroup":"MC_rg","useManagedIdentityExtension":true,"userAssignedIdentityID":"kubelet-id"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	probe, metrics := upstreamcli.FreePort(t), upstreamcli.FreePort(t)
	// acrpull's own additions: the test's apiserver, Azure configuration and ports, and the Lease in a namespace
	// that exists.
	args := append(append([]string{}, upstreamChartAllValues...), "--kubeconfig="+env.KubeconfigPath,
		"--cloudconfig="+azureJSON, "--http-probe-port="+probe, "--prometheus-port="+metrics,
		"--leader-election-namespace=default")
	proc := underTest.Start(t, args, []string{"MIC_POD_NAMESPACE=default"})
	proc.WaitFor(t, "leading", func() bool { return strings.Contains(proc.Logs.String(), "Elected leader") })
	underTest.CheckServing(t, proc, probe, metrics, "Starting assignment controller", []string{
		"Ignoring upstream flag --logtostderr=true: ",
		"Ignoring upstream flag --leader-election-instance=mic-0: ",
		"Ignoring upstream flag --syncRetryDuration=3600s: ",
		"Ignoring upstream flag --update-user-msi-retry-interval=2s: ",
	})
}
