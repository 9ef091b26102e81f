/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

package nmi_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap/zapcore"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	aadv1 "github.com/acrpull/acrpull/api/aadpodidentity/v1"
	"github.com/acrpull/acrpull/internal/harness/azurefake"
	"github.com/acrpull/acrpull/internal/harness/testenv"
	"github.com/acrpull/acrpull/internal/nmi"
)

const (
	nodeName = "node-a"
	tenantID = "72f988bf-0000-0000-0000-000000000001"
	// vault is a resource pods ask tokens for, as the Key Vault SDK does.
	vault = "https://vault.azure.net"
)

var (
	env   *testenv.Env
	cloud *azurefake.Cloud
	k8s   client.Client
	agent *nmi.Agent
	// agentLog holds everything the agents logged, for the secrecy test; agentMetrics the main agent's metrics.
	agentLog     testenv.Output
	agentMetrics = prometheus.NewRegistry()
)

func TestMain(m *testing.M) {
	if runPodClient() {
		return
	}
	os.Exit(run(m))
}

func run(m *testing.M) int {
	logf.SetLogger(zap.New(zap.WriteTo(io.MultiWriter(os.Stderr, &agentLog)), zap.Level(zapcore.DebugLevel)))
	var (
		stop func()
		err  error
	)
	if env, cloud, stop, err = testenv.StartWithCloud(azurefake.Options{}); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer stop()
	k8s = env.Client

	opts := agentOptions()
	opts.MetricsRegistry = agentMetrics
	agent, err = nmi.New(env.Config, opts)
	if err != nil {
		fmt.Fprintln(os.Stderr, "agent:", err)
		return 1
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- agent.Start(ctx) }()
	code := 1
	if agent.GetCache().WaitForCacheSync(ctx) {
		code = m.Run()
		if code == 0 && testenv.WholeSuite() {
			if err := afterTheSuite(ctx); err != nil {
				fmt.Fprintln(os.Stderr, "checks after the suite:", err)
				code = 1
			} else {
				fmt.Fprintln(os.Stderr, "checks after the suite: no token in the agents' log or Events; upstream metric names hold")
			}
		}
	} else {
		fmt.Fprintln(os.Stderr, "agent caches did not sync")
	}
	cancel()
	if err := <-done; err != nil {
		fmt.Fprintln(os.Stderr, "agent stopped:", err)
		code = 1
	}
	return code
}

// agentOptions is the agent under test: node-a, the fake cloud, /metadata/instance blocked, upstream's MIC expected
// in micNamespace.
func agentOptions() nmi.Options {
	return nmi.Options{
		NodeName:          nodeName,
		ListenAddr:        "127.0.0.1:0",
		MetricsAddr:       "0",
		ProbeAddr:         "0",
		Config:            nmi.Config{MetadataHeaderRequired: true, BlockInstanceMetadata: true, MICNamespace: micNamespace},
		DefaultTenantID:   tenantID,
		AzureHTTPClient:   cloud.HTTPClient(),
		AzureCallTimeout:  5 * time.Second,
		PodLookupAttempts: 3,
		PodLookupInterval: 200 * time.Millisecond,
		MetricsRegistry:   prometheus.NewRegistry(),
	}
}

func newNamespace(t *testing.T) string {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "nmi-"}}
	create(t, ns)
	// ServiceAccount admission needs the account pods run as.
	create(t, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns.Name, Name: "default"}})
	return ns.Name
}

func create(t *testing.T, obj client.Object) {
	t.Helper()
	if err := k8s.Create(context.Background(), obj); err != nil {
		t.Fatalf("creating %T %s: %v", obj, obj.GetName(), err)
	}
}

// federatedAccount creates a service account whose tokens the identity trusts.
func federatedAccount(t *testing.T, ns, name, clientID string) {
	t.Helper()
	create(t, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}})
	cloud.AddFederatedCredential(clientID, azurefake.FederatedCredential{
		Issuer: testenv.Issuer, Subject: "system:serviceaccount:" + ns + ":" + name,
		Audiences: []string{"api://AzureADTokenExchange"},
	})
}

func azureIdentity(ns, name string, spec aadv1.AzureIdentitySpec) *aadv1.AzureIdentity {
	return &aadv1.AzureIdentity{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Spec: spec}
}

func binding(ns, name, identity, selector string) *aadv1.AzureIdentityBinding {
	return &aadv1.AzureIdentityBinding{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: aadv1.AzureIdentityBindingSpec{AzureIdentity: identity, Selector: selector}}
}

// runningPod creates a pod on node and gives it ip and phase Running through the status subresource, as a kubelet
// would, then waits until the agent's cache has it.
func runningPod(t *testing.T, ns, name, serviceAccount, label, node, ip string) *corev1.Pod {
	t.Helper()
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: map[string]string{}},
		Spec: corev1.PodSpec{
			NodeName:           node,
			ServiceAccountName: serviceAccount,
			Containers:         []corev1.Container{{Name: "app", Image: "app"}},
		},
	}
	if label != "" {
		pod.Labels[aadv1.PodLabel] = label
	}
	create(t, pod)
	pod.Status = corev1.PodStatus{Phase: corev1.PodRunning, PodIP: ip, PodIPs: []corev1.PodIP{{IP: ip}}}
	if err := k8s.Status().Update(context.Background(), pod); err != nil {
		t.Fatalf("setting pod status: %v", err)
	}
	waitForCache(t, pod)
	return pod
}

// waitForCache waits until the agent's cache holds pod's current version (or, for other nodes, a moment).
func waitForCache(t *testing.T, pod *corev1.Pod) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		var cached corev1.Pod
		err := agent.GetCache().Get(context.Background(), client.ObjectKeyFromObject(pod), &cached)
		if err == nil && cached.ResourceVersion == pod.ResourceVersion {
			return
		}
		if pod.Spec.NodeName != nodeName {
			time.Sleep(300 * time.Millisecond)
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("pod %s never reached the agent's cache", pod.Name)
}

// waitForObject waits until the agent's cache holds obj (identities, bindings, exceptions).
func waitForObject(t *testing.T, obj client.Object) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	key := client.ObjectKeyFromObject(obj)
	for time.Now().Before(deadline) {
		cp := obj.DeepCopyObject().(client.Object)
		if err := agent.GetCache().Get(context.Background(), key, cp); err == nil && cp.GetResourceVersion() == obj.GetResourceVersion() {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("%T %s never reached the agent's cache", obj, key)
}

func createAndSync(t *testing.T, objs ...client.Object) {
	t.Helper()
	for _, o := range objs {
		create(t, o)
		waitForObject(t, o)
	}
}

// response is one request's outcome.
type response struct {
	status int
	header http.Header
	body   []byte
}

// httptestRequest is a token request as if from remote (ip:port), with the Metadata header.
func httptestRequest(remote, path string) *http.Request {
	req := httptest.NewRequest(http.MethodGet, path, nil)
	req.RemoteAddr = remote
	req.Header.Set("Metadata", "true")
	return req
}

// get sends a request to the agent as if from remote (ip:port), with the Metadata header unless told otherwise.
func get(t *testing.T, remote, path string, headers map[string]string) response {
	t.Helper()
	req := httptestRequest(remote, path)
	for k, v := range headers {
		if v == "" {
			req.Header.Del(k)
		} else {
			req.Header.Set(k, v)
		}
	}
	rec := httptest.NewRecorder()
	agent.Handler.ServeHTTP(rec, req)
	return response{status: rec.Code, header: rec.Header(), body: rec.Body.Bytes()}
}

func tokenPath(resource string, extra ...string) string {
	p := "/metadata/identity/oauth2/token?api-version=2018-02-01&resource=" + resource
	for _, e := range extra {
		p += "&" + e
	}
	return p
}

// imdsToken is the token body pods receive.
type imdsToken struct {
	AccessToken  string `json:"access_token"`
	RefreshToken string `json:"refresh_token"`
	ExpiresIn    string `json:"expires_in"`
	ExpiresOn    string `json:"expires_on"`
	NotBefore    string `json:"not_before"`
	Resource     string `json:"resource"`
	TokenType    string `json:"token_type"`
}

func decodeToken(t *testing.T, r response) imdsToken {
	t.Helper()
	if r.status != http.StatusOK {
		t.Fatalf("status %d: %s", r.status, r.body)
	}
	var tok imdsToken
	if err := json.Unmarshal(r.body, &tok); err != nil {
		t.Fatalf("decoding %s: %v", r.body, err)
	}
	return tok
}

// claims reads a JWT's payload without verifying it (the fake cloud's tests verify its signatures).
func claims(t *testing.T, token string) map[string]any {
	t.Helper()
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		t.Fatalf("not a JWT (%d parts)", len(parts))
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var c map[string]any
	if err := json.Unmarshal(payload, &c); err != nil {
		t.Fatal(err)
	}
	return c
}

// eventually polls cond until it holds or 10 s pass.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
