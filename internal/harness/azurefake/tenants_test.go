/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

package azurefake_test

import (
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/acrpull/acrpull/internal/harness/azurefake"
)

func secretTokenRequest(t *testing.T, tenantID, clientID, secret, scope string) response {
	t.Helper()
	return postForm(t, "https://login.microsoftonline.com/"+tenantID+"/oauth2/v2.0/token", url.Values{
		"grant_type": {"client_credentials"}, "client_id": {clientID}, "scope": {scope}, "client_secret": {secret},
	})
}

// A multi-tenant application gets tokens from every tenant it is provisioned in, with that tenant's tid, iss and
// service principal, for the one secret; a tenant it is not provisioned in refuses it as an unknown application.
// The per-tenant counters see each request.
func TestMultiTenantApplications(t *testing.T) {
	const (
		app      = "99999999-0000-4000-8000-0000000000a1"
		auxOne   = "a0000000-0000-4000-8000-0000000000a1"
		auxTwo   = "a0000000-0000-4000-8000-0000000000a2"
		elsewise = "a0000000-0000-4000-8000-0000000000a3" // a tenant holding other applications only
	)
	fake.AddIdentity(azurefake.Identity{ClientID: app, TenantID: tenant, AdditionalTenants: []string{auxOne}})
	fake.AddIdentity(azurefake.Identity{ClientID: "99999999-0000-4000-8000-0000000000a2", TenantID: elsewise})
	fake.AddClientSecret(app, "multi~secret")
	if err := fake.ProvisionInTenant(app, auxTwo); err != nil {
		t.Fatal(err)
	}
	if err := fake.ProvisionInTenant("99999999-0000-4000-8000-00000000dead", auxTwo); err == nil {
		t.Error("an unknown application was provisioned")
	}
	before := map[string]int64{}
	for _, tn := range []string{tenant, auxOne, auxTwo, elsewise} {
		before[tn] = fake.TenantTokenRequests(tn)
	}
	oids := map[any]bool{}
	for _, tn := range []string{tenant, auxOne, auxTwo} {
		r := secretTokenRequest(t, tn, app, "multi~secret", "https://management.azure.com//.default")
		if r.status != http.StatusOK {
			t.Fatalf("tenant %s: HTTP %d %s", tn, r.status, r.str("error_description"))
		}
		claims := claimsOf(t, r.str("access_token"))
		if claims["tid"] != tn || claims["iss"] != "https://sts.windows.net/"+tn+"/" || claims["appid"] != app {
			t.Errorf("tenant %s: claims %v", tn, claims)
		}
		if claims["aud"] != "https://management.azure.com/" {
			t.Errorf("tenant %s: aud %v, want the resource as asked", tn, claims["aud"])
		}
		oids[claims["oid"]] = true
		if got := fake.TenantTokenRequests(tn) - before[tn]; got != 1 {
			t.Errorf("tenant %s: %d token requests counted, want 1", tn, got)
		}
	}
	if len(oids) != 3 {
		t.Errorf("object IDs %v: each tenant's service principal should have its own", oids)
	}
	r := secretTokenRequest(t, elsewise, app, "multi~secret", "https://management.azure.com/.default")
	codes, _ := r.body["error_codes"].([]any)
	if r.status != http.StatusBadRequest || r.str("error") != "unauthorized_client" || len(codes) != 1 || codes[0] != float64(700016) {
		t.Errorf("tenant without the application: HTTP %d %s", r.status, r.raw)
	}
	if got := fake.TenantTokenRequests(elsewise) - before[elsewise]; got != 1 {
		t.Errorf("refused request: %d counted, want 1", got)
	}
	if r := get(t, "https://login.microsoftonline.com/"+auxTwo+"/v2.0/.well-known/openid-configuration", nil); r.status != http.StatusOK {
		t.Errorf("discovery of a tenant known only by provisioning: HTTP %d", r.status)
	}
}

// Entra ID tokens name the resource asked for as aud and carry iat, nbf and exp, for any resource: not only the
// registry's and ARM's.
func TestTokensForAnyResource(t *testing.T) {
	const app = "99999999-0000-4000-8000-0000000000b1"
	fake.AddIdentity(azurefake.Identity{ClientID: app, TenantID: tenant})
	fake.AddClientSecret(app, "any~resource")
	for _, resource := range []string{"https://vault.azure.net", "https://storage.azure.com", "api://my-app"} {
		r := secretTokenRequest(t, tenant, app, "any~resource", resource+"/.default")
		if r.status != http.StatusOK {
			t.Fatalf("%s: HTTP %d %s", resource, r.status, r.str("error_description"))
		}
		assertTimes(t, resource, claimsOf(t, r.str("access_token")), resource)
	}
	// IMDS, asked with a trailing slash as AAD Pod Identity clients do, keeps it.
	r := get(t, "http://169.254.169.254/metadata/identity/oauth2/token?api-version=2018-02-01&resource=https://vault.azure.net/&client_id="+puller,
		map[string]string{"Metadata": "true"})
	if r.status != http.StatusOK || r.str("resource") != "https://vault.azure.net/" {
		t.Fatalf("IMDS: HTTP %d %s", r.status, r.raw)
	}
	assertTimes(t, "IMDS", claimsOf(t, r.str("access_token")), "https://vault.azure.net/")
}

func assertTimes(t *testing.T, name string, claims map[string]any, aud string) {
	t.Helper()
	if claims["aud"] != aud {
		t.Errorf("%s: aud %v, want %s", name, claims["aud"], aud)
	}
	now := float64(time.Now().Unix())
	iat, _ := claims["iat"].(float64)
	nbf, _ := claims["nbf"].(float64)
	exp, _ := claims["exp"].(float64)
	if iat < now-60 || iat > now+5 || nbf < now-60 || nbf > now+5 || exp < now+50*60 || exp > now+61*60 {
		t.Errorf("%s: iat %v nbf %v exp %v, want now, now, about an hour on", name, claims["iat"], claims["nbf"], claims["exp"])
	}
}
