/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

package bench

import (
	"errors"
	"os"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/acrpull/acrpull/internal/harness/azurefake"
)

// The throttling figure counts each endpoint only from its own first 429: a burst on an endpoint before it was
// throttled is not held against the controller, one after it is.
func TestMaxRateCountsEachEndpointFromItsOwnFirst429(t *testing.T) {
	start := time.Unix(1_000_000, 0)
	at := func(tenths int) time.Time { return start.Add(time.Duration(tenths) * 100 * time.Millisecond) }
	// IMDS: 50 requests in the first second, throttled at 1 s, then 2 a second.
	// ACR exchange: throttled at 3 s, then 7 requests within one second.
	var samples []sample
	imds, exchange := int64(0), int64(0)
	imds429, exchange429 := int64(0), int64(0)
	for i := 0; i <= 60; i++ {
		switch {
		case i < 10:
			imds += 5
		case i%5 == 0:
			imds++
		}
		if i == 10 {
			imds429 = 1
		}
		if i == 30 {
			exchange429 = 1
		}
		if i > 40 && i <= 47 {
			exchange++
		}
		samples = append(samples, sample{at: at(i),
			requests:  map[azurefake.Endpoint]int64{azurefake.IMDSToken: imds, azurefake.ACRExchange: exchange},
			throttled: map[azurefake.Endpoint]int64{azurefake.IMDSToken: imds429, azurefake.ACRExchange: exchange429},
		})
	}
	s := &rateSampler{samples: samples}
	if got := s.maxRateAfterFirst429(); got != 7 {
		t.Fatalf("max rate after first 429 = %v, want 7 (the exchange endpoint's second after its 429)", got)
	}
}

// Spinning raises this process's CPU time as read from /proc (waited for by CPU time, not by the wall clock, so a
// loaded machine only makes it slower), and a process that does not exist reads as 0. A freshly started test binary
// may not have used one clock tick (10 ms) yet, so the reading before spinning may be 0.
func TestCPUSecondsOfThisProcessGrowWithWork(t *testing.T) {
	before := cpuSeconds(os.Getpid())
	if before < 0 {
		t.Fatalf("this process's CPU time read as %v", before)
	}
	deadline := time.Now().Add(30 * time.Second)
	for cpuSeconds(os.Getpid())-before < 0.2 {
		if time.Now().After(deadline) {
			t.Fatalf("CPU time went from %.2f to %.2f in 30 s of spinning", before, cpuSeconds(os.Getpid()))
		}
	}
	if cpuSeconds(-1) != 0 {
		t.Fatal("a missing process must read as 0")
	}
}

func TestSortedMapPrintsKeysInOrder(t *testing.T) {
	if got := sortedMap(map[string]int64{"secrets POST": 3, "acrpullbindings PATCH": 10}); got != "acrpullbindings PATCH=10, secrets POST=3" {
		t.Fatalf("got %q", got)
	}
	if got := sortedMap(map[string]float64{"etcd": 1.25, "controller": 10}); got != "controller=10.0, etcd=1.2" {
		t.Fatalf("got %q", got)
	}
}

func TestParallelRunsEveryIndexOnceAndStopsOnError(t *testing.T) {
	var seen [100]atomic.Int32
	if err := parallel(7, 100, func(i int) error { seen[i].Add(1); return nil }); err != nil {
		t.Fatal(err)
	}
	for i := range seen {
		if seen[i].Load() != 1 {
			t.Fatalf("index %d ran %d times", i, seen[i].Load())
		}
	}
	boom := errors.New("boom")
	var ran atomic.Int32
	err := parallel(1, 100, func(i int) error {
		ran.Add(1)
		if i == 3 {
			return boom
		}
		return nil
	})
	if !errors.Is(err, boom) || ran.Load() != 4 {
		t.Fatalf("err %v after %d calls, want boom after 4", err, ran.Load())
	}
}

func TestPercentileOfSortedFigures(t *testing.T) {
	figures := []float64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}
	// Nearest rank: half the figures are at most 5, 99% at most 10, and one figure is its own every percentile.
	if percentile(figures, 0.5) != 5 || percentile(figures, 0.99) != 10 || percentile(figures, 0.1) != 1 ||
		percentile([]float64{7}, 0.01) != 7 || percentile(nil, 0.5) != 0 {
		t.Fatalf("p50 %v p99 %v p10 %v", percentile(figures, 0.5), percentile(figures, 0.99), percentile(figures, 0.1))
	}
}

// A refresh cycle that writes evenly has a peak near its mean; one second holding a storm stands out in the peak,
// in the seconds over twice the mean, and is measured per second of the interval it fell in.
func TestWriteSpreadFindsTheStormSecond(t *testing.T) {
	start := time.Unix(1_000_000, 0)
	var samples []writeSample
	writes := int64(0)
	for i := 0; i <= 60; i++ {
		switch {
		case i == 30:
			writes += 500 // the storm: 500 writes in the second ending at 30 s
		case i > 0:
			writes += 100
		}
		samples = append(samples, writeSample{at: start.Add(time.Duration(i) * time.Second), writes: writes, storageBytes: float64(i) * (1 << 20)})
	}
	ws := spreadOf(samples)
	if ws.Writes != 6400 || ws.Seconds != 60 {
		t.Fatalf("writes %d in %.0f s, want 6400 in 60 s", ws.Writes, ws.Seconds)
	}
	if ws.MaxPerSecond != 500 {
		t.Errorf("max per second = %.0f, want 500", ws.MaxPerSecond)
	}
	if mean := 6400.0 / 60; ws.PeakToMean < 500/mean-0.01 || ws.PeakToMean > 500/mean+0.01 {
		t.Errorf("peak to mean = %.2f, want %.2f", ws.PeakToMean, 500/mean)
	}
	if ws.SecondsOverTwiceMean != 1 {
		t.Errorf("seconds over twice the mean = %.1f, want 1", ws.SecondsOverTwiceMean)
	}
	if ws.PeakStorageMiB != 60 {
		t.Errorf("peak storage = %.0f MiB, want 60", ws.PeakStorageMiB)
	}
	// A reading taken late (3 s after the one before) spreads that interval's writes over its three seconds.
	late := []writeSample{{at: start, writes: 0}, {at: start.Add(3 * time.Second), writes: 300}, {at: start.Add(4 * time.Second), writes: 400}}
	if ws := spreadOf(late); ws.MaxPerSecond != 100 || ws.LongestIntervalSeconds != 3 {
		t.Errorf("late reading: max %.0f/s, longest interval %.1f s; want 100/s and 3 s", ws.MaxPerSecond, ws.LongestIntervalSeconds)
	}
}

// --controller-flags reach the bench's own acrpull after its own flags, so a flag's effect is measured with the figures
// only the bench's own controller gives; with --controller the command line is taken as given.
func TestControllerFlagsAddToTheBenchsOwnController(t *testing.T) {
	b := &bench{o: Options{ControllerFlags: []string{"--kube-api-compression=true"}}, metricsAddr: "127.0.0.1:9"}
	args := b.controllerArgs()
	if args[len(args)-1] != "--kube-api-compression=true" || !slices.Contains(args, "--metrics-bind-address=127.0.0.1:9") {
		t.Fatalf("own controller's command line %q", args)
	}
	b.o.Controller = []string{"/bin/other", "--x"}
	if got := b.controllerArgs(); !slices.Equal(got, b.o.Controller) {
		t.Fatalf("--controller's command line became %q", got)
	}
}
