/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

package azurefake_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"

	"github.com/acrpull/acrpull/internal/harness/azurefake"
)

// Above the configured rate, requests get 429 with Retry-After in seconds; within it they are answered. Counters see
// every request and every status.
func TestThrottlingAndCounters(t *testing.T) {
	undoFaults(t)
	fake.ResetCounts()
	fake.SetFault(azurefake.IMDSToken, azurefake.Fault{RatePerSecond: 2, RetryAfter: 3 * time.Second})
	throttled := 0
	for range 10 {
		r := imds(t, "client_id="+puller, true)
		switch r.status {
		case http.StatusTooManyRequests:
			throttled++
			if r.header.Get("Retry-After") != "3" {
				t.Errorf("Retry-After %q, want 3", r.header.Get("Retry-After"))
			}
		case http.StatusOK:
		default:
			t.Errorf("HTTP %d", r.status)
		}
	}
	if throttled < 5 || throttled == 10 {
		t.Errorf("throttled %d of 10 at 2/s, want most but not all", throttled)
	}
	if got := fake.Count(azurefake.IMDSToken); got != 10 {
		t.Errorf("counted %d IMDS requests, want 10", got)
	}
	statuses := fake.StatusCounts()[azurefake.IMDSToken]
	if statuses[429] != int64(throttled) || statuses[200] != int64(10-throttled) || fake.CountStatus(429) != int64(throttled) {
		t.Errorf("statuses %v, CountStatus(429) %d; want %d throttled", statuses, fake.CountStatus(429), throttled)
	}
	if fake.Counts()[azurefake.EntraToken] != 0 {
		t.Error("another endpoint was counted")
	}
}

// A 429 without a configured Retry-After still says when to come back, as Azure does.
func TestThrottlingAlwaysSaysRetryAfter(t *testing.T) {
	undoFaults(t)
	fake.SetFault(azurefake.ACRExchange, azurefake.Fault{Status: http.StatusTooManyRequests})
	r := postForm(t, "https://"+host+"/oauth2/exchange", nil)
	if r.status != http.StatusTooManyRequests || r.header.Get("Retry-After") != "1" {
		t.Errorf("HTTP %d, Retry-After %q", r.status, r.header.Get("Retry-After"))
	}
	var shape struct {
		Errors []struct{ Code, Message string } `json:"errors"`
	}
	if err := json.Unmarshal(r.raw, &shape); err != nil || len(shape.Errors) != 1 {
		t.Errorf("body %s is not in the registry's error shape", r.raw)
	}
}

// A counted fault answers that many requests and then goes away; a custom body is sent as given.
func TestCountedFaultsExpire(t *testing.T) {
	undoFaults(t)
	fake.SetFault(azurefake.IMDSToken, azurefake.Fault{Status: 503, Body: `{"error":"service_unavailable"}`, Count: 2})
	for i, want := range []int{503, 503, 200} {
		r := imds(t, "client_id="+puller, true)
		if r.status != want {
			t.Errorf("request %d: HTTP %d, want %d", i, r.status, want)
		}
		if want == 503 && r.str("error") != "service_unavailable" {
			t.Errorf("request %d: body %s", i, r.raw)
		}
	}
}

// An outage takes every endpoint down until cleared, however many requests come; then each answers again.
func TestOutageTakesEveryEndpointDown(t *testing.T) {
	undoFaults(t)
	fake.Outage(azurefake.Fault{Status: 503, Count: 1})
	for range 3 {
		if r := imds(t, "client_id="+puller, true); r.status != 503 {
			t.Fatalf("IMDS during the outage: HTTP %d", r.status)
		}
		if r := postForm(t, "https://"+host+"/oauth2/exchange", nil); r.status != 503 {
			t.Fatalf("registry exchange during the outage: HTTP %d", r.status)
		}
	}
	fake.ClearFaults()
	if r := imds(t, "client_id="+puller, true); r.status != 200 {
		t.Fatalf("IMDS after the outage: HTTP %d", r.status)
	}
}

// A malformed answer is a 200 that is not JSON; the SDK reports it instead of using it.
func TestMalformedAnswers(t *testing.T) {
	undoFaults(t)
	fake.SetFault(azurefake.IMDSToken, azurefake.Fault{Malformed: true})
	r := imds(t, "client_id="+puller, true)
	if r.status != http.StatusOK || json.Valid(r.raw) {
		t.Fatalf("HTTP %d, body %s", r.status, r.raw)
	}
	if _, err := managedIdentityToken(t, azidentity.ClientID(puller), uncachedResource("malformed")+"/.default"); err == nil {
		t.Error("the SDK accepted a malformed answer")
	}
}

// NoExp issues tokens without exp, which the next hop refuses: the registry exchange refuses such an Entra token.
func TestTokensWithoutExp(t *testing.T) {
	undoFaults(t)
	ctx := testContext(t)
	fake.SetFault(azurefake.IMDSToken, azurefake.Fault{NoExp: true, Count: 1})
	token := imdsToken(t, puller, "https://containerregistry.azure.net")
	if _, has := claimsOf(t, token)["exp"]; has {
		t.Fatal("the token has exp")
	}
	if _, err := exchange(ctx, t, host, host, token); statusOf(err) != http.StatusUnauthorized {
		t.Errorf("exchange of a token without exp: %v, want 401", err)
	}
}

// Latency delays answers; a client deadline shorter than it gives up, as against a slow Azure.
func TestLatency(t *testing.T) {
	undoFaults(t)
	fake.SetFault(azurefake.IMDSToken, azurefake.Fault{Latency: 300 * time.Millisecond})
	start := time.Now()
	if r := imds(t, "client_id="+puller, true); r.status != http.StatusOK {
		t.Fatalf("HTTP %d", r.status)
	}
	if elapsed := time.Since(start); elapsed < 300*time.Millisecond {
		t.Errorf("answered in %s despite 300 ms latency", elapsed)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	cred, err := azidentity.NewManagedIdentityCredential(&azidentity.ManagedIdentityCredentialOptions{ClientOptions: sdkOptions(), ID: azidentity.ClientID(puller)})
	if err != nil {
		t.Fatal(err)
	}
	// azidentity flattens the context error into its message.
	if _, err := cred.GetToken(ctx, policy.TokenRequestOptions{Scopes: []string{uncachedResource("latency") + "/.default"}}); err == nil || !strings.Contains(err.Error(), context.DeadlineExceeded.Error()) {
		t.Errorf("got %v, want the deadline", err)
	}
}

// A TLS fault breaks the endpoint's host: a new connection fails its handshake on a certificate the client does not
// trust, a connection opened before the fault is dropped, and both work again once the fault clears.
func TestTLSFault(t *testing.T) {
	undoFaults(t)
	client := fake.HTTPClient()
	get := func() error {
		resp, err := client.Get("https://login.microsoftonline.com/common/discovery/instance?authorization_endpoint=https://login.microsoftonline.com/t/oauth2/v2.0/authorize")
		if err == nil {
			resp.Body.Close()
		}
		return err
	}
	if err := get(); err != nil {
		t.Fatalf("before the fault: %v", err)
	}
	fake.SetFault(azurefake.EntraDiscovery, azurefake.Fault{TLS: true})
	if err := get(); err == nil {
		t.Fatal("a request on the open connection succeeded during the fault")
	}
	client.CloseIdleConnections()
	err := get()
	if err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("a new connection during the fault: %v, want a certificate error", err)
	}
	fake.ClearFaults()
	if err := get(); err != nil {
		t.Fatalf("after the fault: %v", err)
	}
}
