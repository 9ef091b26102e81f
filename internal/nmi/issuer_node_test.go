/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

package nmi_test

import (
	"context"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/utils/clock"

	aadv1 "github.com/acrpull/acrpull/api/aadpodidentity/v1"
	"github.com/acrpull/acrpull/internal/azauth"
	"github.com/acrpull/acrpull/internal/nmi"
	"github.com/acrpull/acrpull/internal/tokencache"
)

// countingAzure stands in for Entra ID: it asks for the pod-bound service-account token, as the real client does
// when it trades it, and counts the tokens it was given.
type countingAzure struct {
	nmi.AzureClient
	assertions int
}

func (a *countingAzure) WorkloadIdentityToken(ctx context.Context, _ azauth.Cloud, id azauth.WorkloadIdentity, _ string) (azauth.Token, error) {
	if _, err := id.Assertion(ctx); err != nil {
		return azauth.Token{}, err
	}
	a.assertions++
	return azauth.Token{Value: "entra-token", IssuedAt: time.Now(), ExpiresAt: time.Now().Add(time.Hour)}, nil
}

func (a *countingAzure) ClientSecretToken(context.Context, azauth.Cloud, string, string, string, string) (azauth.Token, error) {
	a.assertions++
	return azauth.Token{Value: "entra-token", IssuedAt: time.Now(), ExpiresAt: time.Now().Add(time.Hour)}, nil
}

// The agent may request tokens for every service account, and no admission policy can tell which node the pod a
// token is bound to runs on. So the issuer itself, whatever path reached it, refuses pods of other nodes (and pod
// objects that did not come from the apiserver) before any token request: root on node-a cannot have its agent mint
// a token bound to a pod of node-b.
func TestIssuerServesOnlyPodsOfItsNode(t *testing.T) {
	ns := newNamespace(t)
	federatedAccount(t, ns, "app", "00000000-0000-0000-0000-0000000000d1")
	here := runningPod(t, ns, "here", "app", "", nodeName, "10.250.77.1")
	elsewhere := runningPod(t, ns, "elsewhere", "app", "", "node-b", "10.250.77.2")
	noUID := here.DeepCopy()
	noUID.UID = ""
	federated := azureIdentity(ns, "id", aadv1.AzureIdentitySpec{Type: aadv1.UserAssignedMSI, ClientID: "00000000-0000-0000-0000-0000000000d1"})
	issuer := func(node string, azure nmi.AzureClient) *nmi.Issuer {
		return &nmi.Issuer{Azure: azure, Cache: tokencache.New(clock.RealClock{}, nil), Clock: clock.RealClock{}, Kube: k8s,
			Type0Source: nmi.SourceFederation, Audience: "api://AzureADTokenExchange", DefaultTenantID: tenantID,
			Cloud: azauth.PublicCloud, NodeName: node}
	}

	for _, tc := range []struct {
		name     string
		node     string
		pod      *corev1.Pod
		refusal  string // "" for served
		identity *aadv1.AzureIdentity
	}{
		{name: "a pod of this node (control)", node: nodeName, pod: here, identity: federated},
		{name: "a pod of another node", node: nodeName, pod: elsewhere, refusal: `runs on node "node-b"`, identity: federated},
		{name: "a pod object without UID", node: nodeName, pod: noUID, refusal: "has no UID", identity: federated},
		{name: "an issuer that was not told its node", node: "", pod: here, refusal: `this agent serves ""`, identity: federated},
		{name: "another node's pod, service-principal identity", node: nodeName, pod: elsewhere, refusal: `runs on node "node-b"`,
			identity: azureIdentity(ns, "sp", aadv1.AzureIdentitySpec{Type: aadv1.ServicePrincipal, ClientID: "sp",
				ClientPassword: corev1.SecretReference{Name: "absent"}})},
	} {
		t.Run(tc.name, func(t *testing.T) {
			azure := &countingAzure{}
			toks, err := issuer(tc.node, azure).Tokens(context.Background(), tc.pod, tc.identity, vault)
			if tc.refusal == "" {
				if err != nil || len(toks) != 1 || azure.assertions != 1 {
					t.Fatalf("tokens %d, assertions %d, err %v; want one token from one pod-bound assertion", len(toks), azure.assertions, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.refusal) {
				t.Fatalf("err %v, want a refusal saying %q", err, tc.refusal)
			}
			if azure.assertions != 0 {
				t.Fatalf("%d service-account tokens were minted for a pod the agent may not serve", azure.assertions)
			}
		})
	}
}
