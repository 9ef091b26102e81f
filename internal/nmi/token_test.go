/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

package nmi_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	aadv1 "github.com/acrpull/acrpull/api/aadpodidentity/v1"
	"github.com/acrpull/acrpull/internal/harness/azurefake"
	"github.com/acrpull/acrpull/internal/harness/azurefake/certtest"
	"github.com/acrpull/acrpull/internal/nmi"
)

// The seed's example, filled in: an AzureIdentity for a user-assigned identity and a binding with selector "web".
// The pod gets a token for the identity through per-pod federation; the fake cloud checked the pod-bound
// service-account token against the identity's federated credential.
func TestLabelledPodGetsItsIdentityThroughFederation(t *testing.T) {
	ns := newNamespace(t)
	const clientID = "00000000-0000-0000-0000-0000000000f1"
	cloud.AddIdentity(azurefake.Identity{ClientID: clientID, TenantID: tenantID})
	federatedAccount(t, ns, "web-sa", clientID)
	createAndSync(t,
		azureIdentity(ns, "web-identity", aadv1.AzureIdentitySpec{Type: aadv1.UserAssignedMSI, ClientID: clientID,
			ResourceID: "/subscriptions/s1/resourcegroups/rg/providers/Microsoft.ManagedIdentity/userAssignedIdentities/web-identity"}),
		binding(ns, "web-binding", "web-identity", "web"))
	pod := runningPod(t, ns, "web", "web-sa", "web", nodeName, "10.250.1.1")

	before := cloud.Count(azurefake.EntraToken)
	tok := decodeToken(t, get(t, "10.250.1.1:40000", tokenPath(vault), nil))
	c := claims(t, tok.AccessToken)
	if c["aud"] != vault || c["tid"] != tenantID || (c["appid"] != clientID && c["azp"] != clientID) {
		t.Errorf("token claims aud=%v tid=%v appid=%v azp=%v, want %s, %s, %s", c["aud"], c["tid"], c["appid"], c["azp"], vault, tenantID, clientID)
	}
	if tok.Resource != vault || tok.TokenType != "Bearer" {
		t.Errorf("resource %q token_type %q", tok.Resource, tok.TokenType)
	}
	exp, err := strconv.ParseInt(tok.ExpiresOn, 10, 64)
	in, err2 := strconv.Atoi(tok.ExpiresIn)
	if err != nil || err2 != nil || time.Until(time.Unix(exp, 0)) < 50*time.Minute || in < 3000 {
		t.Errorf("expires_on %q expires_in %q: want about an hour ahead", tok.ExpiresOn, tok.ExpiresIn)
	}
	if got := cloud.Count(azurefake.EntraToken) - before; got != 1 {
		t.Errorf("Entra token calls = %d, want 1", got)
	}
	// The same pod naming its identity by client ID or resource ID gets it too; a client ID it is not bound to, not.
	if r := get(t, "10.250.1.1:40000", tokenPath(vault, "client_id="+strings.ToUpper(clientID)), nil); r.status != http.StatusOK {
		t.Errorf("by client_id: %d %s", r.status, r.body)
	}
	if r := get(t, "10.250.1.1:40000", tokenPath(vault, "mi_res_id=/subscriptions/s1/resourcegroups/rg/providers/Microsoft.ManagedIdentity/userAssignedIdentities/web-identity"), nil); r.status != http.StatusOK {
		t.Errorf("by mi_res_id: %d %s", r.status, r.body)
	}
	if r := get(t, "10.250.1.1:40000", tokenPath(vault, "client_id=someone-else"), nil); r.status != http.StatusNotFound {
		t.Errorf("unbound client_id: %d %s, want 404", r.status, r.body)
	}
	_ = pod
}

// Every refusal upstream defines, with upstream's status code.
func TestRefusals(t *testing.T) {
	ns, other := newNamespace(t), newNamespace(t)
	const clientID = "00000000-0000-0000-0000-0000000000f2"
	cloud.AddIdentity(azurefake.Identity{ClientID: clientID, TenantID: tenantID})
	federatedAccount(t, ns, "app", clientID)
	namespaced := azureIdentity(ns, "ns-only", aadv1.AzureIdentitySpec{ClientID: clientID})
	namespaced.Annotations = map[string]string{aadv1.BehaviorAnnotation: aadv1.BehaviorNamespaced}
	createAndSync(t, azureIdentity(ns, "id", aadv1.AzureIdentitySpec{ClientID: clientID}), binding(ns, "b", "id", "app"),
		namespaced, binding(ns, "b-ns", "ns-only", "ns-app"))

	runningPod(t, ns, "labelled", "app", "app", nodeName, "10.250.2.1")
	runningPod(t, ns, "unlabelled", "app", "", nodeName, "10.250.2.2")
	runningPod(t, other, "elsewhere", "default", "ns-app", nodeName, "10.250.2.3")
	runningPod(t, ns, "other-node", "app", "app", "node-b", "10.250.2.4")
	done := runningPod(t, ns, "finished", "app", "app", nodeName, "10.250.2.5")
	done.Status.Phase = corev1.PodSucceeded
	if err := k8s.Status().Update(context.Background(), done); err != nil {
		t.Fatal(err)
	}
	waitForCache(t, done)
	hostNet := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "hostnet", Labels: map[string]string{aadv1.PodLabel: "app"}},
		Spec: corev1.PodSpec{NodeName: nodeName, HostNetwork: true, ServiceAccountName: "app", Containers: []corev1.Container{{Name: "c", Image: "c"}}}}
	create(t, hostNet)
	hostNet.Status = corev1.PodStatus{Phase: corev1.PodRunning, PodIP: "10.250.2.6", PodIPs: []corev1.PodIP{{IP: "10.250.2.6"}}}
	if err := k8s.Status().Update(context.Background(), hostNet); err != nil {
		t.Fatal(err)
	}
	waitForCache(t, hostNet)

	for _, tc := range []struct {
		name    string
		remote  string
		path    string
		headers map[string]string
		want    int
	}{
		{"labelled pod (control)", "10.250.2.1:1", tokenPath(vault), nil, http.StatusOK},
		{"missing Metadata header", "10.250.2.1:1", tokenPath(vault), map[string]string{"Metadata": ""}, http.StatusBadRequest},
		{"Metadata header not true", "10.250.2.1:1", tokenPath(vault), map[string]string{"Metadata": "false"}, http.StatusBadRequest},
		{"no resource", "10.250.2.1:1", "/metadata/identity/oauth2/token?api-version=2018-02-01", nil, http.StatusBadRequest},
		{"path case does not matter", "10.250.2.1:1", "/METADATA/Identity/OAuth2/Token?resource=" + vault, nil, http.StatusOK},
		{"malformed token path", "10.250.2.1:1", "/metadata/identity/foo/oauth2/bar/token?resource=" + vault, nil, http.StatusBadRequest},
		{"unlabelled pod", "10.250.2.2:1", tokenPath(vault), nil, http.StatusNotFound},
		{"bound in another namespace, identity namespaced", "10.250.2.3:1", tokenPath(vault), nil, http.StatusNotFound},
		{"spoofed source address (no pod)", "10.250.2.99:1", tokenPath(vault), nil, http.StatusInternalServerError},
		{"pod of another node", "10.250.2.4:1", tokenPath(vault), nil, http.StatusInternalServerError},
		{"stale address of a finished pod", "10.250.2.5:1", tokenPath(vault), nil, http.StatusInternalServerError},
		{"host network pod is never identified by address", "10.250.2.6:1", tokenPath(vault), nil, http.StatusInternalServerError},
		{"instance metadata blocked", "10.250.2.1:1", "/metadata/instance?api-version=2021-02-01", nil, http.StatusForbidden},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := get(t, tc.remote, tc.path, tc.headers)
			if r.status != tc.want {
				t.Fatalf("status %d (%s), want %d", r.status, r.body, tc.want)
			}
			if r.status != http.StatusOK && strings.Contains(string(r.body), "eyJ") {
				t.Fatalf("a refusal carries something token-like: %s", r.body)
			}
		})
	}

	// The pod at an address the cache still lists is gone from the apiserver: deleted right now, before the cache
	// hears of it, it must get nothing.
	gone := runningPod(t, ns, "gone", "app", "app", nodeName, "10.250.2.7")
	if err := k8s.Delete(context.Background(), gone, client.GracePeriodSeconds(0)); err != nil {
		t.Fatal(err)
	}
	if r := get(t, "10.250.2.7:1", tokenPath(vault), nil); r.status != http.StatusInternalServerError {
		t.Errorf("deleted pod's address: %d %s, want 500", r.status, r.body)
	}
}

// The cache can be stale: a pod deleted and recreated under the same name gets a new UID (and here a new address),
// while the agent's cache may still map the old address to the name. The locator confirms against the apiserver.
func TestLocatorRefusesAPodWhoseUIDChanged(t *testing.T) {
	ns := newNamespace(t)
	old := runningPod(t, ns, "reborn", "default", "app", nodeName, "10.250.3.1")
	stale := old.DeepCopy()
	if err := k8s.Delete(context.Background(), old, client.GracePeriodSeconds(0)); err != nil {
		t.Fatal(err)
	}
	runningPod(t, ns, "reborn", "default", "app", nodeName, "10.250.3.2")

	locator := &nmi.PodLocator{Cache: staleCache{pods: []corev1.Pod{*stale}}, Live: k8s, Node: nodeName, Attempts: 1}
	if pod, err := locator.ByIP(context.Background(), "10.250.3.1"); err == nil {
		t.Fatalf("stale address resolved to pod %s/%s (uid %s)", pod.Namespace, pod.Name, pod.UID)
	}
	// The control: a cache entry that is current resolves.
	current := &corev1.Pod{}
	if err := k8s.Get(context.Background(), client.ObjectKeyFromObject(old), current); err != nil {
		t.Fatal(err)
	}
	locator.Cache = staleCache{pods: []corev1.Pod{*current}}
	if pod, err := locator.ByIP(context.Background(), "10.250.3.2"); err != nil || pod.UID != current.UID {
		t.Fatalf("current pod not resolved: %v", err)
	}
}

// staleCache answers every list with fixed pods, as a cache that has not caught up would.
type staleCache struct{ pods []corev1.Pod }

func (s staleCache) Get(context.Context, client.ObjectKey, client.Object, ...client.GetOption) error {
	return fmt.Errorf("not used")
}

func (s staleCache) List(_ context.Context, list client.ObjectList, _ ...client.ListOption) error {
	list.(*corev1.PodList).Items = s.pods
	return nil
}

// A hundred requests from ten pods of one service account for one identity and resource cost one Entra call.
func TestManyPodsShareOneEntraCall(t *testing.T) {
	ns := newNamespace(t)
	const clientID = "00000000-0000-0000-0000-0000000000f3"
	cloud.AddIdentity(azurefake.Identity{ClientID: clientID, TenantID: tenantID})
	federatedAccount(t, ns, "workers", clientID)
	createAndSync(t, azureIdentity(ns, "shared", aadv1.AzureIdentitySpec{ClientID: clientID}), binding(ns, "b", "shared", "worker"))
	var ips []string
	for i := range 10 {
		ip := fmt.Sprintf("10.250.4.%d", i+1)
		runningPod(t, ns, fmt.Sprintf("worker-%d", i), "workers", "worker", nodeName, ip)
		ips = append(ips, ip)
	}
	const resource = "https://storage.azure.com/"
	before := cloud.Count(azurefake.EntraToken)
	var wg sync.WaitGroup
	statuses := make(chan int, 100)
	for i := range 100 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			statuses <- get(t, ips[i%10]+":5000", tokenPath(resource), nil).status
		}()
	}
	wg.Wait()
	close(statuses)
	for s := range statuses {
		if s != http.StatusOK {
			t.Fatalf("a request got %d", s)
		}
	}
	if got := cloud.Count(azurefake.EntraToken) - before; got != 1 {
		t.Errorf("Entra token calls for 100 requests = %d, want 1", got)
	}
}

// Type 1: a service principal's secret from the Secret the identity names; with auxiliary tenants the pod gets an
// array, the primary tenant's token first.
func TestServicePrincipalWithSecretAndAuxiliaryTenants(t *testing.T) {
	ns := newNamespace(t)
	const clientID = "00000000-0000-0000-0000-0000000000f4"
	aux := []string{"72f988bf-0000-0000-0000-0000000000a1", "72f988bf-0000-0000-0000-0000000000a2"}
	cloud.AddIdentity(azurefake.Identity{ClientID: clientID, TenantID: tenantID, AdditionalTenants: aux})
	cloud.AddClientSecret(clientID, "s3cret-value")
	create(t, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "sp"}, Data: map[string][]byte{"clientsecret": []byte("s3cret-value")}})
	createAndSync(t,
		azureIdentity(ns, "sp", aadv1.AzureIdentitySpec{Type: aadv1.ServicePrincipal, ClientID: clientID, TenantID: tenantID,
			ClientPassword: corev1.SecretReference{Name: "sp", Namespace: ns}}),
		azureIdentity(ns, "sp-multi", aadv1.AzureIdentitySpec{Type: aadv1.ServicePrincipal, ClientID: clientID, TenantID: tenantID,
			ClientPassword: corev1.SecretReference{Name: "sp"}, AuxiliaryTenantIDs: aux}),
		binding(ns, "single", "sp", "single"), binding(ns, "multi", "sp-multi", "multi"))
	runningPod(t, ns, "single", "default", "single", nodeName, "10.250.5.1")
	runningPod(t, ns, "multi", "default", "multi", nodeName, "10.250.5.2")

	tok := decodeToken(t, get(t, "10.250.5.1:1", tokenPath(vault), nil))
	if c := claims(t, tok.AccessToken); c["tid"] != tenantID {
		t.Errorf("single-tenant token tid %v", c["tid"])
	}
	r := get(t, "10.250.5.2:1", tokenPath(vault), nil)
	if r.status != http.StatusOK {
		t.Fatalf("multi-tenant: %d %s", r.status, r.body)
	}
	var toks []imdsToken
	if err := json.Unmarshal(r.body, &toks); err != nil {
		t.Fatalf("multi-tenant answer is not an array: %v", err)
	}
	want := append([]string{tenantID}, aux...)
	if len(toks) != len(want) {
		t.Fatalf("%d tokens, want %d", len(toks), len(want))
	}
	for i, tk := range toks {
		if c := claims(t, tk.AccessToken); c["tid"] != want[i] {
			t.Errorf("token %d tid %v, want %s", i, c["tid"], want[i])
		}
	}
	// A wrong secret is Azure's refusal: 403, and the secret appears nowhere.
	create(t, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "wrong"}, Data: map[string][]byte{"x": []byte("not-the-secret")}})
	createAndSync(t, azureIdentity(ns, "sp-wrong", aadv1.AzureIdentitySpec{Type: aadv1.ServicePrincipal, ClientID: clientID, TenantID: tenantID,
		ClientPassword: corev1.SecretReference{Name: "wrong"}}), binding(ns, "wrong", "sp-wrong", "wrong"))
	runningPod(t, ns, "wrong", "default", "wrong", nodeName, "10.250.5.3")
	r = get(t, "10.250.5.3:1", tokenPath(vault), nil)
	if r.status != http.StatusForbidden || strings.Contains(string(r.body), "not-the-secret") {
		t.Errorf("wrong secret: %d %s, want 403 without the secret", r.status, r.body)
	}
}

// Type 2: a service principal's PKCS#12 certificate and its password from the Secret.
func TestServicePrincipalWithCertificate(t *testing.T) {
	ns := newNamespace(t)
	const clientID = "00000000-0000-0000-0000-0000000000f5"
	cert, err := certtest.New("sp-cert")
	if err != nil {
		t.Fatal(err)
	}
	p12, err := cert.PKCS12("p12-password")
	if err != nil {
		t.Fatal(err)
	}
	cloud.AddIdentity(azurefake.Identity{ClientID: clientID, TenantID: tenantID})
	cloud.AddClientCertificate(clientID, cert.Cert)
	create(t, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "cert"},
		Data: map[string][]byte{"certificate": p12, "password": []byte("p12-password")}})
	createAndSync(t, azureIdentity(ns, "sp-cert", aadv1.AzureIdentitySpec{Type: aadv1.ServicePrincipalCertificate, ClientID: clientID,
		TenantID: tenantID, ClientPassword: corev1.SecretReference{Name: "cert", Namespace: ns}}), binding(ns, "b", "sp-cert", "cert"))
	runningPod(t, ns, "cert", "default", "cert", nodeName, "10.250.6.1")
	tok := decodeToken(t, get(t, "10.250.6.1:1", tokenPath(vault), nil))
	if c := claims(t, tok.AccessToken); c["aud"] != vault || (c["appid"] != clientID && c["azp"] != clientID) {
		t.Errorf("certificate token claims %v", c)
	}
}

// Pods an AzurePodIdentityException covers are served by the node's own IMDS, for whichever identity they name.
func TestExceptionPodsGoToTheNodesIMDS(t *testing.T) {
	ns := newNamespace(t)
	const clientID = "00000000-0000-0000-0000-0000000000f6"
	cloud.AddIdentity(azurefake.Identity{ClientID: clientID, TenantID: tenantID, AssignedToVM: true})
	createAndSync(t, &aadv1.AzurePodIdentityException{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "system"},
		Spec: aadv1.AzurePodIdentityExceptionSpec{PodLabels: map[string]string{"component": "Controller"}}})
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "ctrl", Labels: map[string]string{"component": "controller"}},
		Spec: corev1.PodSpec{NodeName: nodeName, Containers: []corev1.Container{{Name: "c", Image: "c"}}}}
	create(t, pod)
	pod.Status = corev1.PodStatus{Phase: corev1.PodRunning, PodIP: "10.250.7.1", PodIPs: []corev1.PodIP{{IP: "10.250.7.1"}}}
	if err := k8s.Status().Update(context.Background(), pod); err != nil {
		t.Fatal(err)
	}
	waitForCache(t, pod)
	before, beforeEntra := cloud.Count(azurefake.IMDSToken), cloud.Count(azurefake.EntraToken)
	tok := decodeToken(t, get(t, "10.250.7.1:1", tokenPath("https://management.azure.com/", "client_id="+clientID), nil))
	if c := claims(t, tok.AccessToken); c["appid"] != clientID && c["azp"] != clientID {
		t.Errorf("exception token is not the node identity's: %v", c)
	}
	if cloud.Count(azurefake.IMDSToken)-before != 1 || cloud.Count(azurefake.EntraToken) != beforeEntra {
		t.Errorf("IMDS calls %d, Entra calls %d: want 1 and 0", cloud.Count(azurefake.IMDSToken)-before, cloud.Count(azurefake.EntraToken)-beforeEntra)
	}
}

// The imds token source, per identity by annotation: identities assigned to the node by hand (managed mode).
func TestIMDSSourceForHandAssignedIdentity(t *testing.T) {
	ns := newNamespace(t)
	const clientID = "00000000-0000-0000-0000-0000000000f7"
	cloud.AddIdentity(azurefake.Identity{ClientID: clientID, TenantID: tenantID, AssignedToVM: true})
	id := azureIdentity(ns, "assigned", aadv1.AzureIdentitySpec{ClientID: clientID})
	id.Annotations = map[string]string{nmi.TokenSourceAnnotation: nmi.SourceIMDS}
	createAndSync(t, id, binding(ns, "b", "assigned", "legacy"))
	runningPod(t, ns, "legacy", "default", "legacy", nodeName, "10.250.8.1")
	before := cloud.Count(azurefake.IMDSToken)
	tok := decodeToken(t, get(t, "10.250.8.1:1", tokenPath(vault), nil))
	if c := claims(t, tok.AccessToken); c["appid"] != clientID && c["azp"] != clientID {
		t.Errorf("claims %v", c)
	}
	if cloud.Count(azurefake.IMDSToken)-before != 1 {
		t.Errorf("IMDS calls %d, want 1", cloud.Count(azurefake.IMDSToken)-before)
	}
}

// An identity that does not trust the pod's service account: Entra ID refuses, the pod gets 403, and the binding
// gets a Warning Event that says why.
func TestUnfederatedAccountIsRefusedWithAnEvent(t *testing.T) {
	ns := newNamespace(t)
	const clientID = "00000000-0000-0000-0000-0000000000f8"
	cloud.AddIdentity(azurefake.Identity{ClientID: clientID, TenantID: tenantID})
	b := binding(ns, "b", "id", "nofed")
	createAndSync(t, azureIdentity(ns, "id", aadv1.AzureIdentitySpec{ClientID: clientID}), b)
	runningPod(t, ns, "nofed", "default", "nofed", nodeName, "10.250.9.1")
	if r := get(t, "10.250.9.1:1", tokenPath(vault), nil); r.status != http.StatusForbidden {
		t.Fatalf("status %d %s, want 403", r.status, r.body)
	}
	eventually(t, "a Warning event on the binding", func() bool {
		var evs eventsv1.EventList
		if err := k8s.List(context.Background(), &evs, client.InNamespace(ns)); err != nil {
			return false
		}
		for _, e := range evs.Items {
			if e.Regarding.Name == "b" && e.Regarding.Kind == "AzureIdentityBinding" && e.Type == corev1.EventTypeWarning &&
				strings.Contains(e.Note, "AADSTS70021") {
				return true
			}
		}
		return false
	})
}

// /host/token serves node-local callers for a named pod only with a service-account token bound to that pod.
func TestHostTokenRequiresProofOfThePod(t *testing.T) {
	ns := newNamespace(t)
	const clientID = "00000000-0000-0000-0000-0000000000f9"
	cloud.AddIdentity(azurefake.Identity{ClientID: clientID, TenantID: tenantID})
	federatedAccount(t, ns, "csi", clientID)
	createAndSync(t, azureIdentity(ns, "id", aadv1.AzureIdentitySpec{ClientID: clientID}), binding(ns, "b", "id", "csi"))
	pod := runningPod(t, ns, "mounts-secrets", "csi", "csi", nodeName, "10.250.10.1")
	other := runningPod(t, ns, "other", "csi", "", nodeName, "10.250.10.2")

	headers := map[string]string{"podns": ns, "podname": pod.Name, "Metadata": ""}
	path := "/host/token/?resource=" + vault
	if r := get(t, "127.0.0.1:9", path, headers); r.status != http.StatusUnauthorized {
		t.Errorf("no bearer token: %d %s, want 401", r.status, r.body)
	}
	headers["Authorization"] = "Bearer not-a-token"
	if r := get(t, "127.0.0.1:9", path, headers); r.status != http.StatusUnauthorized {
		t.Errorf("garbage bearer token: %d %s, want 401", r.status, r.body)
	}
	headers["Authorization"] = "Bearer " + podToken(t, other, "csi")
	if r := get(t, "127.0.0.1:9", path, headers); r.status != http.StatusForbidden {
		t.Errorf("token of another pod: %d %s, want 403", r.status, r.body)
	}
	headers["Authorization"] = "Bearer " + podToken(t, pod, "csi")
	if r := get(t, "10.250.10.1:9", path, headers); r.status != http.StatusInternalServerError {
		t.Errorf("not from loopback: %d %s, want 500 as upstream", r.status, r.body)
	}
	if r := get(t, "127.0.0.1:9", "/host/token/?resource="+vault, map[string]string{"Metadata": ""}); r.status != http.StatusBadRequest {
		t.Errorf("no podns/podname: %d %s, want 400", r.status, r.body)
	}
	r := get(t, "127.0.0.1:9", path, headers)
	if r.status != http.StatusOK {
		t.Fatalf("proven caller: %d %s", r.status, r.body)
	}
	var body struct {
		Token    imdsToken `json:"token"`
		ClientID string    `json:"clientid"`
	}
	if err := json.Unmarshal(r.body, &body); err != nil || body.ClientID != clientID || body.Token.AccessToken == "" {
		t.Fatalf("body %s: %v", r.body, err)
	}
}

// podToken is a token of account bound to pod, as kubelet or a CSI driver's token request gets one.
func podToken(t *testing.T, pod *corev1.Pod, account string) string {
	t.Helper()
	tr := &authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{
		BoundObjectRef: &authenticationv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: pod.Name, UID: pod.UID},
	}}
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: pod.Namespace, Name: account}}
	if err := k8s.SubResource("token").Create(context.Background(), sa, tr); err != nil {
		t.Fatal(err)
	}
	return tr.Status.Token
}

// With the agent's namespaced mode (--forceNamespaced), a binding in one namespace no longer grants its identity to
// a pod in another, even when the identity carries no annotation; a pod in the binding's own namespace still gets it.
func TestForceNamespacedMode(t *testing.T) {
	opts := agentOptions()
	opts.NodeName, opts.Config.ForceNamespaced, opts.Config.BlockInstanceMetadata = "namespaced-node", true, false
	nsAgent, err := nmi.New(env.Config, opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan error, 1)
	go func() { stopped <- nsAgent.Start(ctx) }()
	defer func() {
		cancel()
		if err := <-stopped; err != nil {
			t.Errorf("agent: %v", err)
		}
	}()
	if !nsAgent.GetCache().WaitForCacheSync(ctx) {
		t.Fatal("caches did not sync")
	}

	ns, other := newNamespace(t), newNamespace(t)
	const clientID = "00000000-0000-0000-0000-0000000000fa"
	cloud.AddIdentity(azurefake.Identity{ClientID: clientID, TenantID: tenantID})
	federatedAccount(t, ns, "default-fed", clientID)
	createAndSync(t, azureIdentity(ns, "plain", aadv1.AzureIdentitySpec{ClientID: clientID}), binding(ns, "b", "plain", "forced"))
	runningPod(t, ns, "home", "default-fed", "forced", "namespaced-node", "10.250.11.1")
	runningPod(t, other, "away", "default", "forced", "namespaced-node", "10.250.11.2")

	ask := func(remote string) response {
		var r response
		deadline := time.Now().Add(10 * time.Second)
		for {
			req := httptestRequest(remote, tokenPath(vault))
			rec := httptest.NewRecorder()
			nsAgent.Handler.ServeHTTP(rec, req)
			r = response{status: rec.Code, body: rec.Body.Bytes()}
			// The second agent's pod cache may lag the first one's.
			if r.status != http.StatusInternalServerError || time.Now().After(deadline) {
				return r
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	// This agent does not block /metadata/instance: it passes through to the node's IMDS, the Metadata check first.
	passthrough := func(header bool) response {
		req := httptest.NewRequest(http.MethodGet, "/metadata/instance?api-version=2021-02-01", nil)
		req.RemoteAddr = "10.250.11.1:1"
		if header {
			req.Header.Set("Metadata", "true")
		}
		rec := httptest.NewRecorder()
		nsAgent.Handler.ServeHTTP(rec, req)
		return response{status: rec.Code, body: rec.Body.Bytes()}
	}
	if r := passthrough(true); r.status != http.StatusOK || !strings.Contains(string(r.body), `"vmId"`) {
		t.Errorf("/metadata/instance passthrough: %d %s, want the node IMDS's answer", r.status, r.body)
	}
	if r := passthrough(false); r.status != http.StatusBadRequest {
		t.Errorf("/metadata/instance without Metadata header: %d, want 400", r.status)
	}
	if r := ask("10.250.11.1:1"); r.status != http.StatusOK {
		t.Errorf("pod in the binding's namespace: %d %s, want 200", r.status, r.body)
	}
	if r := ask("10.250.11.2:1"); r.status != http.StatusNotFound {
		t.Errorf("pod in another namespace: %d %s, want 404", r.status, r.body)
	}
}
