/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

package bench

import (
	"sync"

	dto "github.com/prometheus/client_model/go"
)

// RuntimeReading is what the controller's own Go runtime metrics said over its scrapes. With GOMEMLIMIT set the
// runtime lets the heap grow towards the limit before it collects, so the peak RSS sits near the limit whatever the
// controller needs; the live heap (what the last collection kept) is the need, and the collector's share of the
// process's CPU says whether the limit is costing it work.
type RuntimeReading struct {
	// PeakLiveHeapMiB is the largest go_gc_heap_live_bytes any scrape read.
	PeakLiveHeapMiB float64 `json:"peakLiveHeapMiB"`
	// MemoryLimitMiB is the runtime's soft memory limit (go_gc_gomemlimit_bytes); 0 when none is set.
	MemoryLimitMiB float64 `json:"memoryLimitMiB,omitempty"`
	// GCCPUSeconds and CPUSeconds are the collector's CPU and the whole process's (process_cpu_seconds_total) at
	// the last scrape. The collector's is the runtime's estimate of its mark assists, dedicated mark workers and
	// pauses; marking on otherwise idle processors (go_cpu_classes_gc_mark_idle_cpu_seconds_total, part of the
	// runtime's gc total) takes no CPU from the controller and can exceed the process's own CPU, so it is left out.
	GCCPUSeconds float64 `json:"gcCPUSeconds"`
	CPUSeconds   float64 `json:"cpuSeconds"`
	// GCCycles is how many collections the runtime finished (go_gc_cycles_total_gc_cycles_total).
	GCCycles float64 `json:"gcCycles"`
}

// runtimeReadings counts the scrapes of one controller process and gathers RuntimeReading from them.
type runtimeReadings struct {
	mu      sync.Mutex
	scrapes int64
	read    bool
	last    RuntimeReading
}

func (r *runtimeReadings) reset() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.scrapes, r.read, r.last = 0, false, RuntimeReading{}
}

// record counts one scrape and takes its figures: the largest live heap so far, the latest counters.
func (r *runtimeReadings) record(families map[string]*dto.MetricFamily) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.scrapes++
	live, ok := sampleOf(families, "go_gc_heap_live_bytes")
	if !ok {
		return
	}
	r.read = true
	got := &r.last
	got.PeakLiveHeapMiB = max(got.PeakLiveHeapMiB, live/(1<<20))
	if limit, ok := sampleOf(families, "go_gc_gomemlimit_bytes"); ok && limit < 1<<62 {
		got.MemoryLimitMiB = limit / (1 << 20)
	}
	got.GCCPUSeconds = 0
	for _, class := range []string{"mark_assist", "mark_dedicated", "pause"} {
		seconds, _ := sampleOf(families, "go_cpu_classes_gc_"+class+"_cpu_seconds_total")
		got.GCCPUSeconds += seconds
	}
	got.CPUSeconds, _ = sampleOf(families, "process_cpu_seconds_total")
	got.GCCycles, _ = sampleOf(families, "go_gc_cycles_total_gc_cycles_total")
}

// reading is the number of scrapes and their figures, nil when no scrape held the runtime's metrics.
func (r *runtimeReadings) reading() (int64, *RuntimeReading) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.read {
		return r.scrapes, nil
	}
	out := r.last
	return r.scrapes, &out
}

// sampleOf is the value of a family's single unlabelled sample, gauge or counter.
func sampleOf(families map[string]*dto.MetricFamily, name string) (float64, bool) {
	for _, m := range families[name].GetMetric() {
		if g := m.GetGauge(); g != nil {
			return g.GetValue(), true
		}
		if c := m.GetCounter(); c != nil {
			return c.GetValue(), true
		}
		if u := m.GetUntyped(); u != nil {
			return u.GetValue(), true
		}
	}
	return 0, false
}
