/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

package nmi_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	"github.com/prometheus/client_golang/prometheus"

	aadv1 "github.com/acrpull/acrpull/api/aadpodidentity/v1"
	"github.com/acrpull/acrpull/internal/harness/azurefake"
	"github.com/acrpull/acrpull/internal/harness/buildinputs"
	"github.com/acrpull/acrpull/internal/harness/image"
	"github.com/acrpull/acrpull/internal/harness/netnstest"
	"github.com/acrpull/acrpull/internal/harness/testenv"
	"github.com/acrpull/acrpull/internal/imdsredirect"
	"github.com/acrpull/acrpull/internal/nmi"
)

// podClientEnv makes the test binary act as an application in a pod: an unmodified Azure SDK managed identity
// credential asking the instance metadata address for a token, as every Azure SDK does on a VM.
const podClientEnv = "ACRPULL_TEST_POD_CLIENT_SCOPE"

// podClientResult is what the pod client prints: the token's claims, never the token.
type podClientResult struct {
	Claims map[string]any `json:"claims,omitempty"`
	Error  string         `json:"error,omitempty"`
}

// runPodClient runs the pod client when the test binary was started as one, and reports whether it was.
func runPodClient() bool {
	scope := os.Getenv(podClientEnv)
	if scope == "" {
		return false
	}
	var res podClientResult
	cred, err := azidentity.NewManagedIdentityCredential(nil)
	if err == nil {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		var tok azcore.AccessToken
		tok, err = cred.GetToken(ctx, policy.TokenRequestOptions{Scopes: []string{scope}})
		if err == nil {
			res.Claims = payload(tok.Token)
		}
	}
	if err != nil {
		res.Error = err.Error()
	}
	_ = json.NewEncoder(os.Stdout).Encode(res)
	return true
}

func payload(token string) map[string]any {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return nil
	}
	raw, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return nil
	}
	var c map[string]any
	_ = json.Unmarshal(raw, &c)
	return c
}

// runInPod runs the pod client inside pod's network namespace with a clean environment (no proxy: its traffic must
// take the pod's own route to 169.254.169.254).
func runInPod(t *testing.T, pod *netnstest.Pod, scope string) podClientResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	cmd := pod.Command(ctx, os.Args[0], "-test.run=^$")
	cmd.Env = []string{podClientEnv + "=" + scope, "PATH=" + os.Getenv("PATH")}
	out, err := cmd.Output()
	var res podClientResult
	if jerr := json.Unmarshal(out, &res); jerr != nil {
		t.Fatalf("pod client: %v %v: %s", err, jerr, out)
	}
	return res
}

// seedObjects creates the seed's example for one pod: a federated account, the AzureIdentity and its binding, and
// the Pod object on node at the pod namespace's address. Bindings match pods in every namespace (upstream's default),
// so each test uses its own selector.
func seedObjects(t *testing.T, node string, pod *netnstest.Pod, clientID, selector string) {
	t.Helper()
	ns := newNamespace(t)
	cloud.AddIdentity(azurefake.Identity{ClientID: clientID, TenantID: tenantID})
	federatedAccount(t, ns, "web-sa", clientID)
	// As the seed writes them: the binding is <identity>-binding and its selector the identity's name.
	create(t, azureIdentity(ns, selector, aadv1.AzureIdentitySpec{Type: aadv1.UserAssignedMSI, ClientID: clientID,
		ResourceID: "/subscriptions/s1/resourcegroups/rg/providers/Microsoft.ManagedIdentity/userAssignedIdentities/" + selector}))
	create(t, binding(ns, selector+"-binding", selector, selector))
	runningPod(t, ns, "web", "web-sa", selector, node, pod.IP())
}

// The whole path on real kernel networking: a pod namespace's unmodified Azure SDK asks 169.254.169.254, the node's
// nat chain sends it to the agent, which finds the pod by its source address and gets its token by federation. A
// client from an address no pod holds gets nothing; without the chain, the pod's request does not reach the agent.
func TestSDKInPodNamespaceGetsTokenThroughRedirect(t *testing.T) {
	node := netnstest.NewNode(t)
	pod := node.AddPod(t, "web")
	rules := &imdsredirect.Rules{IPTablesPath: node.Wrapper(t, "iptables")}
	if _, err := rules.Ensure(); err != nil {
		t.Fatal(err)
	}
	listener, err := node.Listen("tcp", "127.0.0.1:2579")
	if err != nil {
		t.Fatal(err)
	}
	opts := agentOptions()
	opts.NodeName, opts.Listener, opts.MetricsRegistry = "netns-node", listener, prometheus.NewRegistry()
	nodeAgent, err := nmi.New(env.Config, opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan error, 1)
	go func() { stopped <- nodeAgent.Start(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-stopped; err != nil {
			t.Errorf("agent: %v", err)
		}
	})
	const clientID = "00000000-0000-0000-0000-0000000000e1"
	seedObjects(t, "netns-node", pod, clientID, "sdk-in-netns")

	// Wait for the agent's caches (it serves once synced); the first answer may be a 404 while the binding arrives.
	res := podClientResult{Error: "not run"}
	deadline := time.Now().Add(20 * time.Second)
	for res.Error != "" && time.Now().Before(deadline) {
		res = runInPod(t, pod, vault+"/.default")
		if res.Error != "" {
			time.Sleep(300 * time.Millisecond)
		}
	}
	if res.Error != "" {
		t.Fatalf("SDK in the pod: %s", res.Error)
	}
	if res.Claims["aud"] != vault || (res.Claims["appid"] != clientID && res.Claims["azp"] != clientID) {
		t.Fatalf("SDK got a token with claims %v", res.Claims)
	}

	// From an address no pod holds (the pod adds a second address and binds to it): refused, 500 as upstream.
	pod.AddAddress(t, "10.244.200.9")
	resp := metadataGet(t, pod.HTTPClient("10.244.200.9"), true)
	if resp.StatusCode != http.StatusInternalServerError {
		t.Errorf("spoofed source: %d, want 500", resp.StatusCode)
	}
	if resp := metadataGet(t, pod.HTTPClient(""), false); resp.StatusCode != http.StatusBadRequest {
		t.Errorf("no Metadata header over the network: %d, want 400", resp.StatusCode)
	}

	// Without the chain the pod's request never reaches the agent.
	if err := rules.Delete(); err != nil {
		t.Fatal(err)
	}
	c := pod.HTTPClient("")
	c.Timeout = 2 * time.Second
	if resp, err := c.Get("http://169.254.169.254/metadata/identity/oauth2/token?resource=" + url.QueryEscape(vault)); err == nil {
		resp.Body.Close()
		t.Errorf("without the redirect the request still got HTTP %d", resp.StatusCode)
	}
}

func metadataGet(t *testing.T, c *http.Client, header bool) *http.Response {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, "http://169.254.169.254/metadata/identity/oauth2/token?api-version=2018-02-01&resource="+url.QueryEscape(vault), nil)
	if header {
		req.Header.Set("Metadata", "true")
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("request from the pod: %v", err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp
}

// The real binary, run in the node namespace as a hostNetwork DaemonSet pod would be: it installs the chain, a pod's
// SDK gets its token, a chain edited by hand is repaired, and SIGTERM removes the chain.
func TestAgentBinaryOwnsTheChainForItsLifetime(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "acrpull-nmi")
	build := exec.Command("go", "build", "-o", bin, "./cmd/acrpull-nmi")
	build.Dir = testenv.ModuleRoot()
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building the agent: %v\n%s", err, out)
	}
	if err := buildinputs.Record(testenv.ModuleRoot(), "./cmd/acrpull-nmi"); err != nil {
		t.Fatal(err)
	}
	ownsTheChainForItsLifetime(t, "binary-node", "sdk-via-binary", "00000000-0000-0000-0000-0000000000e2",
		func(ctx context.Context, node *netnstest.Node, kubeconfig, caFile string, args ...string) *exec.Cmd {
			cmd := node.Command(ctx, bin, append([]string{"--kubeconfig", kubeconfig}, args...)...)
			cmd.Env = append(os.Environ(), "SSL_CERT_FILE="+caFile)
			return cmd
		})
}

// The same, with the agent and its iptables as the image holds them: the image's filesystem, unpacked, is the root
// of the agent's process (chroot) with /proc and /dev mounted, as a container runtime would give it; kubeconfig and
// the fake cloud's CA are copied in, as a pod's mounted files would be.
func TestAgentFromTheImageOwnsTheChainForItsLifetime(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("chroot needs root")
	}
	img, err := image.Build(context.Background(), image.Options{ModuleRoot: testenv.ModuleRoot(), Version: "v0.0.0-test"})
	if err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	if err := image.Unpack(context.Background(), img, root); err != nil {
		t.Fatal(err)
	}
	log := ownsTheChainForItsLifetime(t, "image-node", "sdk-via-image", "00000000-0000-0000-0000-0000000000e3",
		func(ctx context.Context, node *netnstest.Node, kubeconfig, caFile string, args ...string) *exec.Cmd {
			for from, to := range map[string]string{kubeconfig: "tmp/kubeconfig", caFile: "tmp/azure-ca.pem"} {
				data, err := os.ReadFile(from)
				if err == nil {
					err = os.WriteFile(filepath.Join(root, to), data, 0o600)
				}
				if err != nil {
					t.Fatal(err)
				}
			}
			// What a container runtime adds, /proc and /dev, mounted in the mount namespace `ip netns exec` makes for
			// the command (gone with it, never seen by the host).
			shell := `mount -t proc proc "$0/proc" && mount --bind /dev "$0/dev" && exec chroot "$0" "$@"`
			cmd := node.Command(ctx, "sh", append([]string{"-c", shell, root, "/acrpull-nmi", "--kubeconfig", "/tmp/kubeconfig"}, args...)...)
			cmd.Env = append(os.Environ(), "SSL_CERT_FILE=/tmp/azure-ca.pem")
			return cmd
		})
	// An empty node namespace holds no Kubernetes rules: the agent chose nf_tables, the image's default.
	if !strings.Contains(log, "Writing the redirect with iptables-nft") {
		t.Errorf("the agent did not say it chose iptables-nft:\n%s", log)
	}
}

// ownsTheChainForItsLifetime runs the agent (started by command, given a kubeconfig and the fake cloud's CA file)
// in a fresh node namespace through its whole life, and returns what it logged.
func ownsTheChainForItsLifetime(t *testing.T, nodeName, selector, clientID string,
	command func(ctx context.Context, node *netnstest.Node, kubeconfig, caFile string, args ...string) *exec.Cmd) string {
	t.Helper()
	node := netnstest.NewNode(t)
	pod := node.AddPod(t, "web")
	apiserver, err := url.Parse(env.Config.Host)
	if err != nil {
		t.Fatal(err)
	}
	node.Forward(t, apiserver.Host)
	node.Forward(t, cloud.ProxyURL().Host)
	caFile := filepath.Join(t.TempDir(), "azure-ca.pem")
	if err := os.WriteFile(caFile, cloud.CACertPEM(), 0o600); err != nil {
		t.Fatal(err)
	}
	seedObjects(t, nodeName, pod, clientID, selector)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var log testenv.Output
	cmd := command(ctx, node, env.KubeconfigPath, caFile, "--node", nodeName, "--tenant-id", tenantID,
		"--http-probe-port", "18085", "--prometheus-port", "0", "--ipt-update-interval-sec", "1")
	cmd.Env = append(cmd.Env, "HTTPS_PROXY="+cloud.ProxyURL().String(), "HTTP_PROXY="+cloud.ProxyURL().String(),
		"NO_PROXY=127.0.0.1,localhost")
	cmd.Stdout, cmd.Stderr = &log, &log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() {
		_ = cmd.Process.Kill()
		if t.Failed() {
			t.Logf("agent log:\n%s", log.String())
		}
	}()

	dnat := "-j DNAT --to-destination 127.0.0.1:2579"
	// The agent fills its chain before it jumps to it from PREROUTING, so the jump is what says it is done.
	eventually(t, "the chain and the jump to it while the agent runs", func() bool {
		rules := node.NATRules(t)
		return strings.Contains(rules, dnat) && strings.Contains(rules, "-A PREROUTING -j aad-metadata")
	})
	rules := node.NATRules(t)
	if !strings.Contains(rules, "-A PREROUTING -j aad-metadata") || !strings.Contains(rules, "! -s 127.0.0.1/32 -d 169.254.169.254/32 -p tcp -m tcp --dport 80") {
		t.Fatalf("nat table:\n%s", rules)
	}
	// The DaemonSet's probes (inside the node namespace, as kubelet would reach a hostNetwork pod).
	probe := node.HTTPClient("")
	eventually(t, "/readyz to answer 200", func() bool {
		resp, err := probe.Get("http://127.0.0.1:18085/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	if resp, err := probe.Get("http://127.0.0.1:18085/healthz"); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("/healthz: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}
	res := podClientResult{Error: "not run"}
	deadline := time.Now().Add(30 * time.Second)
	for res.Error != "" && time.Now().Before(deadline) {
		if res = runInPod(t, pod, "https://management.azure.com/.default"); res.Error != "" {
			time.Sleep(500 * time.Millisecond)
		}
	}
	if res.Error != "" || (res.Claims["appid"] != clientID && res.Claims["azp"] != clientID) {
		t.Fatalf("SDK in the pod through the binary: %s %v", res.Error, res.Claims)
	}

	// Someone flushes the chain: the agent puts it back.
	if out, err := node.Command(context.Background(), "iptables", "-t", "nat", "-F", "aad-metadata").CombinedOutput(); err != nil {
		t.Fatalf("flushing: %v %s", err, out)
	}
	eventually(t, "the chain repaired", func() bool { return strings.Contains(node.NATRules(t), dnat) })

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-exited:
	case <-time.After(20 * time.Second):
		t.Fatal("the agent did not exit after SIGTERM")
	}
	if rules := node.NATRules(t); strings.Contains(rules, "aad-metadata") {
		t.Fatalf("chain left after SIGTERM:\n%s", rules)
	}
	if strings.Contains(log.String(), "eyJ") {
		t.Error("the agent logged something token-like")
	}
	return log.String()
}
