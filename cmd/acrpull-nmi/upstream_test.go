/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

package main

import (
	"bytes"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap/zapcore"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/acrpull/acrpull/internal/harness/testenv"
	"github.com/acrpull/acrpull/internal/upstreamflag"
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

func ignoredNames(lines []string) []string {
	var names []string
	for _, l := range lines {
		names = append(names, strings.TrimPrefix(l[:strings.Index(l, "=")], "--"))
	}
	return names
}

// Upstream's chart-rendered command lines parse, take their upstream meaning, and name what they ignore.
func TestUpstreamChartCommandLinesParse(t *testing.T) {
	for _, tc := range []struct {
		name        string
		args        []string
		wantIgnored string
	}{
		{"defaults", upstreamChartDefaults, "enableScaleFeatures"},
		{"all values", upstreamChartAllValues, "enableScaleFeatures"},
		{"old image", upstreamChartOldImage, "enableScaleFeatures host-ip"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := parse(t, nil, tc.args...)
			if err != nil {
				t.Fatalf("upstream's command line refused: %v", err)
			}
			if got := strings.Join(ignoredNames(s.ignored), " "); got != tc.wantIgnored {
				t.Errorf("ignored flags logged: %q, want %q", got, tc.wantIgnored)
			}
			for _, line := range s.ignored {
				if !strings.Contains(line, ": ") || strings.HasSuffix(line, ": ") {
					t.Errorf("ignored flag %q is logged without a reason", line)
				}
			}
		})
	}
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
func TestEveryUpstreamFlagIsAccepted(t *testing.T) {
	for _, f := range upstreamFlags {
		arg := "--" + f.Name
		if !f.Bool {
			arg += "=" + f.Default
		}
		fs := flag.NewFlagSet("acrpull-nmi", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		s, err := parseFlags(fs, []string{arg, "--node=n"}, func(string) string { return "" })
		if f.Disposition == upstreamflag.Refused {
			if err == nil {
				t.Errorf("%s: accepted, but the table says refused", arg)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", arg, err)
			continue
		}
		if ignored := len(s.ignored) == 1; ignored != (f.Disposition == upstreamflag.Ignored) {
			t.Errorf("%s: logged as ignored %v, table says %s", arg, ignored, f.Disposition)
		}
	}
}

// docs/pod-identity.md's table of upstream flags is the one in the code.
func TestUpstreamFlagsDocumented(t *testing.T) {
	doc, err := os.ReadFile(filepath.Join(testenv.ModuleRoot(), "docs", "pod-identity.md"))
	if err != nil {
		t.Fatal(err)
	}
	if rows := upstreamflag.Markdown(upstreamFlags); !bytes.Contains(doc, []byte(rows)) {
		t.Errorf("docs/pod-identity.md lacks the nmi rows of \"Upstream flags\"; they are:\n%s", rows)
	}
}

// testVersion is linked into the binary the tests run, as the Makefile and the image build link the release's.
const testVersion = "v0.0.0-test"

// buildDir holds the built program, once a test asked for it.
var buildDir string

var builtProgram = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "acrpull-nmi-test-")
	if err != nil {
		return "", err
	}
	buildDir = dir
	bin := filepath.Join(dir, "acrpull-nmi")
	build := exec.Command("go", "build", "-ldflags=-X github.com/acrpull/acrpull/internal/buildinfo.version="+testVersion, "-o", bin, ".")
	if out, err := build.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build: %w\n%s", err, out)
	}
	return bin, nil
})

// buildProgram builds this command once for the package's tests; TestMain removes it.
func buildProgram(t *testing.T) string {
	t.Helper()
	bin, err := builtProgram()
	if err != nil {
		t.Fatal(err)
	}
	return bin
}

func TestMain(m *testing.M) {
	code := m.Run()
	if buildDir != "" {
		_ = os.RemoveAll(buildDir)
	}
	os.Exit(code)
}

func TestVersionFlag(t *testing.T) {
	bin := buildProgram(t)
	out, err := exec.Command(bin, "--version").Output()
	if err != nil {
		t.Fatalf("--version: %v", err)
	}
	if want := "acrpull-nmi " + testVersion + " " + runtime.Version() + "\n"; string(out) != want {
		t.Errorf("--version printed %q, want %q", out, want)
	}
}

func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
}

// The real binary, given upstream's chart-rendered command line with every value set, starts against a real
// apiserver: /healthz answers upstream's "Active", /metrics has acrpull_build_info, the ignored flags are logged once
// each with why.
func TestUpstreamChartCommandLineStartsTheAgent(t *testing.T) {
	env, err := testenv.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.Stop() })
	bin := buildProgram(t)
	probe, metrics, nmiPort := freePort(t), freePort(t), freePort(t)
	// acrpull's own additions: no iptables on the test machine, and ports of the test's own.
	args := append(append([]string{}, upstreamChartAllValues...), "--redirect=false", "--kubeconfig="+env.KubeconfigPath,
		"--http-probe-port="+probe, "--prometheus-port="+metrics, "--nmi-port="+nmiPort)
	cmd := exec.Command(bin, args...)
	var logs testenv.Output
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
	})

	get := func(url string) (int, string) {
		resp, err := http.Get(url)
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		select {
		case err := <-exited:
			t.Fatalf("the agent exited (%v):\n%s", err, logs.String())
		default:
		}
		code, _ := get("http://127.0.0.1:" + probe + "/readyz")
		if code == http.StatusOK {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not ready in 30s:\n%s", logs.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	if code, body := get("http://127.0.0.1:" + probe + "/healthz"); code != http.StatusOK || body != "Active" {
		t.Errorf("/healthz: %d %q, want 200 Active", code, body)
	}
	_, body := get("http://127.0.0.1:" + metrics + "/metrics")
	if want := `acrpull_build_info{goversion="` + runtime.Version() + `",program="acrpull-nmi",version="` + testVersion + `"} 1`; !strings.Contains(body, want) {
		t.Errorf("/metrics lacks %s", want)
	}
	out := logs.String()
	for _, want := range []string{
		"Ignoring upstream flag --enableScaleFeatures=true: ",
		`"msg":"Pods controlled by a ReplicaSet mic-* get the node's identities from its IMDS (--MICNamespace)","namespace":"kube-system"`,
	} {
		if n := strings.Count(out, want); n != 1 {
			t.Errorf("%q logged %d times, want once:\n%s", want, n, out)
		}
	}
	if !strings.Contains(out, `"msg":"Starting node agent","version":"`+testVersion+`"`) {
		t.Errorf("the start line lacks the version:\n%s", out)
	}
}
