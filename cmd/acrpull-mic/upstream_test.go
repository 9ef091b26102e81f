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
		{"defaults", upstreamChartDefaults, "logtostderr"},
		{"all values", upstreamChartAllValues, "leader-election-instance logtostderr syncRetryDuration update-user-msi-retry-interval"},
		{"flags the chart does not render", upstreamUnrendered, "config-map-name enableProfile enableScaleFeatures logtostderr type-upgrade-status-key"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := parse(t, map[string]string{"MIC_POD_NAMESPACE": "kube-system"}, tc.args...)
			if err != nil {
				t.Fatalf("upstream's command line refused: %v", err)
			}
			if got := strings.Join(ignoredNames(s.ignoredFlags), " "); got != tc.wantIgnored {
				t.Errorf("ignored flags logged: %q, want %q", got, tc.wantIgnored)
			}
			for _, line := range s.ignoredFlags {
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
func TestEveryUpstreamFlagIsAccepted(t *testing.T) {
	for _, f := range upstreamFlags {
		arg := "--" + f.Name
		if !f.Bool {
			arg += "=" + f.Default
		}
		fs := flag.NewFlagSet("acrpull-mic", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		s, err := parseFlags(fs, []string{arg}, func(string) string { return "" })
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
		if ignored := len(s.ignoredFlags) == 1; ignored != (f.Disposition == upstreamflag.Ignored) {
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
		t.Errorf("docs/pod-identity.md lacks the mic rows of \"Upstream flags\"; they are:\n%s", rows)
	}
}

// testVersion is linked into the binary the tests run, as the Makefile and the image build link the release's.
const testVersion = "v0.0.0-test"

// buildDir holds the built program, once a test asked for it.
var buildDir string

var builtProgram = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "acrpull-mic-test-")
	if err != nil {
		return "", err
	}
	buildDir = dir
	bin := filepath.Join(dir, "acrpull-mic")
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
	if want := "acrpull-mic " + testVersion + " " + runtime.Version() + "\n"; string(out) != want {
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
func TestUpstreamChartCommandLineStartsTheController(t *testing.T) {
	env, err := testenv.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.Stop() })
	bin := buildProgram(t)
	azureJSON := filepath.Join(t.TempDir(), "azure.json")
	if err := os.WriteFile(azureJSON, []byte(`{"cloud":"AzurePublicCloud","tenantId":"t","subscriptionId":"s",
		"resourceGroup":"MC_rg","useManagedIdentityExtension":true,"userAssignedIdentityID":"kubelet-id"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	probe, metrics := freePort(t), freePort(t)
	// acrpull's own additions: the test's apiserver, Azure configuration and ports, and the Lease in a namespace
	// that exists.
	args := append(append([]string{}, upstreamChartAllValues...), "--kubeconfig="+env.KubeconfigPath,
		"--cloudconfig="+azureJSON, "--http-probe-port="+probe, "--prometheus-port="+metrics,
		"--leader-election-namespace=default")
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), "MIC_POD_NAMESPACE=default")
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
	for !strings.Contains(logs.String(), "Elected leader") {
		select {
		case err := <-exited:
			t.Fatalf("the controller exited (%v):\n%s", err, logs.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("not leading in 30s:\n%s", logs.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	if code, body := get("http://127.0.0.1:" + probe + "/healthz"); code != http.StatusOK || body != "Active" {
		t.Errorf("/healthz: %d %q, want 200 Active", code, body)
	}
	if code, _ := get("http://127.0.0.1:" + probe + "/readyz"); code != http.StatusOK {
		t.Errorf("/readyz: %d", code)
	}
	_, body := get("http://127.0.0.1:" + metrics + "/metrics")
	if want := `acrpull_build_info{goversion="` + runtime.Version() + `",program="acrpull-mic",version="` + testVersion + `"} 1`; !strings.Contains(body, want) {
		t.Errorf("/metrics lacks %s", want)
	}
	out := logs.String()
	for _, want := range []string{
		"Ignoring upstream flag --logtostderr=true: ",
		"Ignoring upstream flag --leader-election-instance=mic-0: ",
		"Ignoring upstream flag --syncRetryDuration=3600s: ",
		"Ignoring upstream flag --update-user-msi-retry-interval=2s: ",
	} {
		if n := strings.Count(out, want); n != 1 {
			t.Errorf("%q logged %d times, want once:\n%s", want, n, out)
		}
	}
	if !strings.Contains(out, `"msg":"Starting assignment controller","version":"`+testVersion+`"`) {
		t.Errorf("the start line lacks the version:\n%s", out)
	}
}
