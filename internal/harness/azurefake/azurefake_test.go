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

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/cloud"
	"github.com/golang-jwt/jwt/v5"

	"github.com/acrpull/acrpull/internal/harness/azurefake"
	"github.com/acrpull/acrpull/internal/harness/registrytest"
)

// The world every test of this package shares: one cloud, one real registry holding alice:v1 and bob:v1, and a few
// identities. Tests that change faults or lifetimes undo them before they end.
const (
	issuer   = "https://oidc.cluster.test"
	tenant   = "72f988bf-86f1-41af-91ab-2d7cd011db47"
	resource = "/subscriptions/s/resourceGroups/g/providers/Microsoft.ManagedIdentity/userAssignedIdentities/puller"
	subject  = "system:serviceaccount:app:puller"
	audience = "api://AzureCRTokenExchange"
	host     = "fake.azurecr.io"

	// puller is federated with the cluster, assigned to the VM and may pull alice.
	puller = "11111111-1111-4111-8111-111111111111"
	// stranger exists in the tenant and nothing more.
	stranger = "44444444-4444-4444-8444-444444444444"
	// roleless is assigned to the VM but has no role on the registry.
	roleless = "55555555-5555-4555-8555-555555555555"

	acrScope = "https://containerregistry.azure.net/.default"
)

var (
	fake       *azurefake.Cloud
	registry   *registrytest.Registry
	clusterKey *rsa.PrivateKey
)

func TestMain(m *testing.M) {
	os.Exit(runTests(m))
}

func runTests(m *testing.M) int {
	var err error
	if clusterKey, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
		panic(err)
	}
	if fake, err = azurefake.New(azurefake.Options{}); err != nil {
		panic(err)
	}
	if err := fake.Start(); err != nil {
		panic(err)
	}
	defer fake.Close()
	if registry, err = registrytest.StartRegistry(fake, host); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer registry.Close()
	fake.TrustIssuer(issuer, &clusterKey.PublicKey)
	fake.AddIdentity(azurefake.Identity{ClientID: puller, ResourceID: resource, TenantID: tenant, AssignedToVM: true})
	fake.AddIdentity(azurefake.Identity{ClientID: stranger, TenantID: tenant})
	fake.AddIdentity(azurefake.Identity{ClientID: roleless, TenantID: tenant, AssignedToVM: true})
	fake.AddFederatedCredential(puller, azurefake.FederatedCredential{Issuer: issuer, Subject: subject, Audiences: []string{audience}})
	fake.AddRoleAssignment(puller, host, []string{"alice"}, []string{"pull"})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, repo := range []string{"alice", "bob"} {
		if err := registry.PushRandom(ctx, repo, "v1"); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
	}
	return m.Run()
}

// testContext bounds a test's SDK calls: azidentity retries 5xx and 429 for tens of seconds.
func testContext(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// undoFaults clears every fault when the test ends.
func undoFaults(t *testing.T) {
	t.Cleanup(fake.ClearFaults)
}

// sdkOptions are the client options production code would have, given HTTPS_PROXY and SSL_CERT_FILE.
func sdkOptions() azcore.ClientOptions {
	return azcore.ClientOptions{Transport: fake.HTTPClient(), Cloud: cloud.AzurePublic}
}

// assertion signs a service-account-like token with key.
func assertion(t *testing.T, key *rsa.PrivateKey, iss, sub, aud string, notBefore, expires time.Time) string {
	t.Helper()
	s, err := jwt.NewWithClaims(jwt.SigningMethodRS256, jwt.MapClaims{
		"iss": iss, "sub": sub, "aud": []string{aud}, "iat": notBefore.Unix(), "nbf": notBefore.Unix(), "exp": expires.Unix(),
	}).SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// validAssertion is what the cluster would issue for the puller's service account.
func validAssertion(t *testing.T) string {
	return assertion(t, clusterKey, issuer, subject, audience, time.Now().Add(-time.Minute), time.Now().Add(10*time.Minute))
}

// response is a decoded JSON answer.
type response struct {
	status int
	header http.Header
	body   map[string]any
	raw    []byte
}

func (r response) str(field string) string {
	s, _ := r.body[field].(string)
	return s
}

func do(t *testing.T, req *http.Request) response {
	t.Helper()
	resp, err := fake.HTTPClient().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out := response{status: resp.StatusCode, header: resp.Header, body: map[string]any{}}
	out.raw, _ = io.ReadAll(resp.Body)
	_ = json.Unmarshal(out.raw, &out.body)
	return out
}

func postForm(t *testing.T, target string, form url.Values) response {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, target, strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return do(t, req)
}

func get(t *testing.T, target string, header map[string]string) response {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, target, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	return do(t, req)
}

// claimsOf reads a token's claims without verifying it; tests that need verification do it explicitly.
func claimsOf(t *testing.T, token string) jwt.MapClaims {
	t.Helper()
	claims := jwt.MapClaims{}
	if _, _, err := jwt.NewParser().ParseUnverified(token, claims); err != nil {
		t.Fatalf("not a JWT: %v", err)
	}
	return claims
}
