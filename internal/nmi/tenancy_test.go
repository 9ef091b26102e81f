/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

package nmi_test

import (
	"net/http"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	aadv1 "github.com/acrpull/acrpull/api/aadpodidentity/v1"
	"github.com/acrpull/acrpull/internal/harness/azurefake"
	"github.com/acrpull/acrpull/internal/harness/testenv"
)

// namespaceNamed creates a namespace whose generated name starts with prefix, so a test can decide how namespaces
// sort against each other.
func namespaceNamed(t *testing.T, prefix string) string {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: prefix}}
	create(t, ns)
	create(t, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns.Name, Name: "default"}})
	return ns.Name
}

// The attack: without forceNamespaced (the default), a tenant with rights in their own namespace only, which sorts
// before the victim's, binds an identity of their own to the victim team's selector, and has Entra ID trust the
// victim's service account for it. The victim's pod, asking for "its" identity without naming it (as most SDK
// defaults do), must still get its own team's identity, never the tenant's; and a pod served from a central
// namespace gets a refusal rather than whichever binding sorts first.
func TestAForeignBindingNeverServesAnotherTeamsPod(t *testing.T) {
	const (
		victimClientID   = "00000000-0000-0000-0000-0000000000a1"
		attackerClientID = "00000000-0000-0000-0000-0000000000a2"
		centralClientID  = "00000000-0000-0000-0000-0000000000a3"
		selector         = "payments"
	)
	attacker, victim := namespaceNamed(t, "a-tenant-"), namespaceNamed(t, "z-victim-")
	for _, id := range []string{victimClientID, attackerClientID, centralClientID} {
		cloud.AddIdentity(azurefake.Identity{ClientID: id, TenantID: tenantID})
	}
	federatedAccount(t, victim, "payments", victimClientID)
	// The tenant controls their own identity's federated credentials and names the victim's account.
	cloud.AddFederatedCredential(attackerClientID, azurefake.FederatedCredential{
		Issuer: testenv.Issuer, Subject: "system:serviceaccount:" + victim + ":payments", Audiences: []string{"api://AzureADTokenExchange"},
	})
	createAndSync(t,
		azureIdentity(victim, "payments", aadv1.AzureIdentitySpec{ClientID: victimClientID}),
		binding(victim, "zz-payments", "payments", selector),
		azureIdentity(attacker, "bait", aadv1.AzureIdentitySpec{ClientID: attackerClientID}),
		binding(attacker, "aa-bait", "bait", selector))
	runningPod(t, victim, "payments", "payments", selector, nodeName, "10.250.19.1")

	for _, query := range []string{"", "client_id=" + attackerClientID} {
		r := get(t, "10.250.19.1:1", tokenPath(vault, query), nil)
		if query == "" {
			c := claims(t, decodeToken(t, r).AccessToken)
			if c["appid"] != victimClientID && c["azp"] != victimClientID {
				t.Fatalf("the victim's pod got a token of client %v/%v, want its own %s", c["appid"], c["azp"], victimClientID)
			}
			continue
		}
		// Naming the tenant's identity is the pod's own choice, and the tenant's binding is the only one fitting it:
		// upstream's cross-namespace grant, which forceNamespaced turns off.
		if r.status != http.StatusOK {
			t.Fatalf("asking for the other namespace's identity by name: %d %s", r.status, r.body)
		}
	}

	// A team that keeps its identities in a central namespace and binds none of its own.
	central, consumer := namespaceNamed(t, "m-central-"), namespaceNamed(t, "z-consumer-")
	federatedAccount(t, consumer, "reports", centralClientID)
	cloud.AddFederatedCredential(attackerClientID, azurefake.FederatedCredential{
		Issuer: testenv.Issuer, Subject: "system:serviceaccount:" + consumer + ":reports", Audiences: []string{"api://AzureADTokenExchange"},
	})
	createAndSync(t,
		azureIdentity(central, "reports", aadv1.AzureIdentitySpec{ClientID: centralClientID}),
		binding(central, "reports", "reports", "reports"))
	runningPod(t, consumer, "reports", "reports", "reports", nodeName, "10.250.19.2")
	if c := claims(t, decodeToken(t, get(t, "10.250.19.2:1", tokenPath(vault), nil)).AccessToken); c["appid"] != centralClientID && c["azp"] != centralClientID {
		t.Fatalf("served from the central namespace: client %v/%v, want %s", c["appid"], c["azp"], centralClientID)
	}
	createAndSync(t, binding(attacker, "aa-reports", "bait", "reports"))
	r := get(t, "10.250.19.2:1", tokenPath(vault), nil)
	if r.status != http.StatusForbidden || strings.Contains(string(r.body), attacker) {
		t.Fatalf("with a second namespace's binding for the selector: %d %s, want 403 naming no namespace", r.status, r.body)
	}
	if r := get(t, "10.250.19.2:1", tokenPath(vault, "client_id="+centralClientID), nil); r.status != http.StatusOK {
		t.Fatalf("naming the central identity: %d %s", r.status, r.body)
	}
}
