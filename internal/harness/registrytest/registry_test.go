/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

package registrytest_test

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math/big"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/acrpull/acrpull/internal/dockerconfig"
	"github.com/acrpull/acrpull/internal/harness/azurefake"
	"github.com/acrpull/acrpull/internal/harness/registrytest"
)

const (
	host     = "tests.azurecr.io"
	tenant   = "0d0e0f10-1112-4314-9516-171819202122"
	pullerID = "c1c1c1c1-0000-4000-8000-000000000001"
)

// world is a cloud with a registry holding alice:v1 and bob:v1, and an identity allowed to pull alice only.
func world(t *testing.T) (*azurefake.Cloud, *registrytest.Registry) {
	t.Helper()
	cloud := azurefake.StartForTest(t)
	reg := registrytest.Start(t, cloud, host)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, repo := range []string{"alice", "bob"} {
		if err := reg.PushRandom(ctx, repo, "v1"); err != nil {
			t.Fatalf("pushing %s: %v", repo, err)
		}
	}
	cloud.AddIdentity(azurefake.Identity{ClientID: pullerID, TenantID: tenant})
	cloud.AddRoleAssignment(pullerID, host, []string{"alice"}, []string{"pull"})
	return cloud, reg
}

// accessToken asks the fake's ACR token endpoint for a token of the puller, as acrpull does.
func accessToken(t *testing.T, cloud *azurefake.Cloud, scope string) string {
	t.Helper()
	refresh, err := cloud.IssueRefreshToken(pullerID, host)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := cloud.HTTPClient().PostForm("https://"+host+"/oauth2/token", url.Values{
		"grant_type": {"refresh_token"}, "service": {host}, "scope": {scope}, "refresh_token": {refresh},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body struct {
		AccessToken string `json:"access_token"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("token endpoint: HTTP %d, %v", resp.StatusCode, err)
	}
	return body.AccessToken
}

// A pull secret holding a token scoped to alice pulls alice through the proxy and is refused on bob by the registry
// itself, with 401.
func TestPullSecretPullsItsScopeOnly(t *testing.T) {
	cloud, reg := world(t)
	ctx := context.Background()
	secret, err := dockerconfig.Render(host, accessToken(t, cloud, "repository:alice:pull"))
	if err != nil {
		t.Fatal(err)
	}
	if err := reg.Pull(ctx, "alice", "v1", secret); err != nil {
		t.Fatalf("pulling alice: %v", err)
	}
	err = registrytest.Pull(ctx, reg.Transport(), host, "bob", "v1", secret)
	if !registrytest.IsDenied(err) {
		t.Fatalf("pulling bob: got %v (HTTP %d), want the registry's 401/403", err, registrytest.StatusCode(err))
	}
	if got := cloud.StatusCounts()[azurefake.RegistryV2][http.StatusUnauthorized]; got == 0 {
		t.Error("the registry never answered 401 through the proxy")
	}
}

// The auth field alone (base64 user:password), as some tools write it, is enough to pull.
func TestPullReadsTheAuthField(t *testing.T) {
	cloud, reg := world(t)
	token := accessToken(t, cloud, "repository:alice:pull")
	secret := fmt.Appendf(nil, `{"auths":{%q:{"auth":%q}}}`, host, base64.StdEncoding.EncodeToString([]byte(dockerconfig.TokenUsername+":"+token)))
	if err := reg.Pull(context.Background(), "alice", "v1", secret); err != nil {
		t.Fatal(err)
	}
}

// The registry verifies bearer tokens itself: one the fake signed reads the manifest, a look-alike signed by another
// key (with its own certificate in x5c) and one without exp are refused.
func TestRegistryEnforcesTheFakesTokens(t *testing.T) {
	cloud, _ := world(t)
	genuine := accessToken(t, cloud, "repository:alice:pull")
	if status := manifestStatus(t, cloud, genuine); status != http.StatusOK {
		t.Fatalf("genuine token: HTTP %d, want 200", status)
	}
	if status := manifestStatus(t, cloud, forge(t, genuine)); status != http.StatusUnauthorized {
		t.Errorf("token signed by another key: HTTP %d, want 401", status)
	}
	cloud.SetFault(azurefake.ACRToken, azurefake.Fault{NoExp: true, Count: 1})
	if status := manifestStatus(t, cloud, accessToken(t, cloud, "repository:alice:pull")); status != http.StatusUnauthorized {
		t.Errorf("token without exp: HTTP %d, want 401", status)
	}
}

func manifestStatus(t *testing.T, cloud *azurefake.Cloud, bearer string) int {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, "https://"+host+"/v2/alice/manifests/v1", nil)
	req.Header.Set("Authorization", "Bearer "+bearer)
	req.Header.Set("Accept", "application/vnd.docker.distribution.manifest.v2+json")
	resp, err := cloud.HTTPClient().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	return resp.StatusCode
}

// forge copies a genuine token's claims into a token signed by a fresh key that carries its own self-signed
// certificate, the way an attacker without the fake's key would try.
func forge(t *testing.T, genuine string) string {
	t.Helper()
	claims := jwt.MapClaims{}
	if _, _, err := jwt.NewParser().ParseUnverified(genuine, claims); err != nil {
		t.Fatal(err)
	}
	key, _ := rsa.GenerateKey(rand.Reader, 2048)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(9), Subject: pkix.Name{CommonName: azurefake.ACRIssuer},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	token := jwt.NewWithClaims(jwt.SigningMethodRS256, claims)
	token.Header["x5c"] = []string{base64.StdEncoding.EncodeToString(der)}
	signed, err := token.SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return signed
}

// Without the binary the error says where it looked and how to build it.
func TestMissingBinaryIsExplained(t *testing.T) {
	t.Setenv("KUBEBUILDER_ASSETS", t.TempDir())
	t.Setenv("ACRPULL_CACHE", t.TempDir())
	_, err := registrytest.Binary()
	if err == nil || !strings.Contains(err.Error(), "hack/test-env.sh") {
		t.Fatalf("got %v, want an error naming hack/test-env.sh", err)
	}
}
