/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

package bench

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"
)

// The scenarios a user feels: one new binding on a cluster already busy with many, and a controller restart.

// BusyResult is how long new bindings wait while many others are present and refreshing.
type BusyResult struct {
	// Present is how many bindings existed (and refreshed) before the new ones came.
	Present int     `json:"present"`
	Created int     `json:"created"`
	Rate    float64 `json:"createsPerSecond"`
	// P50/P99/Max are create-to-usable: a secret with a token, attached, status.tokenExpirationTime set.
	P50Seconds float64 `json:"p50CreateToUsableSeconds"`
	P99Seconds float64 `json:"p99CreateToUsableSeconds"`
	MaxSeconds float64 `json:"maxCreateToUsableSeconds"`
	// SecretP50/P99 are create-to-secret-seen.
	SecretP50Seconds float64 `json:"p50CreateToSecretSeconds"`
	SecretP99Seconds float64 `json:"p99CreateToSecretSeconds"`
	// Refreshes is how many present secrets got a new token while the new bindings arrived and settled.
	Refreshes int64 `json:"refreshesMeanwhile"`
	// NotUsable is how many new bindings were still not usable when the wait (busyWait) ended; each counts in the
	// percentiles with its time from create to that end, a lower bound. 0 when every one became usable.
	NotUsable int `json:"notUsableWhenTheWaitEnded,omitempty"`
}

// busyWait bounds how long busy waits for the new bindings after the last is created: a controller that cannot
// keep up (msi-acrpull's single worker) is reported with what it reached, not as a failed run.
const busyWait = 10 * time.Minute

// busy creates bindings at BusyRate for BusyDuration while every binding already present keeps refreshing, and
// measures each new one's create-to-usable latency.
func (b *bench) busy(ctx context.Context) (*BusyResult, error) {
	rate, d := b.o.BusyRate, b.o.BusyDuration
	n := int(rate * d.Seconds())
	present := b.ready.live()
	refreshesBefore := b.ready.refreshCount()
	b.logf("%d bindings present; creating %d more at %.0f/s", present, n, rate)
	created := make([]time.Time, n)
	var wg sync.WaitGroup
	errs := make(chan error, n)
	start := time.Now()
	for i := range n {
		// Paced from the start, not from the previous create, so a slow create does not lower the rate.
		if wait := time.Until(start.Add(time.Duration(float64(i) / rate * float64(time.Second)))); wait > 0 {
			select {
			case <-time.After(wait):
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			created[i] = time.Now()
			if err := b.c.Create(ctx, newBinding(namespace(i%b.o.Namespaces), fmt.Sprintf("busy-%d", i), i%b.o.Identities)); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return nil, err
	}
	if err := b.waitUsable(ctx, "busy-", n, busyWait); err != nil && !errors.Is(err, errNotReached) {
		return nil, err
	}
	end := time.Now()
	var toUsable, toSecret []float64
	notUsable := 0
	for i := range n {
		key := namespace(i%b.o.Namespaces) + "/" + fmt.Sprintf("busy-%d", i)
		if at, ok := b.ready.firstUsable(key); ok {
			toUsable = append(toUsable, at.Sub(created[i]).Seconds())
		} else {
			notUsable++
			toUsable = append(toUsable, end.Sub(created[i]).Seconds())
		}
		if at, ok := b.ready.firstSecret(key); ok {
			toSecret = append(toSecret, at.Sub(created[i]).Seconds())
		} else {
			toSecret = append(toSecret, end.Sub(created[i]).Seconds())
		}
	}
	if notUsable > 0 {
		b.logf("%d of %d new bindings not usable %s after the last create; their times count as lower bounds", notUsable, n, busyWait)
	}
	sort.Float64s(toUsable)
	sort.Float64s(toSecret)
	refreshes := b.ready.refreshCount() - refreshesBefore
	return &BusyResult{Present: present, Created: n, Rate: rate,
		P50Seconds: percentile(toUsable, 0.5), P99Seconds: percentile(toUsable, 0.99), MaxSeconds: percentile(toUsable, 1),
		SecretP50Seconds: percentile(toSecret, 0.5), SecretP99Seconds: percentile(toSecret, 0.99), Refreshes: refreshes,
		NotUsable: notUsable}, nil
}

// RestartResult is what a controller restart costs when every binding is current.
type RestartResult struct {
	Bindings int `json:"bindings"`
	// WindowSeconds is how long after the new process started the writes and Azure requests were counted: at
	// least RestartWindow, and until restartQuiet after every binding had been current, so a controller slower to
	// settle than the window has all its writes counted.
	WindowSeconds float64          `json:"windowSeconds"`
	Writes        map[string]int64 `json:"apiserverWritesByResource"`
	// TokenRefreshes is how many secrets got a new token in the window: refreshes that came due anyway, whose
	// secret update and status write are among Writes.
	TokenRefreshes int64 `json:"tokenRefreshes"`
	// OwedFinalizers is how many bindings lacked the controller's finalizer when the old process stopped (it adds
	// them after a binding is usable, at low priority), and FinalizersAdded how many got it in the window: binding
	// patches the old process owed, not the restart's own.
	OwedFinalizers  int              `json:"bindingsWithoutFinalizerAtRestart"`
	FinalizersAdded int              `json:"finalizersAddedInWindow"`
	AzureRequests   map[string]int64 `json:"azureRequestsByEndpoint"`
	// CurrentSeconds is from the new process's start until every binding had been current (status.tokenExpirationTime
	// the secret's expiry, no error) at some moment since, or still was.
	CurrentSeconds float64 `json:"secondsUntilAllCurrent"`
	// LeastCurrent is the fewest bindings current at any second of the window after that (refreshes coming due
	// make a binding briefly not current); -1 if the window ended first.
	LeastCurrent int     `json:"leastCurrentInWindow"`
	PeakRSSMiB   float64 `json:"peakRSSMiB"`
}

// restartQuiet is how long restart keeps counting after every binding has been current.
const restartQuiet = 5 * time.Second

// restart waits until every binding is current, restarts the controller, and counts its writes and Azure requests
// over RestartWindow from the new process's start.
func (b *bench) restart(ctx context.Context) (*RestartResult, error) {
	n := b.ready.live()
	b.logf("waiting until each of the %d bindings has been current, before the restart", n)
	if err := b.waitCurrentSince(ctx, "", n, time.Now(), 10*time.Minute); err != nil {
		return nil, err
	}
	args := b.controller.Args
	b.stopController()
	before, err := b.apiserverWrites(ctx)
	if err != nil {
		return nil, err
	}
	b.cloud.ResetCounts()
	refreshesBefore := b.ready.refreshCount()
	finalizedBefore, _ := b.ready.finalized("")
	b.logf("restarting the controller with %d current bindings", n)
	start := time.Now()
	if err := b.startController(args); err != nil {
		return nil, err
	}
	if err := b.waitCurrentSince(ctx, "", n, start, 10*time.Minute); err != nil {
		return nil, err
	}
	current := time.Since(start).Seconds()
	end := later(start.Add(b.o.RestartWindow), time.Now().Add(restartQuiet))
	// Sampled each second through the window: bindings whose status the restart left behind their secret, if any.
	// -1 when nothing was sampled.
	leastCurrent := -1
	for time.Now().Before(end) {
		select {
		case <-time.After(time.Second):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		_, _, c := b.ready.counts("")
		if leastCurrent < 0 || c < leastCurrent {
			leastCurrent = c
		}
	}
	window := time.Since(start).Seconds()
	after, err := b.apiserverWrites(ctx)
	if err != nil {
		return nil, err
	}
	refreshes := b.ready.refreshCount() - refreshesBefore
	finalizedAfter, _ := b.ready.finalized("")
	return &RestartResult{Bindings: n, WindowSeconds: window, Writes: diffWrites(before, after), TokenRefreshes: refreshes,
		OwedFinalizers: n - finalizedBefore, FinalizersAdded: finalizedAfter - finalizedBefore,
		AzureRequests: azureCounts(b.cloud), CurrentSeconds: current, LeastCurrent: leastCurrent, PeakRSSMiB: mib(b.procStatus("VmHWM"))}, nil
}
