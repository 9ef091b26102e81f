/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

package bench

import (
	"context"
	"testing"
	"time"
)

// stepClock is a simulated clock: Sleep advances it by the time asked plus overshoot, as a loaded machine's sleeps
// overshoot; stall, when set, is added once at the given call of Now (a sender descheduled for a while).
type stepClock struct {
	now       time.Time
	overshoot time.Duration
	sleeps    int
	stallAt   int
	stall     time.Duration
	nows      int
}

func (c *stepClock) Now() time.Time {
	c.nows++
	if c.stallAt > 0 && c.nows == c.stallAt {
		c.now = c.now.Add(c.stall)
	}
	return c.now
}

func (c *stepClock) Sleep(d time.Duration) {
	c.sleeps++
	c.now = c.now.Add(d + c.overshoot)
}

func TestOpenLoopKeepsTheScheduleWhateverTheAnswersTake(t *testing.T) {
	start := time.Date(2026, 12, 6, 0, 0, 0, 0, time.UTC)
	clock := &stepClock{now: start}
	p := openLoop{rate: 500, clock: clock}
	var dues []time.Time
	fired, lag := p.run(context.Background(), start, 1000, func(_ int, due time.Time) { dues = append(dues, due) })
	if fired != 1000 || len(dues) != 1000 {
		t.Fatalf("fired %d (%d calls), want 1000", fired, len(dues))
	}
	for k, due := range dues {
		if want := start.Add(time.Duration(k) * 2 * time.Millisecond); !due.Equal(want) {
			t.Fatalf("request %d due at %v, want %v (2 ms apart at 500/s)", k, due.Sub(start), want.Sub(start))
		}
	}
	if lag != 0 {
		t.Errorf("lag %v with a punctual clock, want 0", lag)
	}
	// 1,000 requests at 500/s take 2 s of the clock (the last is due at 1.998 s).
	if got := clock.now.Sub(start); got != 1998*time.Millisecond {
		t.Errorf("the run took %v of the clock, want 1.998 s", got)
	}
}

// A sender that falls behind (a stall of 100 ms) sends the requests that fell due at once, with their original due
// times, and does not shift the rest of the schedule: the rate over the run stays the one asked for, and the stall
// shows as lag (and, counted from the due time, as latency) instead of vanishing into a lower rate.
func TestOpenLoopCatchesUpAfterAStallWithoutShiftingTheSchedule(t *testing.T) {
	start := time.Date(2026, 12, 6, 0, 0, 0, 0, time.UTC)
	clock := &stepClock{now: start, stallAt: 20, stall: 100 * time.Millisecond}
	p := openLoop{rate: 100, clock: clock}
	var sentAt, dues []time.Time
	fired, lag := p.run(context.Background(), start, 100, func(_ int, due time.Time) {
		sentAt = append(sentAt, clock.now)
		dues = append(dues, due)
	})
	if fired != 100 {
		t.Fatalf("fired %d, want 100", fired)
	}
	if lag < 90*time.Millisecond || lag > 100*time.Millisecond {
		t.Errorf("lag %v, want the stall's 90-100 ms", lag)
	}
	late := 0
	for k := range dues {
		if want := start.Add(time.Duration(k) * 10 * time.Millisecond); !dues[k].Equal(want) {
			t.Fatalf("request %d due at %v, want %v: a stall must not move the schedule", k, dues[k].Sub(start), want.Sub(start))
		}
		if sentAt[k].After(dues[k]) {
			late++
		}
	}
	// The stall hit around request 10 (two clock reads per request); the ~10 requests due during it go out late,
	// back to back, then the pacer is on time again.
	if late < 5 || late > 11 {
		t.Errorf("%d requests sent late, want the ~10 that fell due during the stall", late)
	}
	if last := sentAt[len(sentAt)-1]; !last.Equal(dues[len(dues)-1]) {
		t.Errorf("the last request went out at %v, due %v: the pacer did not catch up", last.Sub(start), dues[len(dues)-1].Sub(start))
	}
}

// Sleeps that overshoot (a loaded machine) make sends late by the overshoot, never early, and never drift further
// behind: each wait is measured from the schedule, not from the previous send.
func TestOpenLoopDoesNotDriftWhenSleepsOvershoot(t *testing.T) {
	start := time.Date(2026, 12, 6, 0, 0, 0, 0, time.UTC)
	clock := &stepClock{now: start, overshoot: 300 * time.Microsecond}
	p := openLoop{rate: 500, clock: clock}
	_, lag := p.run(context.Background(), start, 5000, func(int, time.Time) {})
	if lag != 300*time.Microsecond {
		t.Errorf("lag %v, want the overshoot (300µs) and no accumulated drift", lag)
	}
	if end := clock.now.Sub(start); end > 10*time.Second+time.Millisecond {
		t.Errorf("5,000 requests at 500/s ended at %v of the clock, want about 10 s", end)
	}
}

func TestOpenLoopStopsWithItsContext(t *testing.T) {
	start := time.Date(2026, 12, 6, 0, 0, 0, 0, time.UTC)
	ctx, cancel := context.WithCancel(context.Background())
	p := openLoop{rate: 1000, clock: &stepClock{now: start}}
	fired, _ := p.run(ctx, start, 100, func(k int, _ time.Time) {
		if k == 9 {
			cancel()
		}
	})
	if fired != 10 {
		t.Errorf("fired %d after cancelling at the 10th, want 10", fired)
	}
}

func TestSummarizeByNearestRank(t *testing.T) {
	var ms []float64
	// 100 values given in reverse order: summarize sorts a copy and leaves its input alone.
	for v := 100; v >= 1; v-- {
		ms = append(ms, float64(v))
	}
	s := summarize(ms)
	if s.Count != 100 || s.P50 != 50 || s.P99 != 99 || s.Max != 100 || s.Mean != 50.5 {
		t.Errorf("summary of 1..100 = %+v, want count 100, p50 50, p99 99, max 100, mean 50.5", s)
	}
	if ms[0] != 100 {
		t.Error("summarize sorted its input in place")
	}
	for _, c := range []struct {
		values []float64
		p      float64
		want   float64
	}{
		{[]float64{7}, 0.5, 7},
		{[]float64{7}, 0.99, 7},
		{[]float64{1, 2}, 0.5, 1},
		{[]float64{1, 2}, 0.99, 2},
		{[]float64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, 0.99, 10},
		{[]float64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, 0.9, 9},
		{nil, 0.5, 0},
	} {
		if got := nearestRank(c.values, c.p); got != c.want {
			t.Errorf("nearestRank(%v, %v) = %v, want %v", c.values, c.p, got, c.want)
		}
	}
	// 1,000 values: p99 is the 990th, so the ten slowest requests do not move it and the eleventh does.
	var thousand []float64
	for v := 1; v <= 1000; v++ {
		thousand = append(thousand, float64(v))
	}
	if got := summarize(thousand).P99; got != 990 {
		t.Errorf("p99 of 1..1000 = %v, want 990", got)
	}
	if (summarize(nil) != latencySummary{}) {
		t.Error("an empty summary should be all zero")
	}
}
