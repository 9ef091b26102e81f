/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

package azurefake_test

import (
	"context"
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"

	"github.com/acrpull/acrpull/internal/dockerconfig"
	"github.com/acrpull/acrpull/internal/harness/azurefake"
	"github.com/acrpull/acrpull/internal/harness/registrytest"
)

// The whole workload identity path through the real SDKs and a real registry: a federated assertion at Entra ID,
// the ACR exchange, a token scoped to alice, a pull secret, and real pulls. alice pulls; bob is refused by the
// registry; a token asked for bob, outside the role, holds nothing and is refused too.
func TestWorkloadIdentityWalkEndsInARealPull(t *testing.T) {
	ctx := testContext(t)
	fake.ResetCounts()
	cred := assertionCredential(t, "https://login.microsoftonline.com/", func(context.Context) (string, error) { return validAssertion(t), nil })
	entra, err := cred.GetToken(ctx, policy.TokenRequestOptions{Scopes: []string{acrScope}})
	if err != nil {
		t.Fatalf("Entra ID: %v", err)
	}
	refresh, err := exchange(ctx, t, host, host, entra.Token)
	if err != nil {
		t.Fatalf("exchange: %v", err)
	}
	secrets := map[string][]byte{}
	for _, repo := range []string{"alice", "bob"} {
		token, err := accessToken(ctx, t, "repository:"+repo+":pull", refresh)
		if err != nil {
			t.Fatalf("access token for %s: %v", repo, err)
		}
		if secrets[repo], err = dockerconfig.Render(host, token); err != nil {
			t.Fatal(err)
		}
	}

	if err := registrytest.Pull(ctx, registry.Transport(), host, "alice", "v1", secrets["alice"]); err != nil {
		t.Fatalf("pulling alice with alice's secret: %v", err)
	}
	for _, attempt := range []struct{ secret, repo string }{{"alice", "bob"}, {"bob", "bob"}, {"bob", "alice"}} {
		err := registrytest.Pull(ctx, registry.Transport(), host, attempt.repo, "v1", secrets[attempt.secret])
		if !registrytest.IsDenied(err) {
			t.Errorf("pulling %s with %s's secret: %v (HTTP %d), want the registry's refusal", attempt.repo, attempt.secret, err, registrytest.StatusCode(err))
		}
	}
	for ep, want := range map[azurefake.Endpoint]int64{azurefake.EntraToken: 1, azurefake.ACRExchange: 1, azurefake.ACRToken: 2} {
		if got := fake.Count(ep); got != want {
			t.Errorf("%s: %d requests, want %d", ep, got, want)
		}
	}
	if fake.Count(azurefake.ACRTokenGet) == 0 || fake.Count(azurefake.RegistryV2) == 0 {
		t.Errorf("the pulls did not go through the proxy: %v", fake.Counts())
	}
}
