/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

package nmi_test

import (
	"context"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"

	aadv1 "github.com/acrpull/acrpull/api/aadpodidentity/v1"
)

// Identities that cannot work are refused at admission with a message, where upstream's controller dropped them
// silently.
func TestAzureIdentityValidation(t *testing.T) {
	ns := newNamespace(t)
	const goodResourceID = "/subscriptions/0000/resourceGroups/rg/providers/Microsoft.ManagedIdentity/userAssignedIdentities/id"
	for _, tc := range []struct {
		name string
		spec aadv1.AzureIdentitySpec
		want string // "" for accepted
	}{
		{"managed identity", aadv1.AzureIdentitySpec{ResourceID: goodResourceID, ClientID: "c"}, ""},
		{"resource ID case-insensitive as ARM", aadv1.AzureIdentitySpec{ResourceID: strings.ToLower(goodResourceID)}, ""},
		{"client ID only (federation)", aadv1.AzureIdentitySpec{ClientID: "c"}, ""},
		{"malformed resource ID", aadv1.AzureIdentitySpec{ClientID: "c", ResourceID: "/subscriptions/0000/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/vm"}, "resourceID must look like"},
		{"resource ID with a trailing segment", aadv1.AzureIdentitySpec{ClientID: "c", ResourceID: goodResourceID + "/extra"}, "resourceID must look like"},
		{"neither ID", aadv1.AzureIdentitySpec{}, "needs clientID or resourceID"},
		{"unknown type", aadv1.AzureIdentitySpec{Type: 3, ClientID: "c"}, "Unsupported value"},
		{"service principal without secret", aadv1.AzureIdentitySpec{Type: aadv1.ServicePrincipal, ClientID: "c", TenantID: "t"}, "needs clientID, tenantID and clientPassword.name"},
		{"service principal", aadv1.AzureIdentitySpec{Type: aadv1.ServicePrincipal, ClientID: "c", TenantID: "t", ClientPassword: corev1.SecretReference{Name: "s"}}, ""},
		{"auxiliary tenants on a certificate identity", aadv1.AzureIdentitySpec{Type: aadv1.ServicePrincipalCertificate, ClientID: "c", TenantID: "t",
			ClientPassword: corev1.SecretReference{Name: "s"}, AuxiliaryTenantIDs: []string{"t2"}}, "auxiliaryTenantIDs apply to service principals with a client secret"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id := azureIdentity(ns, "", tc.spec)
			id.GenerateName = "v-"
			err := k8s.Create(context.Background(), id)
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tc.want != "" && err == nil:
				t.Fatalf("accepted, want refusal mentioning %q", tc.want)
			case tc.want != "" && !strings.Contains(err.Error(), tc.want):
				t.Fatalf("refused with %v, want a message mentioning %q", err, tc.want)
			}
		})
	}
}
