/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

package nmi_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	clocktesting "k8s.io/utils/clock/testing"
	"sigs.k8s.io/controller-runtime/pkg/client"

	aadv1 "github.com/acrpull/acrpull/api/aadpodidentity/v1"
	"github.com/acrpull/acrpull/internal/azauth"
	"github.com/acrpull/acrpull/internal/harness/azurefake"
	"github.com/acrpull/acrpull/internal/nmi"
	"github.com/acrpull/acrpull/internal/tokencache"
)

// secretGetCounter is the agent's apiserver client, counting the Secrets it reads.
type secretGetCounter struct {
	client.Client
	gets atomic.Int64
}

func (c *secretGetCounter) Get(ctx context.Context, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
	if _, ok := obj.(*corev1.Secret); ok {
		c.gets.Add(1)
	}
	return c.Client.Get(ctx, key, obj, opts...)
}

// issuer is the agent's token issuer as nmi.New builds it, on the real apiserver and the fake cloud, with kube as its
// apiserver client.
func issuer(kube client.Client, authorities *azauth.AuthorityHosts, crossNamespace bool) *nmi.Issuer {
	clk := clocktesting.NewFakePassiveClock(time.Now())
	return &nmi.Issuer{
		Azure: azauth.NewClient(azauth.Options{HTTPClient: cloud.HTTPClient(), CallTimeout: 5 * time.Second}),
		Cache: tokencache.New(clk, nil), Clock: clk, Kube: kube, Type0Source: nmi.SourceFederation,
		Audience: "api://AzureADTokenExchange", DefaultTenantID: tenantID, Cloud: azauth.PublicCloud,
		AuthorityHosts: authorities, AllowCrossNamespaceSecrets: crossNamespace, NodeName: nodeName,
	}
}

// tokenFailedEvents lists the agent's TokenFailed Events about a binding.
func tokenFailedEvents(t *testing.T, ns, bindingName string) []string {
	t.Helper()
	var list eventsv1.EventList
	if err := k8s.List(context.Background(), &list, client.InNamespace(ns)); err != nil {
		t.Fatal(err)
	}
	var notes []string
	for _, e := range list.Items {
		if e.Regarding.Name == bindingName && e.Reason == "TokenFailed" && e.Type == corev1.EventTypeWarning {
			notes = append(notes, e.Note)
		}
	}
	return notes
}

// Attack: a tenant who may write AzureIdentities, bindings and pods in its own namespace names another team's
// service principal Secret in spec.clientPassword.namespace. The agent, which may get Secrets in any namespace, would
// read it and hand the tenant's pod that team's tokens. Defence: the agent refuses (403, an Event) without reading
// the Secret; --allow-cross-namespace-secrets restores upstream's behaviour for clusters that keep secrets centrally.
func TestCrossNamespaceSecretIsNotRead(t *testing.T) {
	victim, tenant := newNamespace(t), newNamespace(t)
	const clientID = "00000000-0000-0000-0000-0000000000c1"
	const secretValue = "victim-team-s3cret"
	cloud.AddIdentity(azurefake.Identity{ClientID: clientID, TenantID: tenantID})
	cloud.AddClientSecret(clientID, secretValue)
	create(t, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: victim, Name: "team-sp"},
		Data: map[string][]byte{"clientsecret": []byte(secretValue)}})

	for name, spec := range map[string]aadv1.AzureIdentitySpec{
		"secret": {Type: aadv1.ServicePrincipal, ClientID: clientID, TenantID: tenantID,
			ClientPassword: corev1.SecretReference{Name: "team-sp", Namespace: victim}},
		"cert": {Type: aadv1.ServicePrincipalCertificate, ClientID: clientID, TenantID: tenantID,
			ClientPassword: corev1.SecretReference{Name: "team-sp", Namespace: victim}},
	} {
		createAndSync(t, azureIdentity(tenant, "stolen-"+name, spec), binding(tenant, "stolen-"+name, "stolen-"+name, "stolen-"+name))
	}
	before := cloud.Count(azurefake.EntraToken)
	pod := runningPod(t, tenant, "thief", "default", "stolen-secret", nodeName, "10.250.40.1")

	// Through the agent's handler: 403 naming the value that allows it, an Event on the binding, no token.
	r := get(t, "10.250.40.1:1", tokenPath(vault), nil)
	if r.status != http.StatusForbidden || !strings.Contains(string(r.body), "--allow-cross-namespace-secrets") ||
		strings.Contains(string(r.body), secretValue) {
		t.Fatalf("cross-namespace secret: %d %s; want 403 naming --allow-cross-namespace-secrets", r.status, r.body)
	}
	if got := cloud.Count(azurefake.EntraToken) - before; got != 0 {
		t.Errorf("%d token requests reached Entra ID with another namespace's secret", got)
	}
	eventually(t, "a TokenFailed Event on the binding", func() bool {
		for _, note := range tokenFailedEvents(t, tenant, "stolen-secret") {
			if strings.Contains(note, "outside the identity's namespace") && !strings.Contains(note, secretValue) {
				return true
			}
		}
		return false
	})

	// The issuer never GETs the Secret, whichever type names it.
	counted := &secretGetCounter{Client: k8s}
	closed := issuer(counted, nil, false)
	for _, name := range []string{"stolen-secret", "stolen-cert"} {
		var id aadv1.AzureIdentity
		if err := k8s.Get(context.Background(), client.ObjectKey{Namespace: tenant, Name: name}, &id); err != nil {
			t.Fatal(err)
		}
		if _, err := closed.Tokens(context.Background(), pod, &id, vault); err == nil || !strings.Contains(err.Error(), "podIdentity.allowCrossNamespaceSecrets") {
			t.Errorf("%s: %v, want a refusal naming podIdentity.allowCrossNamespaceSecrets", name, err)
		}
	}
	if n := counted.gets.Load(); n != 0 {
		t.Errorf("the issuer read %d Secrets for identities naming another namespace", n)
	}

	// With --allow-cross-namespace-secrets, upstream's behaviour: the Secret is read and the token issued.
	var id aadv1.AzureIdentity
	if err := k8s.Get(context.Background(), client.ObjectKey{Namespace: tenant, Name: "stolen-secret"}, &id); err != nil {
		t.Fatal(err)
	}
	toks, err := issuer(counted, nil, true).Tokens(context.Background(), pod, &id, vault)
	if err != nil || len(toks) != 1 {
		t.Fatalf("with cross-namespace secrets allowed: %d tokens, %v", len(toks), err)
	}
	if n := counted.gets.Load(); n != 1 {
		t.Errorf("with cross-namespace secrets allowed the issuer read %d Secrets, want 1", n)
	}
}

// Attack: a tenant writes an AzureIdentity (its own secret, or a federated one) whose spec.adEndpoint is a host it
// controls; the agent would post the client secret, or the pod-bound service-account token that the real Entra ID
// accepts, there. Defence: only the known clouds' authorities, --authority-host's and --allowed-authority-hosts'.
func TestIdentityAuthorityHostMustBeAllowed(t *testing.T) {
	ns := newNamespace(t)
	const attacker = "login.attacker.example"
	// The fake serves the attacker's host like an authority, so a request that got through would succeed.
	cloud.AddAuthorityHost(attacker)
	const clientID, federatedID = "00000000-0000-0000-0000-0000000000c2", "00000000-0000-0000-0000-0000000000c3"
	cloud.AddIdentity(azurefake.Identity{ClientID: clientID, TenantID: tenantID})
	cloud.AddClientSecret(clientID, "tenant-own-secret")
	cloud.AddIdentity(azurefake.Identity{ClientID: federatedID, TenantID: tenantID})
	federatedAccount(t, ns, "federated", federatedID)
	create(t, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "own"},
		Data: map[string][]byte{"clientsecret": []byte("tenant-own-secret")}})
	// Spellings of the attacker's host, each for a client-secret identity and a federated one.
	authorities := []string{"https://" + attacker + "/", "https://LOGIN.attacker.example:443", "https://login.microsoftonline.com@" + attacker + "/"}
	for i, authority := range authorities {
		for j, spec := range []aadv1.AzureIdentitySpec{
			{Type: aadv1.ServicePrincipal, ClientID: clientID, TenantID: tenantID, ClientPassword: corev1.SecretReference{Name: "own"}, ADEndpoint: authority},
			{ClientID: federatedID, TenantID: tenantID, ADEndpoint: authority},
		} {
			name := fmt.Sprintf("evil-%d-%d", i, j)
			createAndSync(t, azureIdentity(ns, name, spec), binding(ns, name, name, name))
			addr := fmt.Sprintf("10.250.41.%d", 10*i+j+1)
			runningPod(t, ns, name, "federated", name, nodeName, addr)
			r := get(t, addr+":1", tokenPath(vault), nil)
			if r.status != http.StatusForbidden || !strings.Contains(string(r.body), "authority host not allowed") {
				t.Errorf("%s (adEndpoint %s): %d %s; want 403, authority host not allowed", name, authority, r.status, r.body)
			}
		}
	}
	if n := cloud.HostRequests(attacker); n != 0 {
		t.Errorf("%d requests reached the attacker's authority", n)
	}
	// The refusal of a well-formed host says how to allow it.
	if r := get(t, "10.250.41.1:1", tokenPath(vault), nil); !strings.Contains(string(r.body), "--allowed-authority-hosts") {
		t.Errorf("refusal without the flag's name: %s", r.body)
	}
	eventually(t, "a TokenFailed Event naming the refused authority", func() bool {
		for _, note := range tokenFailedEvents(t, ns, "evil-0-0") {
			if strings.Contains(note, "https://"+attacker+"/ is not an Azure cloud's Entra ID authority") {
				return true
			}
		}
		return false
	})

	// An administrator who allows the host (--allowed-authority-hosts) gets upstream's behaviour.
	allowed, err := azauth.NewAuthorityHosts(attacker)
	if err != nil {
		t.Fatal(err)
	}
	var id aadv1.AzureIdentity
	if err := k8s.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: "evil-0-0"}, &id); err != nil {
		t.Fatal(err)
	}
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "any", UID: "any-uid"}, Spec: corev1.PodSpec{NodeName: nodeName}}
	if _, err := issuer(k8s, allowed, false).Tokens(context.Background(), pod, &id, vault); err != nil {
		t.Fatalf("with the host allowed: %v", err)
	}
	if n := cloud.HostRequests(attacker); n == 0 {
		t.Error("with the host allowed, no request reached it")
	}
}
