/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

package bench

import (
	"context"
	"math"
	"sort"
	"sync"
	"time"
)

// WriteSpread is how a scenario's apiserver writes to the binding resources spread over time, from the apiserver's
// own counters read about once a second: a refresh cycle may write as much as it must, but not in storms that
// hold the apiserver's write capacity for a second or more.
type WriteSpread struct {
	Seconds       float64 `json:"seconds"`
	Writes        int64   `json:"writes"`
	MeanPerSecond float64 `json:"meanWritesPerSecond"`
	// MaxPerSecond is the most writes in one sampled interval (about a second; see LongestIntervalSeconds), per
	// second of that interval.
	MaxPerSecond float64 `json:"maxWritesInOneSecond"`
	P99PerSecond float64 `json:"p99WritesPerSecond"`
	// PeakToMean is MaxPerSecond over MeanPerSecond: 1 is a perfectly even spread.
	PeakToMean float64 `json:"peakToMean"`
	// SecondsOverTwiceMean counts the intervals, in seconds, whose rate was more than twice the mean.
	SecondsOverTwiceMean float64 `json:"secondsOverTwiceTheMean"`
	// LongestIntervalSeconds is the longest gap between two readings (a loaded apiserver answers /metrics late); a
	// storm shorter than it is averaged over it.
	LongestIntervalSeconds float64 `json:"longestIntervalSeconds"`
	// PeakStorageMiB is the largest etcd database size the apiserver reported (apiserver_storage_size_bytes).
	PeakStorageMiB float64 `json:"peakEtcdStorageMiB"`
}

// writeSample is the total of the binding resources' writes, and etcd's size, at one moment.
type writeSample struct {
	at           time.Time
	writes       int64
	storageBytes float64
}

// writeSampler reads the apiserver's counters about once a second until stopped.
type writeSampler struct {
	mu      sync.Mutex
	samples []writeSample
	stopped chan struct{}
	done    chan struct{}
}

// sampleWrites starts reading the apiserver's write counters for the binding resources about once a second.
func (b *bench) sampleWrites(ctx context.Context) *writeSampler {
	s := &writeSampler{stopped: make(chan struct{}), done: make(chan struct{})}
	read := func() {
		families, err := b.apiserverMetrics(ctx)
		if err != nil {
			return // a missed reading widens one interval, which the spread reports
		}
		smp := writeSample{at: time.Now()}
		for _, n := range writeCounts(families, bindingResources) {
			smp.writes += n
		}
		for _, m := range families["apiserver_storage_size_bytes"].GetMetric() {
			smp.storageBytes = max(smp.storageBytes, m.GetGauge().GetValue())
		}
		s.mu.Lock()
		s.samples = append(s.samples, smp)
		s.mu.Unlock()
	}
	go func() {
		defer close(s.done)
		read()
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-s.stopped:
				read()
				return
			case <-ctx.Done():
				return
			case <-t.C:
				read()
			}
		}
	}()
	return s
}

// stop ends the sampling and returns the spread of the writes it saw.
func (s *writeSampler) stop() *WriteSpread {
	close(s.stopped)
	<-s.done
	s.mu.Lock()
	defer s.mu.Unlock()
	return spreadOf(s.samples)
}

// spreadOf computes the write spread of counter readings taken in order.
func spreadOf(samples []writeSample) *WriteSpread {
	ws := &WriteSpread{}
	for _, smp := range samples {
		ws.PeakStorageMiB = max(ws.PeakStorageMiB, smp.storageBytes/(1<<20))
	}
	if len(samples) < 2 {
		return ws
	}
	first, last := samples[0], samples[len(samples)-1]
	ws.Seconds = last.at.Sub(first.at).Seconds()
	ws.Writes = last.writes - first.writes
	if ws.Seconds <= 0 {
		return ws
	}
	ws.MeanPerSecond = float64(ws.Writes) / ws.Seconds
	rates := make([]float64, 0, len(samples)-1)
	for i := 1; i < len(samples); i++ {
		gap := samples[i].at.Sub(samples[i-1].at).Seconds()
		if gap <= 0 {
			continue
		}
		ws.LongestIntervalSeconds = max(ws.LongestIntervalSeconds, gap)
		rate := float64(samples[i].writes-samples[i-1].writes) / gap
		rates = append(rates, rate)
		if rate > 2*ws.MeanPerSecond {
			ws.SecondsOverTwiceMean += gap
		}
	}
	sort.Float64s(rates)
	if len(rates) > 0 {
		ws.MaxPerSecond = rates[len(rates)-1]
		ws.P99PerSecond = percentile(rates, 0.99)
	}
	if ws.MeanPerSecond > 0 {
		ws.PeakToMean = ws.MaxPerSecond / ws.MeanPerSecond
	}
	ws.SecondsOverTwiceMean = math.Round(ws.SecondsOverTwiceMean*10) / 10
	return ws
}
