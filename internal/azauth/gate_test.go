/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

package azauth

import (
	"testing"
	"time"

	clocktesting "k8s.io/utils/clock/testing"
)

func throttled(retryAfter time.Duration) error {
	return &Error{Kind: Throttled, Endpoint: EndpointACRToken, StatusCode: 429, RetryAfter: retryAfter}
}

// allowedOver counts how many of the requests tried every step over d the gate lets out, each one that goes out
// succeeding.
func allowedOver(g *gates, clk *clocktesting.FakeClock, key string, d, step time.Duration) int {
	n := 0
	for end := clk.Now().Add(d); clk.Now().Before(end); clk.Step(step) {
		if g.admit(EndpointACRToken, key) == nil {
			g.observe(key, nil)
			n++
		}
	}
	return n
}

func TestGateHoldsRetryAfterThenKeepsTheAcceptedRate(t *testing.T) {
	clk := clocktesting.NewFakeClock(time.Date(2026, 11, 25, 0, 0, 0, 0, time.UTC))
	g := &gates{clock: clk}
	const key = "acr-token|r.azurecr.io"

	// Before any 429 nothing is held: 100 requests in 100 ms all go out.
	if n := allowedOver(g, clk, key, 100*time.Millisecond, time.Millisecond); n != 100 {
		t.Fatalf("before a 429, %d of 100 went out", n)
	}
	// The endpoint accepted 5 in the last second, then said 429, Retry-After 2 s.
	clk.Step(2 * time.Second)
	for range 5 {
		g.observe(key, nil)
		clk.Step(150 * time.Millisecond)
	}
	g.observe(key, throttled(2*time.Second))
	err := g.admit(EndpointACRToken, key)
	if !IsGated(err) || KindOf(err) != Throttled || RetryAfterOf(err) != 2*time.Second {
		t.Fatalf("right after the 429: %v (gated %v, retry after %s)", err, IsGated(err), RetryAfterOf(err))
	}
	if n := allowedOver(g, clk, key, 1999*time.Millisecond, 10*time.Millisecond); n != 0 {
		t.Fatalf("%d requests went out before Retry-After passed", n)
	}
	// After it: four fifths of the accepted rate (4/s), every second.
	clk.Step(time.Millisecond)
	for second := range 10 {
		if n := allowedOver(g, clk, key, time.Second, 10*time.Millisecond); n > 5 || n < 4 {
			t.Fatalf("second %d after Retry-After: %d requests went out, want about 4 (4/s)", second, n)
		}
	}
	// Another 429 while limited: the limit at least halves.
	g.observe(key, throttled(time.Second))
	clk.Step(time.Second)
	if n := allowedOver(g, clk, key, 4*time.Second, 10*time.Millisecond); n > 9 {
		t.Fatalf("%d requests in 4 s after a second 429, want at most 2/s", n)
	}
	// Without further 429s the rate climbs back, a tenth of the ceiling every 5 s, and never above the ceiling.
	for second := range 60 {
		n := allowedOver(g, clk, key, time.Second, 10*time.Millisecond)
		if n > 5 {
			t.Fatalf("second %d of recovery: %d requests went out, above the 4/s ceiling", second, n)
		}
		if second >= 40 && n < 4 {
			t.Fatalf("second %d of recovery: %d requests went out, want the 4/s ceiling back", second, n)
		}
	}
	// Ten minutes without a 429 lift the limit.
	clk.Step(calmTime)
	if n := allowedOver(g, clk, key, 100*time.Millisecond, time.Millisecond); n != 100 {
		t.Fatalf("after calm minutes, %d of 100 went out", n)
	}
}

func TestGateIsPerEndpointAndIgnoresOtherFailures(t *testing.T) {
	clk := clocktesting.NewFakeClock(time.Now())
	g := &gates{clock: clk}
	g.observe("acr-token|a", throttled(5*time.Second))
	if err := g.admit(EndpointACRToken, "acr-token|b"); err != nil {
		t.Errorf("another registry was held back: %v", err)
	}
	g.observe("entra|x", &Error{Kind: Unavailable, Endpoint: EndpointEntra, StatusCode: 503})
	if err := g.admit(EndpointEntra, "entra|x"); err != nil {
		t.Errorf("a 503 closed the gate: %v", err)
	}
	// Without seen successes the rate falls to the floor, never to zero.
	clk.Step(5 * time.Second)
	if n := allowedOver(g, clk, "acr-token|a", 4*time.Second, 10*time.Millisecond); n < 2 || n > 3 {
		t.Errorf("%d requests in 4 s at the floor rate (0.5/s)", n)
	}
}
