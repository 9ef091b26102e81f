/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

package mint

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	clocktesting "k8s.io/utils/clock/testing"

	"github.com/acrpull/acrpull/internal/azauth"
	"github.com/acrpull/acrpull/internal/tokencache"
)

var t0 = time.Date(2026, 11, 25, 8, 0, 0, 0, time.UTC)

// fakeAzure counts calls and refuses the audiences in refused at the exchange, as a registry with
// authentication-as-arm disabled refuses ARM tokens.
type fakeAzure struct {
	mu       sync.Mutex
	clock    *clocktesting.FakePassiveClock
	calls    map[string]int
	refused  map[string]bool
	audience map[string]string // entra token value → audience
	delay    time.Duration
}

func newFakeAzure(clk *clocktesting.FakePassiveClock) *fakeAzure {
	return &fakeAzure{clock: clk, calls: map[string]int{}, refused: map[string]bool{}, audience: map[string]string{}}
}

func (f *fakeAzure) token(kind string, life time.Duration) azauth.Token {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls[kind]++
	now := f.clock.Now()
	return azauth.Token{Value: kind, IssuedAt: now, ExpiresAt: now.Add(life)}
}

func (f *fakeAzure) entra(audience string) azauth.Token {
	time.Sleep(f.delay)
	tok := f.token("entra", time.Hour)
	tok.Value = "entra:" + audience
	return tok
}

func (f *fakeAzure) ManagedIdentityToken(_ context.Context, _ azauth.ManagedIdentity, audience string) (azauth.Token, error) {
	return f.entra(audience), nil
}

func (f *fakeAzure) WorkloadIdentityToken(_ context.Context, _ azauth.Cloud, _ azauth.WorkloadIdentity, audience string) (azauth.Token, error) {
	return f.entra(audience), nil
}

func (f *fakeAzure) ClientSecretToken(_ context.Context, _ azauth.Cloud, _, _, secret, audience string) (azauth.Token, error) {
	f.mu.Lock()
	f.calls["secret:"+secret]++
	f.mu.Unlock()
	return f.entra(audience), nil
}

func (f *fakeAzure) ClientCertificateToken(_ context.Context, _ azauth.Cloud, _, _ string, _ []byte, _, audience string) (azauth.Token, error) {
	f.mu.Lock()
	f.calls["certificate"]++
	f.mu.Unlock()
	return f.entra(audience), nil
}

func (f *fakeAzure) ExchangeForRefreshToken(_ context.Context, _ string, entra azauth.Token) (azauth.Token, error) {
	aud := entra.Value[len("entra:"):]
	if f.refused[aud] {
		f.mu.Lock()
		f.calls["exchange-refused"]++
		f.mu.Unlock()
		return azauth.Token{}, &azauth.Error{Kind: azauth.RegistryDenied, Endpoint: azauth.EndpointACRExchange, StatusCode: 401}
	}
	return f.token("exchange", 3*time.Hour), nil
}

func (f *fakeAzure) AccessToken(context.Context, string, string, azauth.Token) (azauth.Token, error) {
	return f.token("access", 75*time.Minute), nil
}

func (f *fakeAzure) count(kind string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[kind]
}

func request(scope string) Request {
	return Request{
		Server:          "example.azurecr.io",
		Scope:           scope,
		Audiences:       []string{azauth.ACRAudience, azauth.PublicCloud.ARMAudience},
		ManagedIdentity: &azauth.ManagedIdentity{ClientID: "11111111-1111-1111-1111-111111111111"},
	}
}

func TestBindingsSharingIdentityRegistryAndScopeCauseOneCallPerLayer(t *testing.T) {
	clk := clocktesting.NewFakePassiveClock(t0)
	az := newFakeAzure(clk)
	az.delay = 20 * time.Millisecond
	m := New(az, tokencache.New(clk, nil), clk)
	var wg sync.WaitGroup
	for range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := m.Mint(context.Background(), request("repository:app:pull")); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if az.count("entra") != 1 || az.count("exchange") != 1 || az.count("access") != 1 {
		t.Fatalf("calls = %v, want one of each", az.calls)
	}
}

func TestRegistryRefusingTheACRAudienceFallsBackToARMAndRemembersIt(t *testing.T) {
	clk := clocktesting.NewFakePassiveClock(t0)
	az := newFakeAzure(clk)
	az.refused[azauth.ACRAudience] = true
	m := New(az, tokencache.New(clk, nil), clk)
	cred, err := m.Mint(context.Background(), request("repository:app:pull"))
	if err != nil {
		t.Fatal(err)
	}
	if cred.Audience != azauth.PublicCloud.ARMAudience {
		t.Fatalf("audience = %q, want the ARM audience", cred.Audience)
	}
	// Later exchanges go straight to the audience that worked.
	clk.SetTime(t0.Add(4 * time.Hour))
	if _, err := m.Mint(context.Background(), request("repository:other:pull")); err != nil {
		t.Fatal(err)
	}
	if az.count("exchange-refused") != 1 {
		t.Fatalf("refused exchanges = %d, want 1", az.count("exchange-refused"))
	}
}

func TestUnscopedRequestYieldsTheRefreshTokenUnderTheCallersFreshness(t *testing.T) {
	clk := clocktesting.NewFakePassiveClock(t0)
	az := newFakeAzure(clk)
	m := New(az, tokencache.New(clk, nil), clk)
	req := request("")
	req.Fresh = func(tok azauth.Token) bool { return clk.Now().Before(tok.ExpiresAt.Add(-30 * time.Minute)) }
	cred, err := m.Mint(context.Background(), req)
	if err != nil || cred.Token.Value != "exchange" {
		t.Fatalf("credential %v, %v; want the refresh token", cred.Token, err)
	}
	clk.SetTime(t0.Add(2*time.Hour + 31*time.Minute))
	if _, err := m.Mint(context.Background(), req); err != nil {
		t.Fatal(err)
	}
	if az.count("exchange") != 2 || az.count("access") != 0 {
		t.Fatalf("calls = %v; want a second exchange and no access token", az.calls)
	}
}

func TestWorkloadIdentitiesAreSharedPerFederatedServiceAccount(t *testing.T) {
	clk := clocktesting.NewFakePassiveClock(t0)
	az := newFakeAzure(clk)
	m := New(az, tokencache.New(clk, nil), clk)
	wi := func(sa string) Request {
		r := request("repository:app:pull")
		r.ManagedIdentity = nil
		r.WorkloadIdentity = &WorkloadIdentity{ServiceAccount: sa,
			WorkloadIdentity: azauth.WorkloadIdentity{TenantID: "t", ClientID: "c"}}
		return r
	}
	for _, sa := range []string{"ns1/puller", "ns1/puller", "ns2/puller"} {
		if _, err := m.Mint(context.Background(), wi(sa)); err != nil {
			t.Fatal(err)
		}
	}
	if az.count("entra") != 2 {
		t.Fatalf("entra calls = %d, want one per federated service account", az.count("entra"))
	}
}

// Bindings naming the same application share its tokens only while they use the same credential, as its source says:
// another Secret, or the same Secret rotated, is asked for with its own credential.
func TestServicePrincipalsAreSharedPerCredentialSource(t *testing.T) {
	clk := clocktesting.NewFakePassiveClock(t0)
	az := newFakeAzure(clk)
	m := New(az, tokencache.New(clk, nil), clk)
	sp := func(source, secret string) Request {
		r := request("repository:app:pull")
		r.ManagedIdentity = nil
		r.ServicePrincipal = &ServicePrincipal{TenantID: "t", ClientID: "c", Source: source, ClientSecret: secret}
		return r
	}
	for _, r := range []Request{
		sp("ns1/sp/uid1/rv1", "first"), sp("ns1/sp/uid1/rv1", "first"), // one credential, two bindings
		sp("ns2/sp/uid2/rv7", "wrong"),   // same application, another namespace's secret
		sp("ns1/sp/uid1/rv2", "rotated"), // the first secret, rotated
	} {
		if _, err := m.Mint(context.Background(), r); err != nil {
			t.Fatal(err)
		}
	}
	for secret, want := range map[string]int{"first": 1, "wrong": 1, "rotated": 1} {
		if got := az.count("secret:" + secret); got != want {
			t.Errorf("Entra ID asked with secret %q %d times, want %d", secret, got, want)
		}
	}
	if got := fmt.Sprint(*sp("ns1/sp/uid1/rv1", "first").ServicePrincipal); strings.Contains(got, "first") {
		t.Errorf("String() shows the client secret: %s", got)
	}
}

// Key names exactly what the cache shares: requests that differ only in what a caller accepts or tries share one
// key; another identity, registry or scope is another key.
func TestKeyNamesTheSharedCredential(t *testing.T) {
	base := Request{Server: "Example.azurecr.io", Scope: "repository:a:pull", ManagedIdentity: &azauth.ManagedIdentity{ClientID: "ID"}}
	same := base
	same.Server, same.ManagedIdentity = "example.azurecr.io", &azauth.ManagedIdentity{ClientID: "id"}
	same.Audiences, same.Fresh = []string{"aud"}, func(azauth.Token) bool { return false }
	if base.Key() != same.Key() {
		t.Fatalf("%q != %q", base.Key(), same.Key())
	}
	seen := map[string]bool{base.Key(): true}
	for _, other := range []Request{
		{Server: base.Server, Scope: "repository:b:pull", ManagedIdentity: base.ManagedIdentity},
		{Server: base.Server, ManagedIdentity: base.ManagedIdentity},
		{Server: "other.azurecr.io", Scope: base.Scope, ManagedIdentity: base.ManagedIdentity},
		{Server: base.Server, Scope: base.Scope, ManagedIdentity: &azauth.ManagedIdentity{ClientID: "other"}},
	} {
		if seen[other.Key()] {
			t.Errorf("%+v shares key %q", other, other.Key())
		}
		seen[other.Key()] = true
	}
}
