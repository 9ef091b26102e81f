/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

package azauth_test

import (
	"context"
	"errors"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/acrpull/acrpull/internal/azauth"
	"github.com/acrpull/acrpull/internal/azauth/armidentity"
	"github.com/acrpull/acrpull/internal/harness/azurefake"
	"github.com/acrpull/acrpull/internal/harness/azurefake/certtest"
)

// The service principals these tests authenticate as, in a fake cloud reached only through its proxy, as production
// reaches Azure through HTTPS_PROXY.
const (
	home   = "72f988bf-86f1-41af-91ab-2d7cd011db47"
	auxOne = "a0000000-0000-4000-8000-0000000000a1"
	auxTwo = "a0000000-0000-4000-8000-0000000000a2"
	// foreign holds other applications, but not ours.
	foreign = "a0000000-0000-4000-8000-0000000000f0"

	secretApp = "5ec7e700-0000-4000-8000-000000000001"
	certApp   = "ce470000-0000-4000-8000-000000000002"
	secret    = "s3cret~Value.only-Entra-knows"
	password  = "pkcs12~pa55word"
	vault     = "https://vault.azure.net"
)

var (
	fake *azurefake.Cloud
	cert *certtest.Certificate
)

func TestMain(m *testing.M) {
	os.Exit(azurefake.RunTests(m, &fake, func(cloud *azurefake.Cloud) error {
		var err error
		if cert, err = certtest.New("acrpull azauth test"); err != nil {
			return err
		}
		cloud.AddIdentity(azurefake.Identity{ClientID: secretApp, TenantID: home, AdditionalTenants: []string{auxOne, auxTwo}})
		cloud.AddClientSecret(secretApp, secret)
		cloud.AddIdentity(azurefake.Identity{ClientID: certApp, TenantID: home})
		cloud.AddClientCertificate(certApp, cert.Cert)
		cloud.AddIdentity(azurefake.Identity{ClientID: "f0000000-0000-4000-8000-000000000003", TenantID: foreign})
		return nil
	}))
}

func newClient() *azauth.Client {
	return azauth.NewClient(azauth.Options{HTTPClient: fake.HTTPClient(), CallTimeout: 10 * time.Second})
}

func testContext(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func claimsOf(t *testing.T, tok azauth.Token) jwt.MapClaims {
	t.Helper()
	claims := jwt.MapClaims{}
	if _, _, err := jwt.NewParser().ParseUnverified(tok.Value, claims); err != nil {
		t.Fatalf("not a JWT: %v", err)
	}
	return claims
}

// checkToken asserts what AAD Pod Identity's clients are handed: the raw token for the resource, its expiry and its
// not-before, all read from the token itself.
func checkToken(t *testing.T, tok azauth.Token, tenantID, clientID, audience string) jwt.MapClaims {
	t.Helper()
	claims := claimsOf(t, tok)
	if claims["aud"] != audience || claims["tid"] != tenantID || claims["appid"] != clientID {
		t.Errorf("aud %v tid %v appid %v, want %s %s %s", claims["aud"], claims["tid"], claims["appid"], audience, tenantID, clientID)
	}
	exp, _ := claims.GetExpirationTime()
	nbf, _ := claims.GetNotBefore()
	if exp == nil || nbf == nil || !tok.ExpiresAt.Equal(exp.Time) || !tok.NotBefore.Equal(nbf.Time) {
		t.Errorf("token times %v (nbf %v), want the claims' exp %v and nbf %v", tok, tok.NotBefore, exp, nbf)
	}
	if d := time.Until(tok.ExpiresAt); d < 55*time.Minute || d > 61*time.Minute {
		t.Errorf("expires in %s, want about an hour", d)
	}
	if d := time.Since(tok.NotBefore); d < -5*time.Second || d > time.Minute {
		t.Errorf("not before %s, want about now", tok.NotBefore)
	}
	return claims
}

// failedWith asserts a classified failure whose message names the AADSTS code but repeats none of the secrets.
func failedWith(t *testing.T, err error, kind azauth.FailureKind, code string, status int, secrets ...string) *azauth.Error {
	t.Helper()
	var azErr *azauth.Error
	if !errors.As(err, &azErr) {
		t.Fatalf("got %v, want an *azauth.Error", err)
	}
	if azErr.Kind != kind || azErr.Code != code || azErr.StatusCode != status || azErr.Endpoint != azauth.EndpointEntra {
		t.Errorf("got kind %s code %q HTTP %d endpoint %s, want %s %q %d entra", azErr.Kind, azErr.Code, azErr.StatusCode, azErr.Endpoint, kind, code, status)
	}
	for _, s := range secrets {
		if strings.Contains(err.Error(), s) {
			t.Errorf("the message %q repeats a secret", err)
		}
	}
	return azErr
}

func TestClientSecretToken(t *testing.T) {
	ctx := testContext(t)
	c := newClient()
	tok, err := c.ClientSecretToken(ctx, azauth.PublicCloud, home, secretApp, secret, vault)
	if err != nil {
		t.Fatal(err)
	}
	checkToken(t, tok, home, secretApp, vault)

	_, err = c.ClientSecretToken(ctx, azauth.PublicCloud, home, secretApp, "not-"+secret, vault)
	failedWith(t, err, azauth.IdentityNotFound, "AADSTS7000215", 401, secret, "not-"+secret)
	if !strings.Contains(err.Error(), "invalid client secret") {
		t.Errorf("message %q does not say what is wrong", err)
	}
	_, err = c.ClientSecretToken(ctx, azauth.PublicCloud, home, secretApp, "", vault)
	failedWith(t, err, azauth.IdentityNotFound, "", 0)
}

// A multi-tenant application's secret gets a token from each tenant's own endpoint: three tenants, three tokens with
// three tids and service principals, one token request to each tenant.
func TestClientSecretTokenPerTenant(t *testing.T) {
	ctx := testContext(t)
	c := newClient()
	tenants := []string{home, auxOne, auxTwo}
	before := map[string]int64{}
	for _, tn := range tenants {
		before[tn] = fake.TenantTokenRequests(tn)
	}
	tids, oids := map[any]bool{}, map[any]bool{}
	for _, tn := range tenants {
		tok, err := c.ClientSecretToken(ctx, azauth.PublicCloud, tn, secretApp, secret, "https://management.azure.com/")
		if err != nil {
			t.Fatalf("tenant %s: %v", tn, err)
		}
		claims := checkToken(t, tok, tn, secretApp, "https://management.azure.com")
		tids[claims["tid"]], oids[claims["oid"]] = true, true
	}
	if len(tids) != 3 || len(oids) != 3 {
		t.Errorf("tids %v, oids %v: want three of each", tids, oids)
	}
	for _, tn := range tenants {
		if n := fake.TenantTokenRequests(tn) - before[tn]; n != 1 {
			t.Errorf("tenant %s: %d token requests, want 1", tn, n)
		}
	}

	_, err := c.ClientSecretToken(ctx, azauth.PublicCloud, foreign, secretApp, secret, vault)
	failedWith(t, err, azauth.IdentityNotFound, "AADSTS700016", 400, secret)
	if !strings.Contains(err.Error(), "application not found in the tenant") {
		t.Errorf("message %q does not say the application is missing from the tenant", err)
	}
}

func TestClientCertificateToken(t *testing.T) {
	ctx := testContext(t)
	c := newClient()
	bundle, err := cert.PKCS12(password)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := c.ClientCertificateToken(ctx, azauth.PublicCloud, home, certApp, bundle, password, vault)
	if err != nil {
		t.Fatal(err)
	}
	checkToken(t, tok, home, certApp, vault)

	// The same certificate and key in PEM, as a kubernetes.io/tls Secret holds them, need no password.
	key, err := cert.KeyPEM()
	if err != nil {
		t.Fatal(err)
	}
	pemBundle := append(cert.CertificatePEM(), key...)
	if err := azauth.CheckClientCertificate(pemBundle, ""); err != nil {
		t.Fatalf("PEM certificate and key refused: %v", err)
	}
	tok, err = c.ClientCertificateToken(ctx, azauth.PublicCloud, home, certApp, pemBundle, "", vault)
	if err != nil {
		t.Fatal(err)
	}
	checkToken(t, tok, home, certApp, vault)

	// A certificate the application does not know, in a bundle as good as the first.
	unknown, err := certtest.New("unregistered")
	if err != nil {
		t.Fatal(err)
	}
	unknownBundle, err := unknown.PKCS12(password)
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.ClientCertificateToken(ctx, azauth.PublicCloud, home, certApp, unknownBundle, password, vault)
	failedWith(t, err, azauth.IdentityNotFound, "AADSTS700027", 401, password)
}

// A bundle that does not open fails before Entra ID is asked, with a message that tells a wrong password from a
// broken bundle and repeats neither the password nor the bundle.
func TestClientCertificateTokenUnreadable(t *testing.T) {
	ctx := testContext(t)
	c := newClient()
	bundle, err := cert.PKCS12(password)
	if err != nil {
		t.Fatal(err)
	}
	before := fake.TenantTokenRequests(home)
	cases := []struct {
		name, password, want string
		data                 []byte
	}{
		{"wrong password", "not-" + password, "wrong password", bundle},
		{"no password", "", "wrong password", bundle},
		{"not PKCS#12", password, "not a PKCS#12 bundle", []byte("-----BEGIN NONSENSE-----" + password)},
		{"truncated", password, "not a PKCS#12 bundle", bundle[:len(bundle)/2]},
		{"PEM certificate without its key", "", "not a PKCS#12 bundle, nor PEM", cert.CertificatePEM()},
	}
	for _, tc := range cases {
		// CheckClientCertificate, which the controller asks before minting, says the same without a request.
		checked := failedWith(t, azauth.CheckClientCertificate(tc.data, tc.password), azauth.IdentityNotFound, "", 0, password)
		if checked != nil && !strings.Contains(checked.Detail, tc.want) {
			t.Errorf("%s: CheckClientCertificate detail %q, want it to say %q", tc.name, checked.Detail, tc.want)
		}
		_, err := c.ClientCertificateToken(ctx, azauth.PublicCloud, home, certApp, tc.data, tc.password, vault)
		azErr := failedWith(t, err, azauth.IdentityNotFound, "", 0, password)
		if azErr != nil && !strings.Contains(azErr.Detail, tc.want) {
			t.Errorf("%s: detail %q, want it to say %q", tc.name, azErr.Detail, tc.want)
		}
	}
	if n := fake.TenantTokenRequests(home) - before; n != 0 {
		t.Errorf("%d token requests for unreadable bundles, want none", n)
	}
}

// recordingTransport notes the User-Agent of every request it carries.
type recordingTransport struct {
	base       http.RoundTripper
	mu         sync.Mutex
	userAgents map[string]string // method and path → User-Agent
}

func (r *recordingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	r.mu.Lock()
	r.userAgents[req.Method+" "+req.URL.Path] = req.Header.Get("User-Agent")
	r.mu.Unlock()
	return r.base.RoundTrip(req)
}

// A configured suffix ends the User-Agent of the token requests and of Resource Manager's reads, after the SDK's own
// part; without one the User-Agent is the SDK's alone.
func TestUserAgentSuffixReachesEveryAzureCall(t *testing.T) {
	ctx := testContext(t)
	vm := fake.AddVM("s-ua", "g", "vm-ua")
	for _, suffix := range []string{"aks-addon/1.2 (cluster x)", ""} {
		rec := &recordingTransport{base: fake.HTTPClient().Transport, userAgents: map[string]string{}}
		azure := azauth.NewClient(azauth.Options{HTTPClient: &http.Client{Transport: rec}, CallTimeout: 10 * time.Second, UserAgentSuffix: suffix})
		if _, err := azure.ClientSecretToken(ctx, azauth.PublicCloud, home, secretApp, secret, "https://vault.azure.net"); err != nil {
			t.Fatal(err)
		}
		arm, err := armidentity.New(azure, azauth.PublicCloud, "", armidentity.Credential{TenantID: home, ClientID: secretApp, ClientSecret: secret}, time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := arm.HostIdentities(ctx, vm); err != nil {
			t.Fatal(err)
		}
		var sawToken, sawARM bool
		for call, ua := range rec.userAgents {
			sawToken = sawToken || strings.HasSuffix(call, "/oauth2/v2.0/token")
			sawARM = sawARM || strings.Contains(call, "/virtualMachines/")
			if !strings.HasPrefix(ua, "acrpull azsdk-go-") {
				t.Errorf("%s: User-Agent %q lacks the SDK's part", call, ua)
			}
			if suffix != "" && !strings.HasSuffix(ua, " "+suffix) {
				t.Errorf("%s: User-Agent %q does not end with %q", call, ua, suffix)
			}
			if suffix == "" && strings.Contains(ua, "aks-addon") {
				t.Errorf("%s: User-Agent %q carries another client's suffix", call, ua)
			}
		}
		if !sawToken || !sawARM {
			t.Fatalf("calls seen %v, want a token request and a VM read", rec.userAgents)
		}
	}
}
