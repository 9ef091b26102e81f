/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

package azurefake_test

import (
	"context"
	"encoding/base64"
	"errors"
	"net/http"
	"net/url"
	"reflect"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	"github.com/Azure/azure-sdk-for-go/sdk/containers/azcontainerregistry"

	"github.com/acrpull/acrpull/internal/harness/azurefake"
)

func acrClient(t *testing.T, registryHost string) *azcontainerregistry.AuthenticationClient {
	t.Helper()
	client, err := azcontainerregistry.NewAuthenticationClient("https://"+registryHost,
		&azcontainerregistry.AuthenticationClientOptions{ClientOptions: sdkOptions()})
	if err != nil {
		t.Fatal(err)
	}
	return client
}

// exchange trades an Entra token at registryHost's /oauth2/exchange through the SDK.
func exchange(ctx context.Context, t *testing.T, registryHost, service, entraToken string) (string, error) {
	t.Helper()
	resp, err := acrClient(t, registryHost).ExchangeAADAccessTokenForACRRefreshToken(ctx,
		azcontainerregistry.PostContentSchemaGrantTypeAccessToken, service,
		&azcontainerregistry.AuthenticationClientExchangeAADAccessTokenForACRRefreshTokenOptions{AccessToken: &entraToken})
	if err != nil {
		return "", err
	}
	return *resp.RefreshToken, nil
}

// accessToken trades a refresh token for a scoped access token through the SDK.
func accessToken(ctx context.Context, t *testing.T, scope, refreshToken string) (string, error) {
	t.Helper()
	resp, err := acrClient(t, host).ExchangeACRRefreshTokenForACRAccessToken(ctx, host, scope, refreshToken,
		&azcontainerregistry.AuthenticationClientExchangeACRRefreshTokenForACRAccessTokenOptions{GrantType: to.Ptr(azcontainerregistry.TokenGrantTypeRefreshToken)})
	if err != nil {
		return "", err
	}
	return *resp.AccessToken, nil
}

// imdsToken is an Entra token of an identity assigned to the VM, for resource, straight from IMDS.
func imdsToken(t *testing.T, clientID, resource string) string {
	t.Helper()
	r := get(t, "http://169.254.169.254/metadata/identity/oauth2/token?api-version=2018-02-01&client_id="+clientID+
		"&resource="+url.QueryEscape(resource), map[string]string{"Metadata": "true"})
	if r.status != http.StatusOK {
		t.Fatalf("IMDS: HTTP %d %s", r.status, r.raw)
	}
	return r.str("access_token")
}

func statusOf(err error) int {
	var respErr *azcore.ResponseError
	if errors.As(err, &respErr) {
		return respErr.StatusCode
	}
	return 0
}

// The registry exchanges Entra tokens of the ACR or ARM audiences, for identities with a role on it, and refuses the
// rest with 401.
func TestACRExchangeAcceptsAndRefuses(t *testing.T) {
	ctx := testContext(t)
	acrToken, err := managedIdentityToken(t, azidentity.ClientID(puller), acrScope)
	if err != nil {
		t.Fatal(err)
	}
	armToken := imdsToken(t, puller, "https://management.azure.com/")
	refresh, err := exchange(ctx, t, host, host, acrToken)
	if err != nil {
		t.Fatalf("ACR audience: %v", err)
	}
	claims := claimsOf(t, refresh)
	if claims["iss"] != azurefake.ACRIssuer || claims["aud"] != host || claims["grant_type"] != "refresh_token" || claims["appid"] != puller {
		t.Errorf("refresh token claims %v", claims)
	}
	if exp, _ := claims.GetExpirationTime(); exp == nil || time.Until(exp.Time) < 2*time.Hour {
		t.Errorf("refresh token expires at %v, want about 3 h from now", exp)
	}
	if _, err := exchange(ctx, t, host, host, armToken); err != nil {
		t.Errorf("ARM audience: %v", err)
	}

	fake.AddRegistry(azurefake.Registry{Host: "armless.azurecr.io", DisableARMAudience: true})
	fake.AddRoleAssignment(puller, "armless.azurecr.io", []string{"*"}, []string{"pull"})
	graphToken := imdsToken(t, puller, "https://graph.microsoft.com")
	cases := map[string]struct{ registry, service, token string }{
		"audience of another resource":         {host, host, graphToken},
		"identity without a role":              {host, host, imdsToken(t, roleless, "https://containerregistry.azure.net")},
		"service naming another registry":      {host, "other.azurecr.io", acrToken},
		"ARM audience with ARM auth disabled":  {"armless.azurecr.io", "armless.azurecr.io", armToken},
		"token not signed by Entra ID":         {host, host, tamper(t, acrToken)},
		"refresh token instead of Entra token": {host, host, refresh},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := exchange(ctx, t, tc.registry, tc.service, tc.token)
			if statusOf(err) != http.StatusUnauthorized {
				t.Fatalf("got %v, want 401", err)
			}
		})
	}
	if _, err := exchange(ctx, t, "armless.azurecr.io", "armless.azurecr.io", acrToken); err != nil {
		t.Errorf("ACR audience at a registry with ARM auth disabled: %v", err)
	}
}

// tamper changes a token's payload, keeping its signature, so only a verifying server notices.
func tamper(t *testing.T, token string) string {
	t.Helper()
	parts := splitJWT(t, token)
	payload, _ := base64.RawURLEncoding.DecodeString(parts[1])
	payload = append(payload[:len(payload)-1], []byte(`,"x":"y"}`)...)
	return parts[0] + "." + base64.RawURLEncoding.EncodeToString(payload) + "." + parts[2]
}

func splitJWT(t *testing.T, token string) [3]string {
	t.Helper()
	var parts [3]string
	i, n := 0, 0
	for j := range token {
		if token[j] == '.' {
			if n == 2 {
				t.Fatal("not a JWT")
			}
			parts[n] = token[i:j]
			n, i = n+1, j+1
		}
	}
	if n != 2 {
		t.Fatal("not a JWT")
	}
	parts[2] = token[i:]
	return parts
}

func accessClaim(t *testing.T, token string) []any {
	t.Helper()
	access, ok := claimsOf(t, token)["access"].([]any)
	if !ok {
		t.Fatalf("no access claim in %v", claimsOf(t, token))
	}
	return access
}

// An access token grants the requested scope intersected with the role: outside the role there is no entry, and
// malformed or wildcard scopes are refused with 400.
func TestACRAccessTokensGrantTheRoleOnly(t *testing.T) {
	ctx := testContext(t)
	refresh, err := fake.IssueRefreshToken(puller, host)
	if err != nil {
		t.Fatal(err)
	}
	grants := map[string][]any{
		"repository:alice:pull":                     {map[string]any{"type": "repository", "name": "alice", "actions": []any{"pull"}}},
		"repository:alice:pull,push":                {map[string]any{"type": "repository", "name": "alice", "actions": []any{"pull"}}},
		"repository:bob:pull":                       {},
		"repository:bob:pull repository:alice:pull": {map[string]any{"type": "repository", "name": "alice", "actions": []any{"pull"}}},
	}
	for scope, want := range grants {
		token, err := accessToken(ctx, t, scope, refresh)
		if err != nil {
			t.Fatalf("%s: %v", scope, err)
		}
		if got := accessClaim(t, token); !reflect.DeepEqual(got, want) {
			t.Errorf("%s: access %v, want %v", scope, got, want)
		}
	}
	for _, scope := range []string{"repository:*:pull", "repository:alice", "alice"} {
		if _, err := accessToken(ctx, t, scope, refresh); statusOf(err) != http.StatusBadRequest {
			t.Errorf("%s: %v, want 400", scope, err)
		}
	}
	otherRefresh, err := fake.IssueRefreshToken(puller, "armless.azurecr.io")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := accessToken(ctx, t, "repository:alice:pull", otherRefresh); statusOf(err) != http.StatusUnauthorized {
		t.Errorf("refresh token of another registry: %v, want 401", err)
	}
}

// The Docker token endpoint takes a refresh token or an access token as the Basic password; an access token can
// only narrow what it holds. Without credentials it challenges.
func TestDockerTokenEndpoint(t *testing.T) {
	refresh, err := fake.IssueRefreshToken(puller, host)
	if err != nil {
		t.Fatal(err)
	}
	basic := func(password string) map[string]string {
		return map[string]string{"Authorization": "Basic " + base64.StdEncoding.EncodeToString([]byte(azurefake.TokenUsername+":"+password))}
	}
	target := "https://" + host + "/oauth2/token?service=" + host + "&scope=repository:alice:pull&scope=repository:bob:pull"
	r := get(t, target, basic(refresh))
	if r.status != http.StatusOK || r.str("token") == "" || r.str("token") != r.str("access_token") {
		t.Fatalf("with a refresh token: HTTP %d %s", r.status, r.raw)
	}
	if access := accessClaim(t, r.str("token")); len(access) != 1 {
		t.Errorf("access %v, want alice only", access)
	}
	narrow := r.str("token")
	r = get(t, "https://"+host+"/oauth2/token?service="+host+"&scope=repository:alice:pull,push", basic(narrow))
	if r.status != http.StatusOK || !reflect.DeepEqual(accessClaim(t, r.str("token")), accessClaim(t, narrow)) {
		t.Errorf("with an access token: HTTP %d, access %v", r.status, r.body)
	}
	r = get(t, target, nil)
	if r.status != http.StatusUnauthorized || r.header.Get("WWW-Authenticate") == "" {
		t.Errorf("without credentials: HTTP %d, challenge %q", r.status, r.header.Get("WWW-Authenticate"))
	}
	if r = get(t, target, basic("not-a-token")); r.status != http.StatusUnauthorized {
		t.Errorf("with garbage: HTTP %d", r.status)
	}
}
