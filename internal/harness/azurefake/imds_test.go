/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

package azurefake_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"

	"github.com/acrpull/acrpull/internal/harness/azurefake"
)

const imdsURL = "http://169.254.169.254/metadata/identity/oauth2/token?api-version=2018-02-01&resource=https://management.azure.com/"

func imds(t *testing.T, query string, metadata bool) response {
	t.Helper()
	header := map[string]string{}
	if metadata {
		header["Metadata"] = "true"
	}
	return get(t, imdsURL+"&"+query, header)
}

// IMDS refuses what real IMDS refuses, with its 400s and descriptions.
func TestIMDSRejectsWhatIMDSRejects(t *testing.T) {
	if r := imds(t, "client_id="+puller, false); r.status != 400 || r.str("error_description") != "Required metadata header not specified" {
		t.Errorf("without the Metadata header: HTTP %d %s", r.status, r.raw)
	}
	if r := imds(t, "client_id="+stranger, true); r.status != 400 || r.str("error") != "invalid_request" || r.str("error_description") != "Identity not found" {
		t.Errorf("identity not assigned to the VM: HTTP %d %s", r.status, r.raw)
	}
	if r := imds(t, "client_id=99999999-9999-4999-8999-999999999999", true); r.status != 400 || r.str("error_description") != "Identity not found" {
		t.Errorf("unknown identity: HTTP %d %s", r.status, r.raw)
	}
	if r := imds(t, "", true); r.status != 400 {
		t.Errorf("several identities assigned and none named: HTTP %d %s", r.status, r.raw)
	}
	r := get(t, "http://169.254.169.254/metadata/identity/oauth2/token?resource=https://management.azure.com/&client_id="+puller, map[string]string{"Metadata": "true"})
	if r.status != 400 {
		t.Errorf("without api-version: HTTP %d %s", r.status, r.raw)
	}
}

// IMDS answers by client ID, resource ID (msi_res_id and mi_res_id) and object ID, every value a string.
func TestIMDSAnswersInItsShape(t *testing.T) {
	for _, query := range []string{"client_id=" + puller, "msi_res_id=" + url.QueryEscape(resource), "mi_res_id=" + url.QueryEscape(resource),
		"object_id=principal-" + puller} {
		r := imds(t, query, true)
		if r.status != http.StatusOK {
			t.Fatalf("%s: HTTP %d %s", query, r.status, r.raw)
		}
		for _, field := range []string{"access_token", "client_id", "expires_in", "expires_on", "ext_expires_in", "not_before", "resource", "token_type"} {
			if _, isString := r.body[field].(string); !isString {
				t.Errorf("%s: field %s is %T, IMDS sends strings", query, field, r.body[field])
			}
		}
		claims := claimsOf(t, r.str("access_token"))
		if claims["aud"] != "https://management.azure.com/" || claims["appid"] != puller || r.str("client_id") != puller {
			t.Errorf("%s: aud %v appid %v client_id %s", query, claims["aud"], claims["appid"], r.str("client_id"))
		}
	}
}

// uncachedResource is a resource no earlier token was asked for. MSAL caches managed identity tokens for the whole
// process (across -count runs too), so a test that must reach IMDS through azidentity asks for one of these.
func uncachedResource(name string) string {
	return fmt.Sprintf("https://%s-%d.test", name, time.Now().UnixNano())
}

// managedIdentityToken gets a token for scope through azidentity.
func managedIdentityToken(t *testing.T, id azidentity.ManagedIDKind, scope string) (string, error) {
	t.Helper()
	cred, err := azidentity.NewManagedIdentityCredential(&azidentity.ManagedIdentityCredentialOptions{ClientOptions: sdkOptions(), ID: id})
	if err != nil {
		t.Fatal(err)
	}
	tok, err := cred.GetToken(testContext(t), policy.TokenRequestOptions{Scopes: []string{scope}})
	return tok.Token, err
}

// azidentity's ManagedIdentityCredential (MSAL's IMDS client underneath) gets tokens by client ID and by resource
// ID, and reports an unassigned identity as such without retrying.
func TestManagedIdentityCredential(t *testing.T) {
	variants := map[string]struct {
		id       azidentity.ManagedIDKind
		resource string
	}{
		"client ID":   {azidentity.ClientID(puller), uncachedResource("mi-by-client-id")},
		"resource ID": {azidentity.ResourceID(resource), uncachedResource("mi-by-resource-id")},
	}
	for name, v := range variants {
		before := fake.Count(azurefake.IMDSToken)
		token, err := managedIdentityToken(t, v.id, v.resource+"/.default")
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if claims := claimsOf(t, token); claims["aud"] != v.resource || claims["appid"] != puller {
			t.Errorf("%s: aud %v appid %v", name, claims["aud"], claims["appid"])
		}
		if fake.Count(azurefake.IMDSToken) == before {
			t.Errorf("%s: the token did not come from the fake's IMDS", name)
		}
	}
	before := fake.Count(azurefake.IMDSToken)
	_, err := managedIdentityToken(t, azidentity.ClientID(stranger), acrScope)
	var authErr *azidentity.AuthenticationFailedError
	if !errors.As(err, &authErr) || authErr.RawResponse == nil || authErr.RawResponse.StatusCode != http.StatusBadRequest {
		t.Fatalf("unassigned identity: %v, want an AuthenticationFailedError with IMDS's 400", err)
	}
	if n := fake.Count(azurefake.IMDSToken) - before; n != 1 {
		t.Errorf("%d IMDS requests for an unassigned identity, want 1 (a 400 is not retried)", n)
	}
}

// With no identity named, IMDS answers for the only identity assigned to the VM.
func TestIMDSUsesTheOnlyAssignedIdentity(t *testing.T) {
	alone := azurefake.StartForTest(t)
	alone.AddIdentity(azurefake.Identity{ClientID: puller, TenantID: tenant, AssignedToVM: true})
	alone.AddIdentity(azurefake.Identity{ClientID: stranger, TenantID: tenant})
	req, _ := http.NewRequest(http.MethodGet, imdsURL, nil)
	req.Header.Set("Metadata", "true")
	resp, err := alone.HTTPClient().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body struct {
		ClientID string `json:"client_id"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil || resp.StatusCode != http.StatusOK || body.ClientID != puller {
		t.Errorf("HTTP %d, client_id %q, %v", resp.StatusCode, body.ClientID, err)
	}
}
