/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

package bench

import (
	"context"
	"math"
	"slices"
	"time"
)

// pacerClock is what the open-loop pacer needs of a clock; k8s.io/utils/clock.RealClock is one.
type pacerClock interface {
	Now() time.Time
	Sleep(time.Duration)
}

// openLoop sends requests at a constant rate whatever the answers take: request k is due at start + k/rate and is
// started at its due time, or at once when the pacer is behind, never held back by earlier requests still in flight.
// A closed loop (each client waiting for its answer before asking again) would slow down with the agent and hide
// exactly the latency a load test is for; here latency is counted from the due time, so a stall of the sender counts
// against the figures instead of silently lowering the rate.
type openLoop struct {
	rate  float64
	clock pacerClock
}

// due is request k's due time.
func (p openLoop) due(start time.Time, k int) time.Time {
	return start.Add(time.Duration(math.Round(float64(k) * float64(time.Second) / p.rate)))
}

// run calls fire for requests 0..n-1 at their due times from start, until ctx is done. fire must not block: it starts
// the request on a goroutine of its own. run returns how many it fired and the largest delay of a start behind its
// due time (the pacer's own lag, which a loaded machine causes).
func (p openLoop) run(ctx context.Context, start time.Time, n int, fire func(k int, due time.Time)) (fired int, maxLag time.Duration) {
	for k := range n {
		if ctx.Err() != nil {
			return fired, maxLag
		}
		due := p.due(start, k)
		if wait := due.Sub(p.clock.Now()); wait > 0 {
			p.clock.Sleep(wait)
		}
		maxLag = max(maxLag, p.clock.Now().Sub(due))
		fire(k, due)
		fired++
	}
	return fired, maxLag
}

// latencySummary is a latency distribution in milliseconds.
type latencySummary struct {
	Count int     `json:"count"`
	P50   float64 `json:"p50Ms"`
	P99   float64 `json:"p99Ms"`
	Max   float64 `json:"maxMs"`
	Mean  float64 `json:"meanMs"`
}

// summarize describes latencies (milliseconds, any order).
func summarize(ms []float64) latencySummary {
	if len(ms) == 0 {
		return latencySummary{}
	}
	sorted := slices.Clone(ms)
	slices.Sort(sorted)
	var sum float64
	for _, v := range sorted {
		sum += v
	}
	return latencySummary{Count: len(sorted), P50: nearestRank(sorted, 0.50), P99: nearestRank(sorted, 0.99),
		Max: sorted[len(sorted)-1], Mean: sum / float64(len(sorted))}
}

// nearestRank is the p-th percentile of sorted by the nearest-rank method: the smallest value at or below which at
// least p of the values lie (p in (0, 1]). Of 1..100, p 0.5 is 50 and p 0.99 is 99.
func nearestRank(sorted []float64, p float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	// The rank is ceil(p*n); the small epsilon keeps 0.99*100 = 99.00000000000001 at rank 99.
	rank := int(math.Ceil(p*float64(len(sorted)) - 1e-9))
	return sorted[min(max(rank, 1), len(sorted))-1]
}
