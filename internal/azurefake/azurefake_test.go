/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

package azurefake_test

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/acrpull/acrpull/internal/azauth"
	"github.com/acrpull/acrpull/internal/azurefake"
	"github.com/acrpull/acrpull/internal/dockerconfig"
	"github.com/acrpull/acrpull/internal/registrytest"
)

const (
	issuer   = "https://oidc.cluster.test"
	tenant   = "72f988bf-86f1-41af-91ab-2d7cd011db47"
	clientID = "11111111-1111-1111-1111-111111111111"
	resource = "/subscriptions/s/resourceGroups/g/providers/Microsoft.ManagedIdentity/userAssignedIdentities/puller"
	unused   = "44444444-4444-4444-4444-444444444444"
	subject  = "system:serviceaccount:app:puller"
	audience = "api://AzureCRTokenExchange"
	host     = "fake.azurecr.io"
)

var (
	cloud      *azurefake.Cloud
	registry   *registrytest.Registry
	clusterKey *rsa.PrivateKey
)

func TestMain(m *testing.M) {
	var err error
	if clusterKey, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
		panic(err)
	}
	if cloud, err = azurefake.New(azurefake.Options{}); err != nil {
		panic(err)
	}
	if err := cloud.Start(); err != nil {
		panic(err)
	}
	if registry, err = registrytest.StartRegistry(cloud, host); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	cloud.TrustIssuer(issuer, &clusterKey.PublicKey)
	cloud.AddIdentity(azurefake.Identity{ClientID: clientID, ResourceID: resource, TenantID: tenant, AssignedToVM: true})
	cloud.AddIdentity(azurefake.Identity{ClientID: unused, TenantID: tenant})
	cloud.AddFederatedCredential(clientID, azurefake.FederatedCredential{Issuer: issuer, Subject: subject, Audiences: []string{audience}})
	cloud.AddRoleAssignment(clientID, host, []string{"alice"}, []string{"pull"})
	for _, repo := range []string{"alice", "bob"} {
		if err := registry.PushRandom(context.Background(), repo, "v1"); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
	}
	code := m.Run()
	registry.Close()
	cloud.Close()
	os.Exit(code)
}

// assertion signs a service-account-like token.
func assertion(t *testing.T, key *rsa.PrivateKey, sub, aud string, exp time.Time) string {
	t.Helper()
	s, err := jwt.NewWithClaims(jwt.SigningMethodRS256, jwt.MapClaims{
		"iss": issuer, "sub": sub, "aud": []string{aud}, "iat": time.Now().Add(-time.Minute).Unix(),
		"nbf": time.Now().Add(-time.Minute).Unix(), "exp": exp.Unix(),
	}).SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func post(t *testing.T, target string, form url.Values) (int, map[string]any) {
	t.Helper()
	resp, err := cloud.HTTPClient().PostForm(target, form)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body := map[string]any{}
	raw, _ := io.ReadAll(resp.Body)
	_ = json.Unmarshal(raw, &body)
	return resp.StatusCode, body
}

func entraToken(t *testing.T, client, assertionJWT string) (int, map[string]any) {
	return post(t, "https://login.microsoftonline.com/"+tenant+"/oauth2/v2.0/token", url.Values{
		"grant_type": {"client_credentials"}, "client_id": {client}, "scope": {"https://containerregistry.azure.net/.default"},
		"client_assertion_type": {"urn:ietf:params:oauth:client-assertion-type:jwt-bearer"}, "client_assertion": {assertionJWT},
	})
}

// Entra ID refuses assertions real Entra ID refuses, with its AADSTS codes.
func TestEntraRejectsWhatEntraRejects(t *testing.T) {
	otherKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	hour := time.Now().Add(time.Hour)
	cases := map[string]struct {
		client, assertion string
		status            int
		code              string
	}{
		"valid":               {clientID, assertion(t, clusterKey, subject, audience, hour), 200, ""},
		"wrong audience":      {clientID, assertion(t, clusterKey, subject, "api://other", hour), 401, "AADSTS70021"},
		"unknown subject":     {clientID, assertion(t, clusterKey, "system:serviceaccount:app:other", audience, hour), 401, "AADSTS70021"},
		"expired":             {clientID, assertion(t, clusterKey, subject, audience, time.Now().Add(-time.Minute)), 400, "AADSTS700024"},
		"badly signed":        {clientID, assertion(t, otherKey, subject, audience, hour), 401, "AADSTS50013"},
		"not federated":       {unused, assertion(t, clusterKey, subject, audience, hour), 401, "AADSTS70021"},
		"unknown application": {"99999999-9999-9999-9999-999999999999", assertion(t, clusterKey, subject, audience, hour), 400, "AADSTS700016"},
		"garbage assertion":   {clientID, "not-a-jwt", 400, "AADSTS50027"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			status, body := entraToken(t, tc.client, tc.assertion)
			if status != tc.status {
				t.Fatalf("status %d, want %d (%v)", status, tc.status, body["error_description"])
			}
			desc, _ := body["error_description"].(string)
			if tc.code != "" && !strings.HasPrefix(desc, tc.code+":") {
				t.Fatalf("description %q, want code %s", desc, tc.code)
			}
			if tc.code == "" && body["access_token"] == "" {
				t.Fatal("no access token")
			}
		})
	}
}

func imds(t *testing.T, query string, metadata bool) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, "http://169.254.169.254/metadata/identity/oauth2/token?api-version=2018-02-01&resource=https://management.azure.com/&"+query, nil)
	if metadata {
		req.Header.Set("Metadata", "true")
	}
	resp, err := cloud.HTTPClient().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body := map[string]any{}
	_ = json.NewDecoder(resp.Body).Decode(&body)
	return resp.StatusCode, body
}

// IMDS requires the Metadata header and answers only for identities assigned to the VM, in IMDS's JSON shape.
func TestIMDSAnswersOnlyForAssignedIdentities(t *testing.T) {
	if status, body := imds(t, "client_id="+clientID, false); status != 400 || !strings.Contains(fmt.Sprint(body["error_description"]), "metadata header") {
		t.Errorf("without Metadata: %d %v", status, body)
	}
	if status, body := imds(t, "client_id="+unused, true); status != 400 || body["error_description"] != "Identity not found" {
		t.Errorf("unassigned identity: %d %v", status, body)
	}
	status, body := imds(t, "msi_res_id="+url.QueryEscape(resource), true)
	if status != 200 {
		t.Fatalf("assigned identity by resource ID: %d %v", status, body)
	}
	for _, field := range []string{"access_token", "expires_in", "expires_on", "not_before", "resource", "token_type", "client_id"} {
		if _, isString := body[field].(string); !isString {
			t.Errorf("field %s is %T, IMDS sends strings", field, body[field])
		}
	}
}

// The registry exchanges only Entra tokens of an accepted audience, for identities with a role on it.
func TestACRExchangeRejectsWrongAudienceAndNoRole(t *testing.T) {
	ctx := context.Background()
	az := azauth.NewClient(azauth.Options{HTTPClient: cloud.HTTPClient()})
	graph, err := az.ManagedIdentityToken(ctx, azauth.ManagedIdentity{ClientID: clientID}, "https://graph.microsoft.com")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := az.ExchangeForRefreshToken(ctx, host, graph); azauth.KindOf(err) != azauth.RegistryDenied {
		t.Errorf("graph audience: %v, want RegistryDenied", err)
	}
	cloud.AddIdentity(azurefake.Identity{ClientID: "55555555-5555-5555-5555-555555555555", TenantID: tenant, AssignedToVM: true})
	noRole, err := az.ManagedIdentityToken(ctx, azauth.ManagedIdentity{ClientID: "55555555-5555-5555-5555-555555555555"}, azauth.ACRAudience)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := az.ExchangeForRefreshToken(ctx, host, noRole); azauth.KindOf(err) != azauth.RegistryDenied {
		t.Errorf("no role: %v, want RegistryDenied", err)
	}
	// A registry with ARM authentication disabled refuses ARM tokens and takes ACR-audience ones.
	cloud.AddRegistry(azurefake.Registry{Host: "armless.azurecr.io", DisableARMAudience: true})
	cloud.AddRoleAssignment(clientID, "armless.azurecr.io", []string{"*"}, []string{"pull"})
	arm, _ := az.ManagedIdentityToken(ctx, azauth.ManagedIdentity{ClientID: clientID}, "https://management.azure.com/")
	if _, err := az.ExchangeForRefreshToken(ctx, "armless.azurecr.io", arm); azauth.KindOf(err) != azauth.RegistryDenied {
		t.Errorf("ARM token at an ARM-disabled registry: %v, want RegistryDenied", err)
	}
	acr, _ := az.ManagedIdentityToken(ctx, azauth.ManagedIdentity{ClientID: clientID}, azauth.ACRAudience)
	if _, err := az.ExchangeForRefreshToken(ctx, "armless.azurecr.io", acr); err != nil {
		t.Errorf("ACR token at an ARM-disabled registry: %v", err)
	}
}

// The whole path through the real SDKs: a federated assertion at Entra ID, the ACR exchange, a scoped token, and
// real pulls from the registry: the scoped repository pulls, another is refused, and a token for a repository
// outside the role grants nothing.
func TestWorkloadIdentityWalkEndsInARealPull(t *testing.T) {
	ctx := context.Background()
	az := azauth.NewClient(azauth.Options{HTTPClient: cloud.HTTPClient()})
	wi := azauth.WorkloadIdentity{TenantID: tenant, ClientID: clientID,
		Assertion: func(context.Context) (string, error) {
			return assertion(t, clusterKey, subject, audience, time.Now().Add(10*time.Minute)), nil
		}}
	entra, err := az.WorkloadIdentityToken(ctx, azauth.PublicCloud, wi, azauth.ACRAudience)
	if err != nil {
		t.Fatal(err)
	}
	rt, err := az.ExchangeForRefreshToken(ctx, host, entra)
	if err != nil {
		t.Fatal(err)
	}
	for repo, wantPull := range map[string]map[string]bool{
		"alice": {"alice": true, "bob": false},
		"bob":   {"bob": false},
	} {
		at, err := az.AccessToken(ctx, host, "repository:"+repo+":pull", rt)
		if err != nil {
			t.Fatal(err)
		}
		cfg, _ := dockerconfig.Render(host, at.Value)
		for target, want := range wantPull {
			err := registry.Pull(ctx, target, "v1", cfg)
			if (err == nil) != want {
				t.Errorf("token for %s pulling %s: err %v, want success %v", repo, target, err, want)
			}
			if err != nil && !strings.Contains(err.Error(), "UNAUTHORIZED") {
				t.Errorf("refusal should come from the registry as 401, got %v", err)
			}
		}
	}
	if _, err := az.AccessToken(ctx, host, "repository:*:pull", rt); azauth.KindOf(err) != azauth.RegistryDenied {
		t.Errorf("wildcard scope: %v, want refusal", err)
	}
}

// Throttling answers 429 with Retry-After above the configured rate, and counters see every request.
func TestThrottlingAndCounters(t *testing.T) {
	cloud.ResetCounts()
	cloud.SetFault(azurefake.IMDSToken, azurefake.Fault{RatePerSecond: 2, RetryAfter: 3 * time.Second})
	defer cloud.ClearFaults()
	throttled := 0
	for range 10 {
		req, _ := http.NewRequest(http.MethodGet, "http://169.254.169.254/metadata/identity/oauth2/token?resource=https://management.azure.com/&client_id="+clientID, nil)
		req.Header.Set("Metadata", "true")
		resp, err := cloud.HTTPClient().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
		if resp.StatusCode == http.StatusTooManyRequests {
			throttled++
			if resp.Header.Get("Retry-After") != "3" {
				t.Errorf("Retry-After %q, want 3", resp.Header.Get("Retry-After"))
			}
		}
	}
	if throttled < 5 || throttled == 10 {
		t.Errorf("throttled %d of 10 at 2/s, want most but not all", throttled)
	}
	if cloud.Count(azurefake.IMDSToken) != 10 {
		t.Errorf("counted %d IMDS requests, want 10", cloud.Count(azurefake.IMDSToken))
	}
	if cloud.HostRequests("nowhere.example") != 0 {
		t.Error("a host never asked for has requests")
	}
}

// The fakeazure binary's JSON configuration reaches the same knobs as the Go API.
func TestJSONConfigAddsIdentitiesAndFaults(t *testing.T) {
	var cfg azurefake.Config
	err := json.Unmarshal([]byte(`{
		"identities": [{"clientID": "66666666-6666-6666-6666-666666666666", "tenantID": "`+tenant+`", "assignedToVM": true}],
		"faults": {"imds-token": {"status": 503, "retryAfter": "2s", "count": 1}}
	}`), &cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := cloud.ApplyConfig(cfg); err != nil {
		t.Fatal(err)
	}
	if status, _ := imds(t, "client_id=66666666-6666-6666-6666-666666666666", true); status != 503 {
		t.Fatalf("first request: %d, want the injected 503", status)
	}
	if status, body := imds(t, "client_id=66666666-6666-6666-6666-666666666666", true); status != 200 {
		t.Fatalf("after the counted fault: %d %v", status, body)
	}
}
