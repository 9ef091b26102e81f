/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

package azurefake_test

import (
	"crypto/sha1"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	"github.com/golang-jwt/jwt/v5"

	"github.com/acrpull/acrpull/internal/harness/azurefake"
	"github.com/acrpull/acrpull/internal/harness/azurefake/certtest"
)

const tokenEndpoint = "https://login.microsoftonline.com/" + tenant + "/oauth2/v2.0/token"

func newCert(t *testing.T) *certtest.Certificate {
	t.Helper()
	cert, err := certtest.New("acrpull test")
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

// certAssertion signs a client assertion the way MSAL does for Entra ID (PS256, x5t#S256 in standard base64) unless
// the header or claims are overridden. A nil value removes a claim or header.
func certAssertion(t *testing.T, cert *certtest.Certificate, method jwt.SigningMethod, header map[string]any, claims jwt.MapClaims) string {
	t.Helper()
	sum := sha256.Sum256(cert.Cert.Raw)
	base := jwt.MapClaims{
		"aud": tokenEndpoint, "iss": certApp, "sub": certApp, "jti": "j",
		"nbf": time.Now().Unix(), "exp": time.Now().Add(10 * time.Minute).Unix(),
	}
	for k, v := range claims {
		if v == nil {
			delete(base, k)
			continue
		}
		base[k] = v
	}
	tok := jwt.NewWithClaims(method, base)
	tok.Header["x5t#S256"] = base64.StdEncoding.EncodeToString(sum[:])
	for k, v := range header {
		if v == nil {
			delete(tok.Header, k)
			continue
		}
		tok.Header[k] = v
	}
	s, err := tok.SignedString(cert.Key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// certApp is a service principal with a registered certificate, set up by registeredCert.
const certApp = "88888888-8888-4888-8888-888888888888"

func registeredCert(t *testing.T) *certtest.Certificate {
	t.Helper()
	cert := newCert(t)
	fake.AddIdentity(azurefake.Identity{ClientID: certApp, TenantID: tenant})
	fake.RemoveClientCertificates(certApp)
	fake.AddClientCertificate(certApp, cert.Cert)
	t.Cleanup(func() { fake.RemoveClientCertificates(certApp) })
	return cert
}

func certTokenRequest(t *testing.T, clientID, assertion string) response {
	t.Helper()
	return postForm(t, tokenEndpoint, url.Values{
		"grant_type": {"client_credentials"}, "client_id": {clientID}, "scope": {"https://vault.azure.net/.default"},
		"client_assertion_type": {"urn:ietf:params:oauth:client-assertion-type:jwt-bearer"}, "client_assertion": {assertion},
	})
}

// A certificate assertion is accepted when signed by the registered certificate's key, named by either thumbprint
// header in either base64 alphabet, with RS256 or PS256.
func TestCertificateAssertionsAccepted(t *testing.T) {
	cert := registeredCert(t)
	sha1Sum := sha1.Sum(cert.Cert.Raw)
	sha256Sum := sha256.Sum256(cert.Cert.Raw)
	cases := map[string]struct {
		method jwt.SigningMethod
		header map[string]any
	}{
		"MSAL for Entra ID (PS256, x5t#S256 std base64)": {jwt.SigningMethodPS256, nil},
		"RFC 7515 (PS256, x5t#S256 base64url)": {jwt.SigningMethodPS256,
			map[string]any{"x5t#S256": base64.RawURLEncoding.EncodeToString(sha256Sum[:])}},
		"MSAL for ADFS (RS256, x5t)": {jwt.SigningMethodRS256,
			map[string]any{"x5t#S256": nil, "x5t": base64.StdEncoding.EncodeToString(sha1Sum[:])}},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			r := certTokenRequest(t, certApp, certAssertion(t, cert, tc.method, tc.header, nil))
			if r.status != http.StatusOK {
				t.Fatalf("HTTP %d %s", r.status, r.str("error_description"))
			}
			claims := claimsOf(t, r.str("access_token"))
			if claims["aud"] != "https://vault.azure.net" || claims["appid"] != certApp || claims["tid"] != tenant {
				t.Errorf("claims %v", claims)
			}
		})
	}
}

// Entra ID refuses certificate assertions it cannot tie to a registered, valid certificate, or whose claims are not
// those of a client authenticating itself at this tenant's token endpoint.
func TestCertificateAssertionsRefused(t *testing.T) {
	cert := registeredCert(t)
	other := newCert(t)
	expired, err := certtest.NewValid("expired", time.Now().Add(-48*time.Hour), time.Now().Add(-24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	const expiredApp = "88888888-8888-4888-8888-8888888888e0"
	fake.AddIdentity(azurefake.Identity{ClientID: expiredApp, TenantID: tenant})
	fake.AddClientCertificate(expiredApp, expired.Cert)
	past := time.Now().Add(-time.Hour).Unix()
	cases := map[string]struct {
		client, assertion string
		status            int
		code              float64
	}{
		"unregistered certificate": {certApp, certAssertion(t, other, jwt.SigningMethodPS256, nil, nil), 401, 700027},
		"no thumbprint":            {certApp, certAssertion(t, cert, jwt.SigningMethodPS256, map[string]any{"x5t#S256": nil}, nil), 401, 700027},
		"registered thumbprint, other key": {certApp, certAssertion(t, other, jwt.SigningMethodPS256,
			map[string]any{"x5t#S256": base64.StdEncoding.EncodeToString(sha256Sum(cert))}, nil), 401, 700027},
		"thumbprint of another app's certificate": {certApp, certAssertion(t, expired, jwt.SigningMethodPS256, nil,
			jwt.MapClaims{"iss": certApp}), 401, 700027},
		"expired certificate": {expiredApp, certAssertion(t, expired, jwt.SigningMethodPS256, nil,
			jwt.MapClaims{"iss": expiredApp, "sub": expiredApp}), 401, 700027},
		"other tenant's endpoint": {certApp, certAssertion(t, cert, jwt.SigningMethodPS256, nil,
			jwt.MapClaims{"aud": "https://login.microsoftonline.com/ad000000-0000-4000-8000-0000000000a0/oauth2/v2.0/token"}), 401, 700023},
		"subject is not the client": {certApp, certAssertion(t, cert, jwt.SigningMethodPS256, nil, jwt.MapClaims{"sub": stranger}), 401, 700021},
		"expired assertion": {certApp, certAssertion(t, cert, jwt.SigningMethodPS256, nil,
			jwt.MapClaims{"nbf": past - 600, "exp": past}), 401, 700024},
		"no exp": {certApp, certAssertion(t, cert, jwt.SigningMethodPS256, nil, jwt.MapClaims{"exp": nil}), 400, 50027},
		"not yet valid": {certApp, certAssertion(t, cert, jwt.SigningMethodPS256, nil,
			jwt.MapClaims{"nbf": time.Now().Add(time.Hour).Unix(), "exp": time.Now().Add(2 * time.Hour).Unix()}), 401, 700024},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			r := certTokenRequest(t, tc.client, tc.assertion)
			codes, _ := r.body["error_codes"].([]any)
			if r.status != tc.status || len(codes) != 1 || codes[0] != tc.code {
				t.Fatalf("HTTP %d %v, want %d [%v] (%s)", r.status, r.body["error_codes"], tc.status, tc.code, r.str("error_description"))
			}
			if tc.status == 401 && r.str("error") != "invalid_client" {
				t.Errorf("error %q, want invalid_client", r.str("error"))
			}
			if strings.Contains(string(r.raw), tc.assertion) {
				t.Error("the error quotes the assertion")
			}
		})
	}
}

func sha256Sum(cert *certtest.Certificate) []byte {
	s := sha256.Sum256(cert.Cert.Raw)
	return s[:]
}

// azidentity's ClientCertificateCredential, reading the PKCS#12 a Secret would hold, authenticates against the
// certificate registered on the application, with and without the x5c chain; an unregistered certificate fails in
// the SDK with Entra's 401 AADSTS700027.
func TestClientCertificateCredential(t *testing.T) {
	ctx := testContext(t)
	cert := registeredCert(t)
	bundle, err := cert.PKCS12("p@ss")
	if err != nil {
		t.Fatal(err)
	}
	certs, key, err := azidentity.ParseCertificates(bundle, []byte("p@ss"))
	if err != nil {
		t.Fatal(err)
	}
	for _, sendChain := range []bool{false, true} {
		cred, err := azidentity.NewClientCertificateCredential(tenant, certApp, certs, key, &azidentity.ClientCertificateCredentialOptions{
			ClientOptions: sdkOptions(), DisableInstanceDiscovery: true, SendCertificateChain: sendChain})
		if err != nil {
			t.Fatal(err)
		}
		tok, err := cred.GetToken(ctx, policy.TokenRequestOptions{Scopes: []string{"https://management.azure.com/.default"}})
		if err != nil {
			t.Fatalf("x5c %v: %v", sendChain, err)
		}
		if aud := claimsOf(t, tok.Token)["aud"]; aud != "https://management.azure.com" {
			t.Errorf("aud %v", aud)
		}
	}
	stranger := newCert(t)
	cred, err := azidentity.NewClientCertificateCredential(tenant, certApp, []*x509.Certificate{stranger.Cert}, stranger.Key,
		&azidentity.ClientCertificateCredentialOptions{ClientOptions: sdkOptions(), DisableInstanceDiscovery: true})
	if err != nil {
		t.Fatal(err)
	}
	_, err = cred.GetToken(ctx, policy.TokenRequestOptions{Scopes: []string{acrScope}})
	var authErr *azidentity.AuthenticationFailedError
	if !errors.As(err, &authErr) || authErr.RawResponse == nil || authErr.RawResponse.StatusCode != 401 || !strings.Contains(err.Error(), "AADSTS700027") {
		t.Fatalf("unregistered certificate: %v, want 401 AADSTS700027", err)
	}
}

// The JSON configuration registers certificates from a PEM file or inline PEM.
func TestJSONConfigClientCertificates(t *testing.T) {
	fromFile, inline := newCert(t), newCert(t)
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "cert.pem"), string(fromFile.CertificatePEM()))
	const app = "88888888-8888-4888-8888-8888888888c0"
	raw := fmt.Sprintf(`{"identities": [{"clientID": %q, "tenantID": %q}],
		"clientCertificates": [{"clientID": %q, "certificateFile": %q}, {"clientID": %q, "certificatePEM": %q}]}`,
		app, tenant, app, filepath.Join(dir, "cert.pem"), app, inline.CertificatePEM())
	var cfg azurefake.Config
	if err := json.Unmarshal([]byte(raw), &cfg); err != nil {
		t.Fatal(err)
	}
	if err := fake.ApplyConfig(cfg); err != nil {
		t.Fatal(err)
	}
	for name, cert := range map[string]*certtest.Certificate{"file": fromFile, "inline": inline} {
		a := certAssertion(t, cert, jwt.SigningMethodPS256, nil, jwt.MapClaims{"iss": app, "sub": app})
		if r := certTokenRequest(t, app, a); r.status != http.StatusOK {
			t.Errorf("%s: HTTP %d %s", name, r.status, r.str("error_description"))
		}
	}
	for _, bad := range []azurefake.ClientCertificateConfig{
		{ClientID: app},
		{ClientID: app, CertificatePEM: "not PEM"},
		{ClientID: app, CertificateFile: filepath.Join(dir, "missing.pem")},
	} {
		if err := fake.ApplyConfig(azurefake.Config{ClientCertificates: []azurefake.ClientCertificateConfig{bad}}); err == nil {
			t.Errorf("%+v was accepted", bad)
		}
	}
}
