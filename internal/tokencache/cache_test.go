/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

package tokencache

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	clocktesting "k8s.io/utils/clock/testing"

	"github.com/acrpull/acrpull/internal/azauth"
)

var t0 = time.Date(2026, 11, 25, 8, 0, 0, 0, time.UTC)

func always(azauth.Token) bool { return true }

func TestConcurrentMissesShareOneFetch(t *testing.T) {
	c := New(clocktesting.NewFakePassiveClock(t0), nil)
	var calls atomic.Int32
	release := make(chan struct{})
	fetch := func(context.Context) (azauth.Token, error) {
		calls.Add(1)
		<-release
		return azauth.Token{Value: "v", IssuedAt: t0, ExpiresAt: t0.Add(time.Hour)}, nil
	}
	var wg sync.WaitGroup
	for range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if tok, err := c.Get(context.Background(), "l", "k", always, fetch); err != nil || tok.Value != "v" {
				t.Errorf("got %v, %v", tok, err)
			}
		}()
	}
	time.Sleep(50 * time.Millisecond) // let every caller join the flight
	close(release)
	wg.Wait()
	if calls.Load() != 1 {
		t.Fatalf("fetches = %d, want 1", calls.Load())
	}
	// Served from the cache now.
	if _, err := c.Get(context.Background(), "l", "k", always, fetch); err != nil || calls.Load() != 1 {
		t.Fatalf("cached lookup fetched again (calls=%d, err=%v)", calls.Load(), err)
	}
}

func TestUnacceptableTokenIsReplaced(t *testing.T) {
	clk := clocktesting.NewFakePassiveClock(t0)
	c := New(clk, nil)
	n := 0
	fetch := func(context.Context) (azauth.Token, error) {
		n++
		return azauth.Token{IssuedAt: clk.Now(), ExpiresAt: clk.Now().Add(time.Hour)}, nil
	}
	fresh := func(tok azauth.Token) bool { return clk.Now().Before(tok.IssuedAt.Add(30 * time.Minute)) }
	_, _ = c.Get(context.Background(), "l", "k", fresh, fetch)
	clk.SetTime(t0.Add(20 * time.Minute))
	_, _ = c.Get(context.Background(), "l", "k", fresh, fetch)
	if n != 1 {
		t.Fatalf("fresh token refetched: %d fetches", n)
	}
	clk.SetTime(t0.Add(31 * time.Minute))
	_, _ = c.Get(context.Background(), "l", "k", fresh, fetch)
	if n != 2 {
		t.Fatalf("stale token not replaced: %d fetches", n)
	}
}

func TestFailuresBlockTheKeyWithBackoffAndRetryAfter(t *testing.T) {
	clk := clocktesting.NewFakePassiveClock(t0)
	c := New(clk, nil)
	calls := 0
	throttled := func(context.Context) (azauth.Token, error) {
		calls++
		return azauth.Token{}, &azauth.Error{Kind: azauth.Throttled, Endpoint: "imds", StatusCode: 429, RetryAfter: 30 * time.Second}
	}
	_, err := c.Get(context.Background(), "l", "k", always, throttled)
	if azauth.KindOf(err) != azauth.Throttled {
		t.Fatalf("err = %v", err)
	}
	// Within Retry-After: answered from the block, no Azure call, remaining wait reported.
	clk.SetTime(t0.Add(10 * time.Second))
	_, err = c.Get(context.Background(), "l", "k", always, throttled)
	if calls != 1 || azauth.RetryAfterOf(err) != 20*time.Second {
		t.Fatalf("calls = %d, retry after %s; want 1 and 20s", calls, azauth.RetryAfterOf(err))
	}
	// After it: tried again.
	clk.SetTime(t0.Add(31 * time.Second))
	_, _ = c.Get(context.Background(), "l", "k", always, throttled)
	if calls != 2 {
		t.Fatalf("calls = %d after Retry-After, want 2", calls)
	}

	// Without Retry-After the block doubles per consecutive failure.
	failing := func(context.Context) (azauth.Token, error) { calls++; return azauth.Token{}, errors.New("boom") }
	calls = 0
	start := t0.Add(time.Hour)
	var waits []time.Duration
	for i := range 4 {
		clk.SetTime(start.Add(time.Duration(i) * time.Hour))
		_, _ = c.Get(context.Background(), "l", "other", always, failing)
		_, err := c.Get(context.Background(), "l", "other", always, failing)
		waits = append(waits, azauth.RetryAfterOf(err))
	}
	if calls != 4 || waits[0] != time.Second || waits[1] != 2*time.Second || waits[3] != 8*time.Second {
		t.Fatalf("calls = %d, waits = %v; want 4 calls and 1s,2s,4s,8s", calls, waits)
	}
}

// While Azure is unavailable the key is probed every few seconds (one request for all its callers), so callers resume
// within seconds of an outage's end; a refusal that will not clear by itself keeps backing off to minutes.
func TestUnavailableBacksOffToSecondsAndRefusalsToMinutes(t *testing.T) {
	clk := clocktesting.NewFakePassiveClock(t0)
	c := New(clk, nil)
	for _, tc := range []struct {
		kind azauth.FailureKind
		want time.Duration
	}{{azauth.Unavailable, maxUnavailableBackoff}, {azauth.RegistryDenied, maxFailureBackoff}} {
		key := string(tc.kind)
		failing := func(context.Context) (azauth.Token, error) {
			return azauth.Token{}, &azauth.Error{Kind: tc.kind, Endpoint: "acr-token", StatusCode: 503}
		}
		var last time.Duration
		for i := range 20 {
			clk.SetTime(t0.Add(time.Duration(i) * time.Hour))
			_, _ = c.Get(context.Background(), "l", key, always, failing)
			_, err := c.Get(context.Background(), "l", key, always, failing)
			last = azauth.RetryAfterOf(err)
		}
		if last != tc.want {
			t.Errorf("%s: blocked %s after 20 failures, want %s", tc.kind, last, tc.want)
		}
	}
}

// A request the endpoint's gate held back was never sent: the key waits exactly the gate's time and the next real
// failure backs off from the start, as if the held-back attempts had not happened.
func TestHeldBackRequestsDoNotCountAsFailures(t *testing.T) {
	clk := clocktesting.NewFakePassiveClock(t0)
	c := New(clk, nil)
	held := func(context.Context) (azauth.Token, error) {
		return azauth.Token{}, &azauth.Error{Kind: azauth.Throttled, Endpoint: "acr-token", RetryAfter: 3 * time.Second, Gated: true}
	}
	for i := range 5 {
		clk.SetTime(t0.Add(time.Duration(i) * time.Minute))
		_, _ = c.Get(context.Background(), "l", "k", always, held)
		_, err := c.Get(context.Background(), "l", "k", always, held)
		if got := azauth.RetryAfterOf(err); got != 3*time.Second {
			t.Fatalf("held back %d times: key blocked for %s, want the gate's 3s", i+1, got)
		}
	}
	clk.SetTime(t0.Add(time.Hour))
	_, _ = c.Get(context.Background(), "l", "k", always, func(context.Context) (azauth.Token, error) {
		return azauth.Token{}, errors.New("boom")
	})
	_, err := c.Get(context.Background(), "l", "k", always, held)
	if got := azauth.RetryAfterOf(err); got != time.Second {
		t.Fatalf("first real failure after held-back requests: blocked %s, want the first backoff step (1s)", got)
	}
}

func TestSweepDropsExpired(t *testing.T) {
	clk := clocktesting.NewFakePassiveClock(t0)
	c := New(clk, nil)
	_, _ = c.Get(context.Background(), "l", "k", always, func(context.Context) (azauth.Token, error) {
		return azauth.Token{IssuedAt: t0, ExpiresAt: t0.Add(time.Hour)}, nil
	})
	c.Sweep()
	if c.Len() != 1 {
		t.Fatal("valid token swept")
	}
	clk.SetTime(t0.Add(2 * time.Hour))
	c.Sweep()
	if c.Len() != 0 {
		t.Fatal("expired token kept")
	}
}
