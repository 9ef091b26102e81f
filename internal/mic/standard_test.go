/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

package mic_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	aadv1 "github.com/acrpull/acrpull/api/aadpodidentity/v1"
	"github.com/acrpull/acrpull/internal/harness/azurefake"
	"github.com/acrpull/acrpull/internal/harness/testenv"
	"github.com/acrpull/acrpull/internal/mic"
	"github.com/acrpull/acrpull/internal/nmi"
)

// startAgent runs a node agent in classic (standard) mode for node, whose Azure calls leave from nodeIP, the address
// the fake cloud knows the node's scale set by.
func startAgent(t *testing.T, node, nodeIP string, totalWait, grace time.Duration) *nmi.Agent {
	t.Helper()
	agent, err := nmi.New(env.Config, nmi.Options{
		NodeName: node, ListenAddr: "127.0.0.1:0", MetricsAddr: "0", ProbeAddr: "0",
		Config:            nmi.Config{MetadataHeaderRequired: true},
		FollowAssignments: true, AssignmentCreatedWait: totalWait, AssignmentTotalWait: totalWait, AssignmentGrace: grace,
		DefaultTenantID: tenantID, AzureHTTPClient: cloud.HTTPClientFrom(nodeIP), AzureCallTimeout: 10 * time.Second,
		PodLookupAttempts: 3, PodLookupInterval: 200 * time.Millisecond, MetricsRegistry: prometheus.NewRegistry(),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan error, 1)
	go func() { stopped <- agent.Start(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-stopped; err != nil {
			t.Errorf("agent: %v", err)
		}
	})
	if !agent.GetCache().WaitForCacheSync(ctx) {
		t.Fatal("agent caches did not sync")
	}
	return agent
}

// runningPod creates a labelled pod on node with ip, Running.
func runningPod(t *testing.T, ns, name, node, selector, ip string) *corev1.Pod {
	t.Helper()
	pod := labelledPod(t, ns, name, node, selector)
	pod.Status = corev1.PodStatus{Phase: corev1.PodRunning, PodIP: ip, PodIPs: []corev1.PodIP{{IP: ip}}}
	if err := k8s.Status().Update(context.Background(), pod); err != nil {
		t.Fatal(err)
	}
	return pod
}

// askToken sends the pod's IMDS token request to the agent, retrying while the agent's caches catch up with the pod.
func askToken(t *testing.T, agent *nmi.Agent, ip, resource string) (int, map[string]any) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		req := httptest.NewRequest(http.MethodGet, "/metadata/identity/oauth2/token?api-version=2018-02-01&resource="+url.QueryEscape(resource), nil)
		req.RemoteAddr = ip + ":4000"
		req.Header.Set("Metadata", "true")
		rec := httptest.NewRecorder()
		agent.Handler.ServeHTTP(rec, req)
		if rec.Code == http.StatusInternalServerError && time.Now().Before(deadline) {
			time.Sleep(100 * time.Millisecond) // the pod is not in the agent's cache yet
			continue
		}
		var body map[string]any
		_ = json.Unmarshal(rec.Body.Bytes(), &body)
		return rec.Code, body
	}
}

// Classic mode end to end: the controller assigns the pod's identity to the scale set, the node agent waits for the
// record to be Assigned and gets the token from the node's IMDS, which answers for the identity only because it is on
// that scale set now. The wait is one ARM round trip plus one poll, not upstream's 80-100 s.
func TestStandardModePodGetsTokenOnceAssigned(t *testing.T) {
	ns := newNamespace(t)
	host := scaleSet(t, "pool-std", "std-0")
	if err := cloud.PlaceNode("127.0.0.21", host+"/virtualMachines/0"); err != nil {
		t.Fatal(err)
	}
	const clientID = "00000000-0000-0000-0000-0000000000d1"
	userIdentity(t, ns, "std-id", clientID, "std")
	agent := startAgent(t, "std-0", "127.0.0.21", 60*time.Second, 10*time.Second)
	cloud.SetARMOperationDelay(2 * time.Second) // a slow scale set update, as real ones are
	t.Cleanup(func() { cloud.SetARMOperationDelay(0) })

	imdsBefore := cloud.Count(azurefake.IMDSToken)
	start := time.Now()
	runningPod(t, ns, "app", "std-0", "std", "10.251.0.1")
	status, body := askToken(t, agent, "10.251.0.1", "https://vault.azure.net")
	took := time.Since(start)
	if status != http.StatusOK {
		t.Fatalf("status %d %v", status, body)
	}
	t.Logf("standard mode, 2 s scale-set update: pod created to first token %s", took.Round(10*time.Millisecond))
	if took > 10*time.Second {
		t.Errorf("first token took %s", took)
	}
	if cloud.Count(azurefake.IMDSToken)-imdsBefore < 1 {
		t.Error("the token did not come from the node's IMDS")
	}
	// Another node's scale set does not hold the identity: its IMDS refuses it, which is why the wait matters.
	other := scaleSet(t, "pool-std-other", "std-other-0")
	if err := cloud.PlaceNode("127.0.0.22", other+"/virtualMachines/0"); err != nil {
		t.Fatal(err)
	}
	resp, err := cloud.HTTPClientFrom("127.0.0.22").Get("http://169.254.169.254/metadata/identity/oauth2/token?api-version=2018-02-01&resource=https://vault.azure.net&client_id=" + clientID)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode == http.StatusOK {
		t.Error("IMDS of another scale set issued the identity's token")
	}
}

// An identity the controller may not assign never becomes Assigned: the pod gets upstream's 404 when the wait ends.
func TestStandardModeUnassignableIdentityIs404(t *testing.T) {
	ns := newNamespace(t)
	host := scaleSet(t, "pool-std-denied", "std-denied-0")
	if err := cloud.PlaceNode("127.0.0.23", host+"/virtualMachines/0"); err != nil {
		t.Fatal(err)
	}
	rid := userIdentity(t, ns, "std-denied", "00000000-0000-0000-0000-0000000000d2", "std-denied")
	cloud.DenyAssign(rid)
	agent := startAgent(t, "std-denied-0", "127.0.0.23", 3*time.Second, 10*time.Second)
	runningPod(t, ns, "app", "std-denied-0", "std-denied", "10.251.1.1")
	if status, body := askToken(t, agent, "10.251.1.1", "https://vault.azure.net"); status != http.StatusNotFound {
		t.Fatalf("status %d %v, want 404", status, body)
	}
}

// The migration path: with the default token source (auto), a pod the controller assigned gets its token from IMDS;
// a pod it has no record for (here: one whose identity is a service account federation, on a node of no scale set)
// gets it by federation.
func TestAutoSourceChoosesByRecord(t *testing.T) {
	ns := newNamespace(t)
	const clientID = "00000000-0000-0000-0000-0000000000d3"
	rid := fmt.Sprintf("/subscriptions/%s/resourceGroups/identities/providers/Microsoft.ManagedIdentity/userAssignedIdentities/fed-only", subscription)
	cloud.AddIdentity(azurefake.Identity{ClientID: clientID, ResourceID: rid, TenantID: tenantID})
	cloud.TrustIssuer(testenv.Issuer, env.SigningKey)
	create(t, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "fed"}})
	cloud.AddFederatedCredential(clientID, azurefake.FederatedCredential{Issuer: testenv.Issuer,
		Subject: "system:serviceaccount:" + ns + ":fed", Audiences: []string{"api://AzureADTokenExchange"}})
	create(t, &aadv1.AzureIdentity{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "fed-only"},
		Spec: aadv1.AzureIdentitySpec{ClientID: clientID, ResourceID: rid}})
	create(t, &aadv1.AzureIdentityBinding{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "fed-only"},
		Spec: aadv1.AzureIdentityBindingSpec{AzureIdentity: "fed-only", Selector: "fed-only"}})
	// A node the cloud provider has not described (no providerID): the controller cannot assign on it.
	create(t, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "fed-node"}})
	agent := startAgent(t, "fed-node", "127.0.0.24", 5*time.Second, time.Second)
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "app", Labels: map[string]string{aadv1.PodLabel: "fed-only"}},
		Spec: corev1.PodSpec{NodeName: "fed-node", ServiceAccountName: "fed", Containers: []corev1.Container{{Name: "c", Image: "c"}}}}
	create(t, pod)
	pod.Status = corev1.PodStatus{Phase: corev1.PodRunning, PodIP: "10.251.2.1", PodIPs: []corev1.PodIP{{IP: "10.251.2.1"}}}
	if err := k8s.Status().Update(context.Background(), pod); err != nil {
		t.Fatal(err)
	}
	entraBefore := cloud.Count(azurefake.EntraToken)
	if status, body := askToken(t, agent, "10.251.2.1", "https://vault.azure.net"); status != http.StatusOK {
		t.Fatalf("status %d %v", status, body)
	}
	if cloud.Count(azurefake.EntraToken)-entraBefore != 1 {
		t.Error("the token did not come by federation")
	}
}

// Service principal identities need no assignment: in standard mode the agent serves them from their secret at once,
// and the controller writes no record for them.
func TestStandardModeServicePrincipalNeedsNoAssignment(t *testing.T) {
	ns := newNamespace(t)
	scaleSet(t, "pool-std-sp", "std-sp-0")
	const clientID = "00000000-0000-0000-0000-0000000000d4"
	cloud.AddIdentity(azurefake.Identity{ClientID: clientID, TenantID: tenantID})
	cloud.AddClientSecret(clientID, "sp-secret")
	create(t, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "sp"}, Data: map[string][]byte{"secret": []byte("sp-secret")}})
	create(t, &aadv1.AzureIdentity{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "sp"}, Spec: aadv1.AzureIdentitySpec{
		Type: aadv1.ServicePrincipal, ClientID: clientID, TenantID: tenantID, ClientPassword: corev1.SecretReference{Name: "sp"}}})
	create(t, &aadv1.AzureIdentityBinding{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "sp"},
		Spec: aadv1.AzureIdentityBindingSpec{AzureIdentity: "sp", Selector: "std-sp"}})
	agent := startAgent(t, "std-sp-0", "127.0.0.25", 30*time.Second, 10*time.Second)
	start := time.Now()
	runningPod(t, ns, "app", "std-sp-0", "std-sp", "10.251.3.1")
	if status, body := askToken(t, agent, "10.251.3.1", "https://vault.azure.net"); status != http.StatusOK {
		t.Fatalf("status %d %v", status, body)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("a service principal waited %s", took)
	}
	if r := record(mic.DefaultNamespace, "app", ns, "sp"); r != nil {
		t.Errorf("a record was written for a service principal: %s", r.Name)
	}
}
