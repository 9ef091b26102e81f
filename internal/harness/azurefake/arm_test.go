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
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/acrpull/acrpull/internal/harness/azurefake"
)

// The Resource Manager tests each get their own cloud, so that resources, rates and counters start empty.
const (
	armSub       = "00000000-0000-4000-8000-0000000000aa"
	armSecret    = "mic-secret"
	micClient    = "66666666-6666-4666-8666-666666666666"
	otherCaller  = "67676767-6767-4767-8767-676767676767"
	armScope     = "https://management.azure.com/.default"
	computeAPI   = "2024-07-01"
	upstreamAPI  = "2019-12-01"
	identityBase = "/subscriptions/" + armSub + "/resourceGroups/identities/providers/Microsoft.ManagedIdentity/userAssignedIdentities/"
)

// armIdentities are user-assigned identities known to every ARM test cloud, by name.
var armIdentities = map[string]string{
	"alpha": "a1a1a1a1-0000-4000-8000-000000000001",
	"beta":  "b2b2b2b2-0000-4000-8000-000000000002",
	"gamma": "c3c3c3c3-0000-4000-8000-000000000003",
}

func identityID(name string) string { return identityBase + name }

type armWorld struct {
	cloud *azurefake.Cloud
	token string // the MIC's, for management.azure.com
}

func newARMWorld(t *testing.T) *armWorld {
	t.Helper()
	cloud := azurefake.StartForTest(t)
	for _, caller := range []string{micClient, otherCaller} {
		cloud.AddIdentity(azurefake.Identity{ClientID: caller, TenantID: tenant})
		cloud.AddClientSecret(caller, armSecret)
	}
	for name, clientID := range armIdentities {
		cloud.AddIdentity(azurefake.Identity{ClientID: clientID, ResourceID: identityID(name), TenantID: tenant})
	}
	w := &armWorld{cloud: cloud}
	w.token = w.secretToken(t, micClient, armScope)
	return w
}

// secretToken is a client credentials token from the cloud's Entra ID.
func (w *armWorld) secretToken(t *testing.T, clientID, scope string) string {
	t.Helper()
	form := url.Values{"grant_type": {"client_credentials"}, "client_id": {clientID}, "client_secret": {armSecret}, "scope": {scope}}
	req, _ := http.NewRequest(http.MethodPost, "https://login.microsoftonline.com/"+tenant+"/oauth2/v2.0/token", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	r := doWith(t, w.cloud.HTTPClient(), req)
	if r.status != http.StatusOK {
		t.Fatalf("token for %s: HTTP %d %s", clientID, r.status, r.raw)
	}
	return r.str("access_token")
}

func doWith(t *testing.T, client *http.Client, req *http.Request) response {
	t.Helper()
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out := response{status: resp.StatusCode, header: resp.Header, body: map[string]any{}}
	out.raw, _ = io.ReadAll(resp.Body)
	_ = json.Unmarshal(out.raw, &out.body)
	return out
}

// call sends an ARM request with a bearer token ("" for none) and a JSON body (nil for none).
func (w *armWorld) call(t *testing.T, method, target, token string, body any) response {
	t.Helper()
	var reader io.Reader
	if body != nil {
		raw, err := json.Marshal(body)
		if err != nil {
			t.Fatal(err)
		}
		reader = strings.NewReader(string(raw))
	}
	req, err := http.NewRequest(method, target, reader)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	return doWith(t, w.cloud.HTTPClient(), req)
}

func resourceURL(resourceID, apiVersion string) string {
	return "https://management.azure.com" + resourceID + "?api-version=" + apiVersion
}

// patchIdentities PATCHes userAssignedIdentities: true adds, false removes (a null value), as MIC builds its patch.
func (w *armWorld) patchIdentities(t *testing.T, resourceID, token string, typ string, ids map[string]bool) response {
	t.Helper()
	users := map[string]any{}
	for id, add := range ids {
		if add {
			users[id] = map[string]any{}
		} else {
			users[id] = nil
		}
	}
	identity := map[string]any{"userAssignedIdentities": users}
	if typ != "" {
		identity["type"] = typ
	}
	return w.call(t, http.MethodPatch, resourceURL(resourceID, upstreamAPI), token, map[string]any{"identity": identity})
}

// pollUntilSucceeded follows the Azure-AsyncOperation header of an accepted PATCH.
func (w *armWorld) pollUntilSucceeded(t *testing.T, accepted response) {
	t.Helper()
	status := accepted.header.Get("Azure-AsyncOperation")
	if accepted.status != http.StatusOK || status == "" {
		t.Fatalf("PATCH: HTTP %d, Azure-AsyncOperation %q: %s", accepted.status, status, accepted.raw)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		r := w.call(t, http.MethodGet, status, w.token, nil)
		switch {
		case r.status != http.StatusOK:
			t.Fatalf("poll: HTTP %d %s", r.status, r.raw)
		case r.str("status") == "Succeeded":
			return
		case r.str("status") != "InProgress" || time.Now().After(deadline):
			t.Fatalf("poll: %s", r.raw)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// armState is the identity block and provisioning state GET shows.
type armView struct {
	typ, state, principalID string
	users                   map[string]map[string]string
}

func (w *armWorld) get(t *testing.T, resourceID string) armView {
	t.Helper()
	r := w.call(t, http.MethodGet, resourceURL(resourceID, computeAPI), w.token, nil)
	if r.status != http.StatusOK {
		t.Fatalf("GET %s: HTTP %d %s", resourceID, r.status, r.raw)
	}
	var shape struct {
		Identity struct {
			Type                   string                       `json:"type"`
			PrincipalID            string                       `json:"principalId"`
			UserAssignedIdentities map[string]map[string]string `json:"userAssignedIdentities"`
		} `json:"identity"`
		Properties struct {
			ProvisioningState string `json:"provisioningState"`
		} `json:"properties"`
	}
	if err := json.Unmarshal(r.raw, &shape); err != nil {
		t.Fatal(err)
	}
	return armView{shape.Identity.Type, shape.Properties.ProvisioningState, shape.Identity.PrincipalID, shape.Identity.UserAssignedIdentities}
}

func keysOf(m map[string]map[string]string) []string {
	var out []string
	for k := range m {
		out = append(out, strings.ToLower(k))
	}
	slices.Sort(out)
	return out
}

func lower(ids ...string) []string {
	out := make([]string, len(ids))
	for i, id := range ids {
		out[i] = strings.ToLower(id)
	}
	slices.Sort(out)
	return out
}

// A PATCH adds and removes user-assigned identities together, merging into what the scale set holds; keys compare
// case-insensitively; the type follows from None to UserAssigned and back, and GET shows each identity's client and
// principal IDs.
func TestARMIdentityRoundTrip(t *testing.T) {
	w := newARMWorld(t)
	vmss := w.cloud.AddVMSS(armSub, "MC_nodes", "aks-pool-vmss")
	if v := w.get(t, vmss); v.typ != "None" || len(v.users) != 0 || v.state != "Succeeded" {
		t.Fatalf("a new scale set: %+v", v)
	}
	w.pollUntilSucceeded(t, w.patchIdentities(t, vmss, w.token, "", map[string]bool{identityID("alpha"): true, identityID("beta"): true}))
	v := w.get(t, vmss)
	if v.typ != "UserAssigned" || !slices.Equal(keysOf(v.users), lower(identityID("alpha"), identityID("beta"))) {
		t.Fatalf("after adding alpha and beta: %+v", v)
	}
	if got := v.users[identityID("alpha")]; got["clientId"] != armIdentities["alpha"] || got["principalId"] != "principal-"+armIdentities["alpha"] {
		t.Errorf("alpha's entry: %v", got)
	}

	// MIC lower-cases keys: removing ALPHA in another case removes alpha; adding gamma keeps beta, which is not named.
	w.pollUntilSucceeded(t, w.patchIdentities(t, vmss, w.token, "", map[string]bool{
		strings.ToUpper(identityID("alpha")): false, strings.ToLower(identityID("gamma")): true,
		strings.ToLower(identityID("beta")): true, // already there: no duplicate
	}))
	if v := w.get(t, vmss); v.typ != "UserAssigned" || !slices.Equal(keysOf(v.users), lower(identityID("beta"), identityID("gamma"))) || len(v.users) != 2 {
		t.Fatalf("after removing ALPHA and adding gamma: %+v", v)
	}

	w.pollUntilSucceeded(t, w.patchIdentities(t, vmss, w.token, "", map[string]bool{identityID("beta"): false, identityID("gamma"): false}))
	if v := w.get(t, vmss); v.typ != "None" || len(v.users) != 0 {
		t.Fatalf("after removing every identity: %+v", v)
	}
	if ids, err := w.cloud.AssignedIdentities(vmss); err != nil || len(ids) != 0 {
		t.Errorf("AssignedIdentities: %v %v", ids, err)
	}
}

// A system-assigned identity survives user-assigned changes: SystemAssigned → "SystemAssigned, UserAssigned" and
// back; a type without UserAssigned drops the user-assigned identities.
func TestARMTypeTransitionsWithSystemAssigned(t *testing.T) {
	w := newARMWorld(t)
	vm := w.cloud.AddVM(armSub, "nodes", "node-0")
	w.pollUntilSucceeded(t, w.call(t, http.MethodPatch, resourceURL(vm, computeAPI), w.token, map[string]any{"identity": map[string]any{"type": "SystemAssigned"}}))
	sys := w.get(t, vm)
	if sys.typ != "SystemAssigned" || sys.principalID == "" {
		t.Fatalf("after enabling the system identity: %+v", sys)
	}
	w.pollUntilSucceeded(t, w.patchIdentities(t, vm, w.token, "SystemAssigned, UserAssigned", map[string]bool{identityID("alpha"): true}))
	if v := w.get(t, vm); v.typ != "SystemAssigned, UserAssigned" || len(v.users) != 1 || v.principalID != sys.principalID {
		t.Fatalf("after adding alpha: %+v (system principal was %s)", v, sys.principalID)
	}
	w.pollUntilSucceeded(t, w.patchIdentities(t, vm, w.token, "", map[string]bool{identityID("alpha"): false}))
	if v := w.get(t, vm); v.typ != "SystemAssigned" || len(v.users) != 0 || v.principalID != sys.principalID {
		t.Fatalf("after removing alpha: %+v", v)
	}
	w.pollUntilSucceeded(t, w.patchIdentities(t, vm, w.token, "UserAssigned", map[string]bool{identityID("beta"): true}))
	if v := w.get(t, vm); v.typ != "UserAssigned" || v.principalID != "" {
		t.Fatalf("type UserAssigned drops the system identity: %+v", v)
	}
	w.pollUntilSucceeded(t, w.call(t, http.MethodPatch, resourceURL(vm, computeAPI), w.token, map[string]any{"identity": map[string]any{"type": "None"}}))
	if v := w.get(t, vm); v.typ != "None" || len(v.users) != 0 {
		t.Fatalf("type None: %+v", v)
	}
	if r := w.patchIdentities(t, vm, w.token, "SystemAssigned", map[string]bool{identityID("beta"): true}); r.status != http.StatusBadRequest || armCode(r) != "InvalidParameter" {
		t.Errorf("user-assigned identities with type SystemAssigned: HTTP %d %s", r.status, r.raw)
	}
}

func armCode(r response) string {
	e, _ := r.body["error"].(map[string]any)
	code, _ := e["code"].(string)
	return code
}

func armMessage(r response) string {
	e, _ := r.body["error"].(map[string]any)
	msg, _ := e["message"].(string)
	return msg
}

// An update is a long-running operation: polls say InProgress until the delay passes, GET keeps the previous
// identity (provisioningState Updating) until then, a second update meanwhile is refused with 409, and the Location
// URL answers 202 then 200.
func TestARMLongRunningOperation(t *testing.T) {
	w := newARMWorld(t)
	w.cloud.SetARMOperationDelay(700 * time.Millisecond)
	vmss := w.cloud.AddVMSS(armSub, "nodes", "pool")
	start := time.Now()
	accepted := w.patchIdentities(t, vmss, w.token, "", map[string]bool{identityID("alpha"): true})
	status, location := accepted.header.Get("Azure-AsyncOperation"), accepted.header.Get("Location")
	if accepted.status != http.StatusOK || !strings.HasPrefix(status, "https://management.azure.com/subscriptions/"+armSub+"/providers/Microsoft.Compute/locations/") || location == "" {
		t.Fatalf("PATCH: HTTP %d, Azure-AsyncOperation %q, Location %q", accepted.status, status, location)
	}
	if props, _ := accepted.body["properties"].(map[string]any); props["provisioningState"] != "Updating" {
		t.Errorf("PATCH answered %s, want provisioningState Updating", accepted.raw)
	}
	if v := w.get(t, vmss); v.typ != "None" || v.state != "Updating" {
		t.Errorf("GET during the operation: %+v, want the old identity, Updating", v)
	}
	if r := w.call(t, http.MethodGet, status, w.token, nil); r.str("status") != "InProgress" {
		t.Errorf("poll during the operation: %s", r.raw)
	}
	if r := w.call(t, http.MethodGet, location, w.token, nil); r.status != http.StatusAccepted {
		t.Errorf("Location poll during the operation: HTTP %d", r.status)
	}
	if r := w.patchIdentities(t, vmss, w.token, "", map[string]bool{identityID("beta"): true}); r.status != http.StatusConflict || armCode(r) != "AnotherOperationInProgress" {
		t.Errorf("a second update during the operation: HTTP %d %s", r.status, r.raw)
	}
	w.pollUntilSucceeded(t, accepted)
	if elapsed := time.Since(start); elapsed < 700*time.Millisecond {
		t.Errorf("succeeded after %s, before the 700 ms delay", elapsed)
	}
	if v := w.get(t, vmss); v.typ != "UserAssigned" || v.state != "Succeeded" || len(v.users) != 1 {
		t.Errorf("GET after the operation: %+v", v)
	}
	if r := w.call(t, http.MethodGet, location, w.token, nil); r.status != http.StatusOK {
		t.Errorf("Location poll after the operation: HTTP %d", r.status)
	}
	if got := w.cloud.ARMCount(http.MethodGet, azurefake.ARMKindOperation); got < 3 {
		t.Errorf("ARMCount(GET, operations) = %d, want every poll", got)
	}
}

// linkedScopes extracts the identity IDs from a LinkedAuthorizationFailed message as aad-pod-identity's MIC does.
var linkedScopes = regexp.MustCompile(`(?i)/subscriptions/[^/]+/resourcegroups/[^/]+/providers/microsoft\.managedidentity/userassignedidentities/[^,'"\s]+`)

// Identities the caller may not assign fail the whole PATCH with 403 LinkedAuthorizationFailed naming exactly them;
// the same batch without them succeeds, and another caller allowed to assign them may.
func TestARMLinkedAuthorizationFailed(t *testing.T) {
	w := newARMWorld(t)
	vmss := w.cloud.AddVMSS(armSub, "nodes", "pool")
	w.cloud.DenyAssign(identityID("beta"), micClient)
	w.cloud.DenyAssign(identityID("gamma"))
	r := w.patchIdentities(t, vmss, w.token, "", map[string]bool{identityID("alpha"): true, identityID("beta"): true, identityID("gamma"): true})
	if r.status != http.StatusForbidden || armCode(r) != "LinkedAuthorizationFailed" {
		t.Fatalf("HTTP %d %s", r.status, r.raw)
	}
	msg := armMessage(r)
	if got := lower(linkedScopes.FindAllString(msg, -1)...); !slices.Equal(got, lower(identityID("beta"), identityID("gamma"))) {
		t.Errorf("denied scopes in the message: %v\n%s", got, msg)
	}
	for _, want := range []string{"has permission to perform action 'Microsoft.Compute/virtualMachineScaleSets/write' on scope '" + vmss + "'",
		"'Microsoft.ManagedIdentity/userAssignedIdentities/assign/action' on the linked scope(s)", "with object id 'principal-" + micClient + "'"} {
		if !strings.Contains(msg, want) {
			t.Errorf("message lacks %q:\n%s", want, msg)
		}
	}
	if v := w.get(t, vmss); len(v.users) != 0 {
		t.Errorf("a refused PATCH changed the scale set: %+v", v)
	}
	w.pollUntilSucceeded(t, w.patchIdentities(t, vmss, w.token, "", map[string]bool{identityID("alpha"): true}))
	// Only the MIC was denied beta.
	w.pollUntilSucceeded(t, w.patchIdentities(t, vmss, w.secretToken(t, otherCaller, armScope), "", map[string]bool{identityID("beta"): true}))
	if v := w.get(t, vmss); !slices.Equal(keysOf(v.users), lower(identityID("alpha"), identityID("beta"))) {
		t.Errorf("after the allowed batches: %v", keysOf(v.users))
	}
	w.cloud.AllowAssign(identityID("gamma"))
	w.pollUntilSucceeded(t, w.patchIdentities(t, vmss, w.token, "", map[string]bool{identityID("gamma"): true}))
}

// Identities that do not exist fail with 400 FailedIdentityOperation naming them; malformed IDs with ARM's
// LinkedInvalidPropertyId.
func TestARMMissingAndMalformedIdentities(t *testing.T) {
	w := newARMWorld(t)
	vm := w.cloud.AddVM(armSub, "nodes", "node-0")
	r := w.patchIdentities(t, vm, w.token, "", map[string]bool{identityID("alpha"): true, identityID("ghost"): true})
	if r.status != http.StatusBadRequest || armCode(r) != "FailedIdentityOperation" {
		t.Fatalf("HTTP %d %s", r.status, r.raw)
	}
	if got := lower(linkedScopes.FindAllString(armMessage(r), -1)...); !slices.Equal(got, lower(identityID("ghost"))) {
		t.Errorf("IDs in the message: %v\n%s", got, armMessage(r))
	}
	r = w.patchIdentities(t, vm, w.token, "", map[string]bool{"not-a-resource-id": true})
	if r.status != http.StatusBadRequest || armCode(r) != "LinkedInvalidPropertyId" {
		t.Errorf("malformed ID: HTTP %d %s", r.status, r.raw)
	}
	if v := w.get(t, vm); len(v.users) != 0 {
		t.Errorf("a refused PATCH changed the VM: %+v", v)
	}
}

// Requests without a token, with a token for another audience, or without api-version are refused in ARM's shapes;
// unknown resources are 404; resource group names compare case-insensitively; both api-versions are served.
func TestARMRefusals(t *testing.T) {
	w := newARMWorld(t)
	vm := w.cloud.AddVM(armSub, "Nodes", "node-0")
	r := w.call(t, http.MethodGet, resourceURL(vm, computeAPI), "", nil)
	if r.status != http.StatusUnauthorized || armCode(r) != "AuthenticationFailed" || !strings.HasPrefix(r.header.Get("WWW-Authenticate"), "Bearer authorization_uri=") {
		t.Errorf("no token: HTTP %d, WWW-Authenticate %q, %s", r.status, r.header.Get("WWW-Authenticate"), r.raw)
	}
	vault := w.secretToken(t, micClient, "https://vault.azure.net/.default")
	if r := w.call(t, http.MethodGet, resourceURL(vm, computeAPI), vault, nil); r.status != http.StatusUnauthorized || armCode(r) != "InvalidAuthenticationTokenAudience" {
		t.Errorf("token for Key Vault: HTTP %d %s", r.status, r.raw)
	}
	if r := w.call(t, http.MethodGet, resourceURL(vm, computeAPI), "not.a.token", nil); r.status != http.StatusUnauthorized || armCode(r) != "InvalidAuthenticationToken" {
		t.Errorf("garbage token: HTTP %d %s", r.status, r.raw)
	}
	if r := w.call(t, http.MethodGet, "https://management.azure.com"+vm, w.token, nil); r.status != http.StatusBadRequest || armCode(r) != "MissingApiVersionParameter" || armMessage(r) == "" {
		t.Errorf("no api-version: HTTP %d %s", r.status, r.raw)
	}
	if r := w.call(t, http.MethodGet, resourceURL(vm, "2001-01-01"), w.token, nil); r.status != http.StatusBadRequest || armCode(r) != "NoRegisteredProviderFound" {
		t.Errorf("unknown api-version: HTTP %d %s", r.status, r.raw)
	}
	for _, v := range []string{upstreamAPI, computeAPI} {
		if r := w.call(t, http.MethodGet, resourceURL(strings.Replace(vm, "/resourceGroups/Nodes/", "/resourcegroups/NODES/", 1), v), w.token, nil); r.status != http.StatusOK || r.str("id") != vm {
			t.Errorf("api-version %s, resource group in another case: HTTP %d %s", v, r.status, r.raw)
		}
	}
	if r := w.call(t, http.MethodGet, resourceURL(strings.Replace(vm, "node-0", "node-9", 1), computeAPI), w.token, nil); r.status != http.StatusNotFound || armCode(r) != "ResourceNotFound" {
		t.Errorf("unknown VM: HTTP %d %s", r.status, r.raw)
	}
	if r := w.call(t, http.MethodGet, resourceURL(strings.Replace(vm, "Nodes", "elsewhere", 1), computeAPI), w.token, nil); r.status != http.StatusNotFound || armCode(r) != "ResourceGroupNotFound" {
		t.Errorf("unknown resource group: HTTP %d %s", r.status, r.raw)
	}
	// A sovereign cloud's Resource Manager wants its own audience.
	gov := "https://management.usgovcloudapi.net" + vm + "?api-version=" + computeAPI
	if r := w.call(t, http.MethodGet, gov, w.token, nil); r.status != http.StatusUnauthorized || !strings.Contains(r.header.Get("WWW-Authenticate"), "login.microsoftonline.us") {
		t.Errorf("public token at the US Government cloud: HTTP %d, %q", r.status, r.header.Get("WWW-Authenticate"))
	}
	if r := w.call(t, http.MethodGet, gov, w.secretToken(t, micClient, "https://management.usgovcloudapi.net/.default"), nil); r.status != http.StatusOK {
		t.Errorf("US Government token: HTTP %d %s", r.status, r.raw)
	}
}

// Above the per-caller rate, reads and writes are throttled separately with 429, Retry-After and ARM's
// remaining-requests headers; another caller is not; counters see every request; faults apply to ARM too.
func TestARMThrottlingAndCounters(t *testing.T) {
	w := newARMWorld(t)
	vmss := w.cloud.AddVMSS(armSub, "nodes", "pool")
	w.cloud.SetARMRateLimit(2, 1)
	throttled := 0
	for range 6 {
		r := w.call(t, http.MethodGet, resourceURL(vmss, computeAPI), w.token, nil)
		if r.header.Get("x-ms-ratelimit-remaining-subscription-reads") == "" {
			t.Errorf("HTTP %d without x-ms-ratelimit-remaining-subscription-reads", r.status)
		}
		if r.status == http.StatusTooManyRequests {
			throttled++
			if armCode(r) != "SubscriptionRequestsThrottled" || r.header.Get("Retry-After") != "1" {
				t.Errorf("429: Retry-After %q, %s", r.header.Get("Retry-After"), r.raw)
			}
		}
	}
	if throttled < 3 || throttled == 6 {
		t.Errorf("%d of 6 reads throttled at 2/s, want most but not all", throttled)
	}
	other := w.secretToken(t, otherCaller, armScope)
	if r := w.call(t, http.MethodGet, resourceURL(vmss, computeAPI), other, nil); r.status != http.StatusOK {
		t.Errorf("another caller was throttled: HTTP %d", r.status)
	}
	// Writes have their own budget, untouched by the reads above.
	first := w.patchIdentities(t, vmss, w.token, "", map[string]bool{identityID("alpha"): true})
	second := w.patchIdentities(t, vmss, w.token, "", map[string]bool{identityID("beta"): true})
	if first.status != http.StatusOK || second.status != http.StatusTooManyRequests || second.header.Get("x-ms-ratelimit-remaining-subscription-writes") != "0" {
		t.Errorf("writes at 1/s: HTTP %d then %d (remaining %q)", first.status, second.status, second.header.Get("x-ms-ratelimit-remaining-subscription-writes"))
	}
	if got := w.cloud.ARMCount(http.MethodGet, azurefake.ARMKindVMSS); got != 7 {
		t.Errorf("ARMCount(GET, vmss) = %d, want 7", got)
	}
	if got := w.cloud.ARMCount("patch", azurefake.ARMKindVMSS); got != 2 {
		t.Errorf("ARMCount(PATCH, vmss) = %d, want 2", got)
	}
	if got := w.cloud.StatusCounts()[azurefake.ARMRead][http.StatusTooManyRequests]; got != int64(throttled) {
		t.Errorf("status counter of 429 reads: %d, want %d", got, throttled)
	}
	w.cloud.ResetCounts()
	if got := w.cloud.ARMCount(http.MethodGet, azurefake.ARMKindVMSS); got != 0 {
		t.Errorf("after ResetCounts: %d", got)
	}

	w.cloud.SetARMRateLimit(0, 0)
	w.cloud.SetFault(azurefake.ARMWrite, azurefake.Fault{Status: http.StatusServiceUnavailable, Count: 1})
	if r := w.patchIdentities(t, vmss, w.token, "", map[string]bool{identityID("beta"): true}); r.status != http.StatusServiceUnavailable || armCode(r) == "" {
		t.Errorf("faulted write: HTTP %d %s, want 503 in ARM's error shape", r.status, r.raw)
	}
	if r := w.call(t, http.MethodGet, resourceURL(vmss, computeAPI), w.token, nil); r.status != http.StatusOK || r.header.Get("x-ms-ratelimit-remaining-subscription-reads") != "11999" {
		t.Errorf("unlimited read: HTTP %d, remaining %q", r.status, r.header.Get("x-ms-ratelimit-remaining-subscription-reads"))
	}
}
