/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

package main

import (
	"flag"
	"net/http"
	"os"
	"testing"
	"time"

	"go.uber.org/zap/zapcore"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/acrpull/acrpull/internal/harness/testenv"
	"github.com/acrpull/acrpull/internal/harness/upstreamcli"
)

// Arguments upstream's chart (aad-pod-identity v1.8.17, charts/aad-pod-identity/templates/nmi-daemonset.yaml)
// renders for its nmi DaemonSet, NODE_NAME already substituted.
var (
	// With the chart's default values.
	upstreamChartDefaults = []string{
		"--node=aks-node-1", "--http-probe-port=8085", "--enableScaleFeatures=true", "--prometheus-port=9090",
		"--metadata-header-required=true", "--operation-mode=standard", "--kubelet-config=/etc/default/kubelet",
	}
	// With every optional value set (managed mode, which adds --forceNamespaced).
	upstreamChartAllValues = []string{
		"--node=aks-node-1", "--http-probe-port=8085", "--ipt-update-interval-sec=30", "--MICNamespace=kube-system",
		"--retry-attempts-for-created=20", "--retry-attempts-for-assigned=6", "--find-identity-retry-interval=2",
		"--enableScaleFeatures=true", "--prometheus-port=9090", "--block-instance-metadata=true",
		"--metadata-header-required=true", "--log-format=json", "-v=5", "--operation-mode=managed", "--forceNamespaced",
		"--allow-network-plugin-kubenet=true", "--kubelet-config=/etc/default/kubelet",
		"--custom-user-agent=contoso-aks/1.0", "--set-retry-after-header=true",
	}
	// Upstream's chart adds this one for nmi images up to v1.6.1.
	upstreamChartOldImage = append([]string{"--host-ip=10.240.0.4"}, upstreamChartDefaults...)
)

// underTest is this command for the shared upstream command-line tests.
var underTest = &upstreamcli.Program{
	Name: "acrpull-nmi", Upstream: "nmi", Table: upstreamFlags, Required: []string{"--node=n"},
	Parse: func(fs *flag.FlagSet, args []string, env map[string]string) ([]string, error) {
		s, err := parseFlags(fs, args, func(k string) string { return env[k] })
		return s.ignored, err
	},
}

func TestMain(m *testing.M) {
	code := m.Run()
	underTest.Remove()
	os.Exit(code)
}

// Upstream's chart-rendered command lines parse, take their upstream meaning, and name what they ignore.
func TestUpstreamChartCommandLinesParse(t *testing.T) {
	underTest.CheckCommandLines(t, []upstreamcli.CommandLine{
		{Name: "defaults", Args: upstreamChartDefaults, WantIgnored: "enableScaleFeatures"},
		{Name: "all values", Args: upstreamChartAllValues, WantIgnored: "enableScaleFeatures"},
		{Name: "old image", Args: upstreamChartOldImage, WantIgnored: "enableScaleFeatures host-ip"},
	})
	s, err := parse(t, nil, upstreamChartAllValues...)
	if err != nil {
		t.Fatal(err)
	}
	if s.agent.UserAgentSuffix != "contoso-aks/1.0" || !s.agent.Config.ForceNamespaced || s.redirectInterval != 30*time.Second ||
		!s.allowKubenet || !s.agent.Config.RetryAfterOnNoIdentity || !s.agent.Config.BlockInstanceMetadata ||
		s.agent.Config.MICNamespace != "kube-system" {
		t.Errorf("upstream's meaning not taken: %+v", s)
	}
	var o zap.Options
	fs := flag.NewFlagSet("acrpull-nmi", flag.ContinueOnError)
	s, err = parseFlags(fs, upstreamChartAllValues, func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	s.logging.Apply(fs, &o)
	if o.Level == nil || !o.Level.Enabled(zapcore.Level(-5)) || o.Level.Enabled(zapcore.Level(-6)) {
		t.Errorf("-v=5 should enable logr V(5) and not V(6), level %v", o.Level)
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
// apiserver: /healthz answers upstream's "Active", /metrics has acrpull_build_info, the ignored flag is logged once
// with why, and --MICNamespace once as what it lets through.
func TestUpstreamChartCommandLineStartsTheAgent(t *testing.T) {
	env, err := testenv.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.Stop() })
	probe, metrics, nmiPort := upstreamcli.FreePort(t), upstreamcli.FreePort(t), upstreamcli.FreePort(t)
	// acrpull's own additions: no iptables on the test machine, and ports of the test's own.
	args := append(append([]string{}, upstreamChartAllValues...), "--redirect=false", "--kubeconfig="+env.KubeconfigPath,
		"--http-probe-port="+probe, "--prometheus-port="+metrics, "--nmi-port="+nmiPort)
	proc := underTest.Start(t, args, nil)
	proc.WaitFor(t, "ready", func() bool {
		code, _ := upstreamcli.Get("http://127.0.0.1:" + probe + "/readyz")
		return code == http.StatusOK
	})
	underTest.CheckServing(t, proc, probe, metrics, "Starting node agent", []string{
		"Ignoring upstream flag --enableScaleFeatures=true: ",
		`"msg":"Pods controlled by a ReplicaSet mic-* get the node's identities from its IMDS (--MICNamespace)","namespace":"kube-system"`,
	})
}
