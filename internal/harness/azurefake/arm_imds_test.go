/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

package azurefake_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/arm"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/cloud"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/runtime"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"

	"github.com/acrpull/acrpull/internal/harness/azurefake"
)

// nodeIMDS asks IMDS for a token from a node's address.
func nodeIMDS(t *testing.T, c *azurefake.Cloud, sourceIP, query string) response {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, imdsURL+"&"+query, nil)
	req.Header.Set("Metadata", "true")
	resp, err := c.HTTPClientFrom(sourceIP).Do(req)
	if err != nil && strings.Contains(err.Error(), "assign requested address") {
		t.Skipf("this system cannot send from %s: %v", sourceIP, err)
	}
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out := response{status: resp.StatusCode, header: resp.Header, body: map[string]any{}}
	out.raw, _ = io.ReadAll(resp.Body)
	_ = json.Unmarshal(out.raw, &out.body)
	return out
}

// Once ARM assigns an identity to a scale set, IMDS answers for it only on that scale set's nodes, and only once the
// operation has succeeded; nodes of another scale set and unplaced callers get IMDS's "Identity not found". A token
// IMDS issues a node for ARM authenticates to ARM as that identity.
func TestIMDSFollowsARMAssignments(t *testing.T) {
	w := newARMWorld(t)
	poolA := w.cloud.AddVMSS(armSub, "MC_nodes", "pool-a")
	poolB := w.cloud.AddVMSS(armSub, "MC_nodes", "pool-b")
	if err := w.cloud.PlaceNode("127.0.0.2", "azure://"+poolA+"/virtualMachines/0"); err != nil {
		t.Fatal(err)
	}
	if err := w.cloud.PlaceNode("127.0.0.3", poolB); err != nil {
		t.Fatal(err)
	}
	if err := w.cloud.PlaceNode("127.0.0.4", poolA+"-missing"); err == nil {
		t.Error("a node was placed on a scale set that does not exist")
	}
	alpha := "client_id=" + armIdentities["alpha"]
	if r := nodeIMDS(t, w.cloud, "127.0.0.2", alpha); r.status != http.StatusBadRequest || r.str("error_description") != "Identity not found" {
		t.Fatalf("before the assignment: HTTP %d %s", r.status, r.raw)
	}

	w.cloud.SetARMOperationDelay(300 * time.Millisecond)
	accepted := w.patchIdentities(t, poolA, w.token, "", map[string]bool{identityID("alpha"): true})
	if r := nodeIMDS(t, w.cloud, "127.0.0.2", alpha); r.status != http.StatusBadRequest {
		t.Errorf("while the operation runs: HTTP %d %s", r.status, r.raw)
	}
	w.pollUntilSucceeded(t, accepted)

	for _, query := range []string{alpha, "msi_res_id=" + url.QueryEscape(strings.ToLower(identityID("alpha"))), ""} {
		r := nodeIMDS(t, w.cloud, "127.0.0.2", query)
		if r.status != http.StatusOK || r.str("client_id") != armIdentities["alpha"] {
			t.Errorf("node of pool-a, %q: HTTP %d %s", query, r.status, r.raw)
		}
	}
	if r := nodeIMDS(t, w.cloud, "127.0.0.3", alpha); r.status != http.StatusBadRequest || r.str("error_description") != "Identity not found" {
		t.Errorf("node of pool-b: HTTP %d %s", r.status, r.raw)
	}
	req, _ := http.NewRequest(http.MethodGet, imdsURL+"&"+alpha, nil)
	req.Header.Set("Metadata", "true")
	if r := doWith(t, w.cloud.HTTPClient(), req); r.status != http.StatusBadRequest {
		t.Errorf("unplaced caller: HTTP %d %s", r.status, r.raw)
	}

	// The node's identity token is good at ARM, whose caller is then alpha.
	r := nodeIMDS(t, w.cloud, "127.0.0.2", alpha)
	w.cloud.DenyAssign(identityID("gamma"), armIdentities["alpha"])
	denied := w.patchIdentities(t, poolB, r.str("access_token"), "", map[string]bool{identityID("gamma"): true})
	if denied.status != http.StatusForbidden || !strings.Contains(armMessage(denied), "object id 'principal-"+armIdentities["alpha"]+"'") {
		t.Errorf("PATCH with the node's IMDS token: HTTP %d %s", denied.status, denied.raw)
	}

	w.pollUntilSucceeded(t, w.patchIdentities(t, poolA, w.token, "", map[string]bool{identityID("alpha"): false}))
	if r := nodeIMDS(t, w.cloud, "127.0.0.2", alpha); r.status != http.StatusBadRequest {
		t.Errorf("after the removal: HTTP %d %s", r.status, r.raw)
	}
	w.cloud.UnplaceNode("127.0.0.2")
	w.cloud.AddIdentity(azurefake.Identity{ClientID: "d4d4d4d4-0000-4000-8000-000000000004", TenantID: tenant, AssignedToVM: true})
	if r := nodeIMDS(t, w.cloud, "127.0.0.2", "client_id=d4d4d4d4-0000-4000-8000-000000000004"); r.status != http.StatusOK {
		t.Errorf("an unplaced node gets AssignedToVM identities: HTTP %d %s", r.status, r.raw)
	}
}

// A placed node with a system-assigned identity gets it from IMDS when it names none, as on a real VM.
func TestIMDSSystemAssignedIdentityOfAPlacedNode(t *testing.T) {
	w := newARMWorld(t)
	vm := w.cloud.AddVM(armSub, "nodes", "node-0")
	if err := w.cloud.PlaceNode("127.0.0.5", vm); err != nil {
		t.Fatal(err)
	}
	w.pollUntilSucceeded(t, w.call(t, http.MethodPatch, resourceURL(vm, computeAPI), w.token, map[string]any{"identity": map[string]any{"type": "SystemAssigned"}}))
	principal := w.get(t, vm).principalID
	r := nodeIMDS(t, w.cloud, "127.0.0.5", "")
	if r.status != http.StatusOK {
		t.Fatalf("HTTP %d %s", r.status, r.raw)
	}
	if claims := claimsOf(t, r.str("access_token")); claims["oid"] != principal || claims["tid"] != tenant {
		t.Errorf("oid %v tid %v, want the system identity %s in %s", claims["oid"], claims["tid"], principal, tenant)
	}
}

// The Azure SDK's own ARM pipeline and long-running-operation poller drive the fake to completion: bearer token
// from Entra ID, PATCH, Azure-AsyncOperation polling, final GET.
func TestARMWithTheSDKPoller(t *testing.T) {
	w := newARMWorld(t)
	w.cloud.SetARMOperationDelay(200 * time.Millisecond)
	vmss := w.cloud.AddVMSS(armSub, "nodes", "pool")
	opts := policy.ClientOptions{Transport: w.cloud.HTTPClient(), Cloud: cloud.AzurePublic}
	cred, err := azidentity.NewClientSecretCredential(tenant, micClient, armSecret, &azidentity.ClientSecretCredentialOptions{ClientOptions: opts})
	if err != nil {
		t.Fatal(err)
	}
	client, err := arm.NewClient("azurefake.test", "v0.0.1", cred, &arm.ClientOptions{ClientOptions: opts})
	if err != nil {
		t.Fatal(err)
	}
	ctx := testContext(t)
	req, err := runtime.NewRequest(ctx, http.MethodPatch, runtime.JoinPaths(client.Endpoint(), vmss))
	if err != nil {
		t.Fatal(err)
	}
	q := req.Raw().URL.Query()
	q.Set("api-version", computeAPI)
	req.Raw().URL.RawQuery = q.Encode()
	body := map[string]any{"identity": map[string]any{"type": "UserAssigned", "userAssignedIdentities": map[string]any{strings.ToLower(identityID("beta")): map[string]any{}}}}
	if err := runtime.MarshalAsJSON(req, body); err != nil {
		t.Fatal(err)
	}
	resp, err := client.Pipeline().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if !runtime.HasStatusCode(resp, http.StatusOK, http.StatusAccepted) {
		t.Fatalf("PATCH: %v", runtime.NewResponseError(resp))
	}
	poller, err := runtime.NewPoller[json.RawMessage](resp, client.Pipeline(), nil)
	if err != nil {
		t.Fatal(err)
	}
	final, err := poller.PollUntilDone(ctx, &runtime.PollUntilDoneOptions{Frequency: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	var shape struct {
		Identity struct {
			Type                   string                     `json:"type"`
			UserAssignedIdentities map[string]json.RawMessage `json:"userAssignedIdentities"`
		} `json:"identity"`
		Properties struct {
			ProvisioningState string `json:"provisioningState"`
		} `json:"properties"`
	}
	if err := json.Unmarshal(final, &shape); err != nil {
		t.Fatal(err)
	}
	if shape.Identity.Type != "UserAssigned" || len(shape.Identity.UserAssignedIdentities) != 1 || shape.Properties.ProvisioningState != "Succeeded" {
		t.Errorf("final result: %s", final)
	}
	if w.cloud.ARMCount(http.MethodGet, azurefake.ARMKindOperation) == 0 {
		t.Error("the SDK did not poll the operation")
	}
}
