/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

package azurefake_test

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"errors"
	"math/big"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/cloud"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	"github.com/golang-jwt/jwt/v5"

	"github.com/acrpull/acrpull/internal/harness/azurefake"
)

func entraTokenRequest(t *testing.T, tenantID, clientID, clientAssertion string) response {
	t.Helper()
	return postForm(t, "https://login.microsoftonline.com/"+tenantID+"/oauth2/v2.0/token", url.Values{
		"grant_type": {"client_credentials"}, "client_id": {clientID}, "scope": {acrScope},
		"client_assertion_type": {"urn:ietf:params:oauth:client-assertion-type:jwt-bearer"}, "client_assertion": {clientAssertion},
	})
}

// Entra ID refuses what real Entra ID refuses, with its AADSTS codes, statuses and error body shape.
func TestEntraRejectsWhatEntraRejects(t *testing.T) {
	otherKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	past, hour := time.Now().Add(-time.Minute), time.Now().Add(time.Hour)
	signed := func(key *rsa.PrivateKey, iss, sub, aud string, nbf, exp time.Time) string {
		return assertion(t, key, iss, sub, aud, nbf, exp)
	}
	cases := map[string]struct {
		tenant, client, assertion string
		status                    int
		kind                      string
		code                      float64
	}{
		"wrong audience": {tenant, puller, signed(clusterKey, issuer, subject, "api://other", past, hour), 400, "invalid_request", 70021},
		"unknown subject": {tenant, puller, signed(clusterKey, issuer, "system:serviceaccount:app:other", audience, past, hour),
			400, "invalid_request", 70021},
		"identity without federation": {tenant, stranger, signed(clusterKey, issuer, subject, audience, past, hour), 400, "invalid_request", 70021},
		"untrusted issuer":            {tenant, puller, signed(clusterKey, "https://elsewhere.test", subject, audience, past, hour), 401, "invalid_client", 700211},
		"expired": {tenant, puller, signed(clusterKey, issuer, subject, audience, time.Now().Add(-time.Hour), time.Now().Add(-time.Minute)),
			401, "invalid_client", 700024},
		"not yet valid": {tenant, puller, signed(clusterKey, issuer, subject, audience, time.Now().Add(time.Hour), time.Now().Add(2*time.Hour)),
			401, "invalid_client", 700024},
		"badly signed":         {tenant, puller, signed(otherKey, issuer, subject, audience, past, hour), 401, "invalid_client", 50013},
		"unknown application":  {tenant, "99999999-9999-4999-8999-999999999999", validAssertion(t), 400, "unauthorized_client", 700016},
		"unknown tenant":       {"00000000-0000-4000-8000-00000000dead", puller, validAssertion(t), 400, "invalid_request", 90002},
		"another tenant's app": {"ad000000-0000-4000-8000-0000000000a0", puller, validAssertion(t), 400, "unauthorized_client", 700016},
		"not a JWT":            {tenant, puller, "not-a-jwt", 400, "invalid_request", 50027},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			r := entraTokenRequest(t, tc.tenant, tc.client, tc.assertion)
			if r.status != tc.status || r.str("error") != tc.kind {
				t.Fatalf("HTTP %d %q, want %d %q (%s)", r.status, r.str("error"), tc.status, tc.kind, r.str("error_description"))
			}
			codes, _ := r.body["error_codes"].([]any)
			if len(codes) != 1 || codes[0] != tc.code {
				t.Errorf("error_codes %v, want [%v]", r.body["error_codes"], tc.code)
			}
			if !strings.HasPrefix(r.str("error_description"), "AADSTS"+big.NewInt(int64(tc.code)).String()+": ") {
				t.Errorf("description %q does not start with the AADSTS code", r.str("error_description"))
			}
			for _, field := range []string{"trace_id", "correlation_id", "timestamp"} {
				if r.str(field) == "" {
					t.Errorf("no %s", field)
				}
			}
			if strings.Contains(string(r.raw), tc.assertion) {
				t.Error("the error quotes the assertion")
			}
		})
	}
}

func assertionCredential(t *testing.T, authorityHost string, getAssertion func(context.Context) (string, error)) *azidentity.ClientAssertionCredential {
	t.Helper()
	return assertionCredentialWith(t, sdkOptions(), authorityHost, getAssertion)
}

func assertionCredentialWith(t *testing.T, opts azcore.ClientOptions, authorityHost string, getAssertion func(context.Context) (string, error)) *azidentity.ClientAssertionCredential {
	t.Helper()
	opts.Cloud = cloud.Configuration{ActiveDirectoryAuthorityHost: authorityHost}
	cred, err := azidentity.NewClientAssertionCredential(tenant, puller, getAssertion,
		&azidentity.ClientAssertionCredentialOptions{ClientOptions: opts, DisableInstanceDiscovery: true})
	if err != nil {
		t.Fatal(err)
	}
	return cred
}

// azidentity's ClientAssertionCredential (MSAL underneath: discovery, then the token endpoint) gets a token whose
// signature verifies against the keys the discovery document points to, with Entra's claims.
func TestClientAssertionCredentialGetsAVerifiableToken(t *testing.T) {
	ctx := testContext(t)
	cred := assertionCredential(t, "https://login.microsoftonline.com/", func(context.Context) (string, error) { return validAssertion(t), nil })
	tok, err := cred.GetToken(ctx, policy.TokenRequestOptions{Scopes: []string{acrScope}})
	if err != nil {
		t.Fatal(err)
	}
	if until := time.Until(tok.ExpiresOn); until < 55*time.Minute || until > 61*time.Minute {
		t.Errorf("expires in %s, want about an hour", until)
	}
	discovery := get(t, "https://login.microsoftonline.com/"+tenant+"/v2.0/.well-known/openid-configuration", nil)
	keys := get(t, discovery.str("jwks_uri"), nil)
	if discovery.status != 200 || keys.status != 200 {
		t.Fatalf("discovery HTTP %d, keys HTTP %d", discovery.status, keys.status)
	}
	claims := jwt.MapClaims{}
	_, err = jwt.NewParser(jwt.WithValidMethods([]string{"RS256"}), jwt.WithExpirationRequired()).ParseWithClaims(tok.Token, claims,
		func(token *jwt.Token) (any, error) { return keyFromJWKS(t, keys.body, token.Header["kid"]), nil })
	if err != nil {
		t.Fatalf("the token does not verify with the published keys: %v", err)
	}
	want := map[string]string{
		"aud": "https://containerregistry.azure.net", "iss": "https://sts.windows.net/" + tenant + "/", "tid": tenant,
		"appid": puller, "azp": puller, "oid": "principal-" + puller, "sub": "principal-" + puller,
	}
	for claim, value := range want {
		if claims[claim] != value {
			t.Errorf("claim %s = %v, want %s", claim, claims[claim], value)
		}
	}
}

func keyFromJWKS(t *testing.T, set map[string]any, kid any) *rsa.PublicKey {
	t.Helper()
	keys, _ := set["keys"].([]any)
	for _, k := range keys {
		m, _ := k.(map[string]any)
		if m["kid"] != kid {
			continue
		}
		n, _ := base64.RawURLEncoding.DecodeString(m["n"].(string))
		e, _ := base64.RawURLEncoding.DecodeString(m["e"].(string))
		return &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: int(new(big.Int).SetBytes(e).Int64())}
	}
	t.Fatalf("no key %v in the published set", kid)
	return nil
}

// An assertion the federated credential does not match fails in azidentity with Entra's 400 and AADSTS70021, and
// the SDK's error does not carry the assertion.
func TestClientAssertionCredentialSurfacesEntraRefusals(t *testing.T) {
	ctx := testContext(t)
	wrong := assertion(t, clusterKey, issuer, "system:serviceaccount:app:impostor", audience, time.Now().Add(-time.Minute), time.Now().Add(time.Hour))
	cred := assertionCredential(t, "https://login.microsoftonline.com/", func(context.Context) (string, error) { return wrong, nil })
	_, err := cred.GetToken(ctx, policy.TokenRequestOptions{Scopes: []string{acrScope}})
	var authErr *azidentity.AuthenticationFailedError
	if !errors.As(err, &authErr) || authErr.RawResponse == nil {
		t.Fatalf("got %v, want an AuthenticationFailedError with the response", err)
	}
	if authErr.RawResponse.StatusCode != http.StatusBadRequest || !strings.Contains(err.Error(), "AADSTS70021") {
		t.Errorf("HTTP %d, %v; want 400 AADSTS70021", authErr.RawResponse.StatusCode, err)
	}
	if strings.Contains(err.Error(), wrong) {
		t.Error("the error carries the assertion")
	}
}

// An air-gapped cloud's authority host works once added; one never added is refused at the proxy, so nothing is
// sent anywhere.
func TestAuthorityHostsOfOtherClouds(t *testing.T) {
	ctx := testContext(t)
	fake.AddAuthorityHost("login.airgap.example")
	cred := assertionCredential(t, "https://login.airgap.example/", func(context.Context) (string, error) { return validAssertion(t), nil })
	if _, err := cred.GetToken(ctx, policy.TokenRequestOptions{Scopes: []string{acrScope}}); err != nil {
		t.Fatalf("added authority host: %v", err)
	}
	for _, sovereign := range []string{"https://login.microsoftonline.us/", "https://login.chinacloudapi.cn/"} {
		cred := assertionCredential(t, sovereign, func(context.Context) (string, error) { return validAssertion(t), nil })
		if _, err := cred.GetToken(ctx, policy.TokenRequestOptions{Scopes: []string{acrScope}}); err != nil {
			t.Errorf("%s: %v", sovereign, err)
		}
	}
	// Public Entra ID's instance discovery does not know an air-gapped cloud's host, so there, as for real, a client
	// must not validate the authority.
	opts := sdkOptions()
	opts.Cloud = cloud.Configuration{ActiveDirectoryAuthorityHost: "https://login.airgap.example/"}
	validating, err := azidentity.NewClientAssertionCredential(tenant, puller, func(context.Context) (string, error) { return validAssertion(t), nil },
		&azidentity.ClientAssertionCredentialOptions{ClientOptions: opts})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := validating.GetToken(ctx, policy.TokenRequestOptions{Scopes: []string{acrScope}}); err == nil || !strings.Contains(err.Error(), "invalid_instance") {
		t.Errorf("instance discovery of an air-gapped host: %v, want invalid_instance", err)
	}
	before := fake.HostRequests("login.unknown.example")
	noRetries := sdkOptions()
	noRetries.Retry.MaxRetries = -1 // the SDK would retry the refused tunnel for seconds
	cred = assertionCredentialWith(t, noRetries, "https://login.unknown.example/", func(context.Context) (string, error) { return validAssertion(t), nil })
	if _, err := cred.GetToken(ctx, policy.TokenRequestOptions{Scopes: []string{acrScope}}); err == nil {
		t.Fatal("an unknown authority host answered")
	}
	if fake.HostRequests("login.unknown.example") == before {
		t.Error("the proxy never saw the refused host")
	}
}

// Client secrets work for service principals, and a wrong one is AADSTS7000215 with 401.
func TestClientSecrets(t *testing.T) {
	ctx := testContext(t)
	const app = "66666666-6666-4666-8666-666666666666"
	fake.AddIdentity(azurefake.Identity{ClientID: app, TenantID: tenant})
	fake.AddClientSecret(app, "s3cret~value")
	opts := &azidentity.ClientSecretCredentialOptions{ClientOptions: sdkOptions(), DisableInstanceDiscovery: true}
	good, err := azidentity.NewClientSecretCredential(tenant, app, "s3cret~value", opts)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := good.GetToken(ctx, policy.TokenRequestOptions{Scopes: []string{acrScope}}); err != nil {
		t.Fatalf("right secret: %v", err)
	}
	r := postForm(t, "https://login.microsoftonline.com/"+tenant+"/oauth2/v2.0/token", url.Values{
		"grant_type": {"client_credentials"}, "client_id": {app}, "scope": {acrScope}, "client_secret": {"wrong"},
	})
	if r.status != http.StatusUnauthorized || !strings.HasPrefix(r.str("error_description"), "AADSTS7000215:") {
		t.Errorf("wrong secret: HTTP %d %s", r.status, r.str("error_description"))
	}
}

// Client credentials need a single "<resource>/.default" scope, as Entra ID insists.
func TestClientCredentialsScopeMustBeDotDefault(t *testing.T) {
	r := postForm(t, "https://login.microsoftonline.com/"+tenant+"/oauth2/v2.0/token", url.Values{
		"grant_type": {"client_credentials"}, "client_id": {puller}, "scope": {"https://containerregistry.azure.net"},
		"client_assertion_type": {"urn:ietf:params:oauth:client-assertion-type:jwt-bearer"}, "client_assertion": {validAssertion(t)},
	})
	if r.status != http.StatusBadRequest || r.str("error") != "invalid_scope" {
		t.Errorf("HTTP %d %s", r.status, r.str("error_description"))
	}
}
