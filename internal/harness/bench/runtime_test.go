/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

package bench

import (
	"fmt"
	"testing"
)

func TestRuntimeReadingsKeepTheLargestLiveHeapAndTheLatestCounters(t *testing.T) {
	scrape := func(liveMiB, limit, gc, cpu float64) string {
		return fmt.Sprintf(`# TYPE go_gc_heap_live_bytes gauge
go_gc_heap_live_bytes %g
# TYPE go_gc_gomemlimit_bytes gauge
go_gc_gomemlimit_bytes %g
# TYPE go_cpu_classes_gc_mark_assist_cpu_seconds_total counter
go_cpu_classes_gc_mark_assist_cpu_seconds_total %g
# TYPE go_cpu_classes_gc_mark_dedicated_cpu_seconds_total counter
go_cpu_classes_gc_mark_dedicated_cpu_seconds_total 1
# TYPE go_cpu_classes_gc_mark_idle_cpu_seconds_total counter
go_cpu_classes_gc_mark_idle_cpu_seconds_total 1000
# TYPE go_cpu_classes_gc_pause_cpu_seconds_total counter
go_cpu_classes_gc_pause_cpu_seconds_total 0.5
# TYPE process_cpu_seconds_total counter
process_cpu_seconds_total %g
# TYPE go_gc_cycles_total_gc_cycles_total counter
go_gc_cycles_total_gc_cycles_total 7
`, liveMiB*(1<<20), limit, gc, cpu)
	}
	var r runtimeReadings
	if _, got := r.reading(); got != nil {
		t.Fatal("a reading before any scrape")
	}
	for _, text := range []string{scrape(300, 483183820, 10, 100), scrape(120, 483183820, 12, 130)} {
		families, err := parseMetrics([]byte(text))
		if err != nil {
			t.Fatal(err)
		}
		r.record(families)
	}
	scrapes, got := r.reading()
	if scrapes != 2 {
		t.Errorf("%d scrapes counted, want 2", scrapes)
	}
	if got == nil || got.PeakLiveHeapMiB != 300 || got.GCCPUSeconds != 13.5 || got.CPUSeconds != 130 || got.GCCycles != 7 {
		t.Fatalf("reading %+v: want the largest live heap (300 MiB) and the last scrape's counters (GC 12+1+0.5 without idle marking, 130, 7)", got)
	}
	if got.MemoryLimitMiB < 460 || got.MemoryLimitMiB > 461 {
		t.Errorf("memory limit %.1f MiB, want 460.8", got.MemoryLimitMiB)
	}

	// No limit: the runtime reports math.MaxInt64, which is not a limit to print.
	families, _ := parseMetrics([]byte(scrape(1, 9223372036854775807, 0, 0)))
	r.reset()
	r.record(families)
	if _, got := r.reading(); got == nil || got.MemoryLimitMiB != 0 {
		t.Errorf("reading without a limit %+v: want MemoryLimitMiB 0", got)
	}

	// A scrape without the runtime's metrics (another controller) leaves no reading.
	families, _ = parseMetrics([]byte("# TYPE up gauge\nup 1\n"))
	r.reset()
	r.record(families)
	if scrapes, got := r.reading(); got != nil || scrapes != 1 {
		t.Errorf("a scrape without runtime metrics: %d scrapes, reading %+v; want 1 and none", scrapes, got)
	}
}
