/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

package bench

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"maps"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/acrpull/acrpull/internal/harness/azurefake"
)

// bindingResources are the apiserver resources whose writes the AcrPullBinding scenarios report.
var bindingResources = []string{"secrets", "serviceaccounts", "acrpullbindings", "events"}

// apiserverWrites reads the apiserver's write counters for the AcrPullBinding scenarios' resources.
func (b *bench) apiserverWrites(ctx context.Context) (map[string]int64, error) {
	return b.apiserverRequests(ctx, bindingResources)
}

// apiserverRequests reads the apiserver's write counters for resources, keyed "resource[/subresource] VERB".
func (b *bench) apiserverRequests(ctx context.Context, resources []string) (map[string]int64, error) {
	all, _, err := b.apiserverWriteCounts(ctx, resources)
	return all, err
}

// apiserverWriteCounts reads the apiserver's write counters for resources: all answers keyed
// "resource[/subresource] VERB", and the refused ones among them (conflicts, mostly) keyed with the code after.
func (b *bench) apiserverWriteCounts(ctx context.Context, resources []string) (all, refused map[string]int64, err error) {
	families, err := b.apiserverMetrics(ctx)
	if err != nil {
		return nil, nil, err
	}
	all, refused = map[string]int64{}, map[string]int64{}
	eachRequestCount(families, resources, writeVerbs, func(key, code string, n int64) {
		all[key] += n
		if !strings.HasPrefix(code, "2") {
			refused[key+" "+code] += n
		}
	})
	return all, refused, nil
}

// writeVerbs are the apiserver's verbs that write.
var writeVerbs = []string{"POST", "PUT", "PATCH", "DELETE", "APPLY"}

// apiserverRequestsOf reads the apiserver's request counters for resources and verbs (nil: every verb), keyed
// "resource[/subresource] VERB".
func (b *bench) apiserverRequestsOf(ctx context.Context, resources, verbs []string) (map[string]int64, error) {
	families, err := b.apiserverMetrics(ctx)
	if err != nil {
		return nil, err
	}
	return requestCounts(families, resources, verbs), nil
}

// apiserverMetrics reads the apiserver's /metrics.
func (b *bench) apiserverMetrics(ctx context.Context) (map[string]*dto.MetricFamily, error) {
	raw, err := b.apiserver.Get().AbsPath("/metrics").DoRaw(ctx)
	if err != nil {
		return nil, err
	}
	return parseMetrics(raw)
}

// writeCounts sums apiserver_request_total's writes to resources, keyed "resource[/subresource] VERB".
func writeCounts(families map[string]*dto.MetricFamily, resources []string) map[string]int64 {
	return requestCounts(families, resources, writeVerbs)
}

// requestCounts sums apiserver_request_total for resources and verbs (nil: every verb), keyed
// "resource[/subresource] VERB".
func requestCounts(families map[string]*dto.MetricFamily, resources, verbs []string) map[string]int64 {
	out := map[string]int64{}
	eachRequestCount(families, resources, verbs, func(key, _ string, n int64) { out[key] += n })
	return out
}

// eachRequestCount calls add with each apiserver_request_total series for resources and verbs (nil: every verb):
// its key "resource[/subresource] VERB", its answer's code and its count.
func eachRequestCount(families map[string]*dto.MetricFamily, resources, verbs []string, add func(key, code string, n int64)) {
	for _, m := range families["apiserver_request_total"].GetMetric() {
		labels := map[string]string{}
		for _, l := range m.GetLabel() {
			labels[l.GetName()] = l.GetValue()
		}
		if verbs != nil && !slices.Contains(verbs, labels["verb"]) {
			continue
		}
		if !slices.Contains(resources, labels["resource"]) {
			continue
		}
		key := labels["resource"]
		if labels["subresource"] != "" {
			key += "/" + labels["subresource"]
		}
		add(key+" "+labels["verb"], labels["code"], int64(m.GetCounter().GetValue()))
	}
}

// controllerMetrics reads and parses a controller's /metrics at url.
func controllerMetrics(ctx context.Context, c *http.Client, url string) (map[string]*dto.MetricFamily, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s: %s", url, resp.Status)
	}
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	return parseMetrics(raw)
}

func parseMetrics(raw []byte) (map[string]*dto.MetricFamily, error) {
	p := expfmt.NewTextParser(model.LegacyValidation)
	return p.TextToMetricFamilies(bytes.NewReader(raw))
}

func diffWrites(before, after map[string]int64) map[string]int64 {
	out := map[string]int64{}
	for k, v := range after {
		if d := v - before[k]; d != 0 {
			out[k] = d
		}
	}
	return out
}

// heap reads the controller's Go heap from its metrics endpoint, when the bench knows it.
func (b *bench) heap(ctx context.Context) uint64 {
	if b.metricsURL == "" {
		return 0
	}
	families, err := controllerMetrics(ctx, http.DefaultClient, b.metricsURL)
	if err != nil {
		return 0
	}
	heap, _ := sampleOf(families, "go_memstats_heap_alloc_bytes")
	return uint64(heap)
}

// rateSampler samples the fake's request counters to find the highest request rate after the first 429.
type rateSampler struct {
	mu      sync.Mutex
	samples []sample
	stopped chan struct{}
	done    chan struct{}
}

// throttledEndpoints are the endpoints the throttled scenario limits.
var throttledEndpoints = []azurefake.Endpoint{azurefake.IMDSToken, azurefake.ACRExchange, azurefake.ACRToken}

// sample is every throttled endpoint's request and 429 counts at one moment.
type sample struct {
	at        time.Time
	requests  map[azurefake.Endpoint]int64
	throttled map[azurefake.Endpoint]int64
}

func newRateSampler(c *azurefake.Cloud) *rateSampler {
	s := &rateSampler{stopped: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-s.stopped:
				return
			case now := <-t.C:
				smp := sample{at: now, requests: map[azurefake.Endpoint]int64{}, throttled: map[azurefake.Endpoint]int64{}}
				statuses := c.StatusCounts()
				for _, ep := range throttledEndpoints {
					smp.requests[ep] = c.Count(ep)
					smp.throttled[ep] = statuses[ep][http429]
				}
				s.mu.Lock()
				s.samples = append(s.samples, smp)
				s.mu.Unlock()
			}
		}
	}()
	return s
}

func (s *rateSampler) stop() { close(s.stopped); <-s.done }

// maxRateAfterFirst429 is, over the throttled endpoints, the most requests one endpoint received in any one-second
// window that starts after that endpoint's own first 429: what "never exceeds the configured rate after the first
// 429" is about. (Endpoints are throttled at different moments; before its own first 429 an endpoint may be asked at
// any rate.)
func (s *rateSampler) maxRateAfterFirst429() float64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	var best int64
	for _, ep := range throttledEndpoints {
		first := -1
		for i, smp := range s.samples {
			if smp.throttled[ep] > 0 {
				first = i
				break
			}
		}
		if first < 0 {
			continue
		}
		j := first
		for i := first; i < len(s.samples); i++ {
			for j < len(s.samples) && s.samples[j].at.Sub(s.samples[i].at) < time.Second {
				j++
			}
			if j < len(s.samples) {
				best = max(best, s.samples[j].requests[ep]-s.samples[i].requests[ep])
			}
		}
	}
	return float64(best)
}

func printTable(w io.Writer, r *Results) {
	fmt.Fprintf(w, "\n%-44s %s\n", "machine", fmt.Sprintf("%d cores, %.1f GiB, %s, kube %s", r.Machine.Cores,
		float64(r.Machine.MemoryBytes)/(1<<30), r.Machine.GoVersion, r.Machine.Kubernetes))
	fmt.Fprintf(w, "%-44s %s\n", "controller", r.Machine.Controller)
	fmt.Fprintf(w, "%-44s %s\n", "chart", chartFigure(r.Options))
	row := func(k string, format string, args ...any) {
		fmt.Fprintf(w, "%-44s %s\n", k, fmt.Sprintf(format, args...))
	}
	if f := r.Floor; f != nil {
		row("write floor", "%d writes in %.1f s (%.0f/s)", f.Writes, f.Seconds, f.WritesPerSec)
		if f.MeasuredBindings > 0 {
			row("write floor: scaled", "measured on %d bindings' writes (%d) and scaled in proportion", f.MeasuredBindings, 3*f.MeasuredBindings)
		}
		row("write floor: CPU seconds", "%s", sortedMap(f.CPUSeconds))
		row("write floor: binding creates", "%.1f s (before the floor's writes; the burst makes them too)", f.CreateSeconds)
		printSpread(row, "write floor", f.Spread)
	}
	if b := r.Burst; b != nil {
		row("burst: all usable", "%.1f s (%.2fx the write floor; %.2fx the floor plus the binding creates)", b.Seconds, b.RatioToFloor, b.RatioToFloorWithCreates)
		row("burst: create-to-usable p50 / p99", "%.2f s / %.2f s (secret with a token, attached, status.tokenExpirationTime set)", b.P50UsableSeconds, b.P99UsableSeconds)
		row("burst: create-to-secret p50 / p99", "%.2f s / %.2f s", b.P50Seconds, b.P99Seconds)
		row("burst: Ready condition", "%s", readyConditionFigure(b))
		row("burst: controller's finalizer", "%s", finalizedFigure(b))
		row("burst: controller writes", "%s", sortedMap(b.ControllerWrites))
		row("burst: of which refused", "%s", sortedMap(b.RefusedWrites))
		row("burst: Azure requests", "%s (distinct identity/registry/scope: %d)", sortedMap(b.AzureRequests), b.DistinctTokens)
		row("burst: CPU seconds", "%s", sortedMap(b.CPUSeconds))
		printSpread(row, "burst", b.Writes)
	}
	if s := r.Steady; s != nil {
		row("steady: window", "%.0f s, %.1f refresh cycles", s.WindowSeconds, s.Cycles)
		row("steady: secret updates", "%d; mean gap between one secret's updates %.1f s; updates closer than 0.3x lifetime: %d",
			s.SecretUpdates, s.MeanRefreshIntervalSeconds, s.DuplicateUpdates)
		row("steady: status patches per secret update", "%.2f", s.StatusPatchesPerUpdate)
		row("steady: controller writes", "%s", sortedMap(s.ControllerWrites))
		row("steady: Azure requests", "%s", sortedMap(s.AzureRequests))
		row("steady: spread", "max %d secret updates in one second; %d s of the window without any", s.MaxSecretUpdatesPerSec, s.QuietSeconds)
		printSpread(row, "steady", s.Writes)
	}
	if n := r.Noise; n != nil {
		row("noise: controller RSS before / after", "%.0f MiB / %.0f MiB (+%d unrelated objects)", n.RSSBeforeMiB, n.RSSAfterMiB, n.Objects)
		if n.HeapAfterMiB > 0 {
			row("noise: Go heap before / after", "%.0f MiB / %.0f MiB", n.HeapBeforeMiB, n.HeapAfterMiB)
		}
	}
	if t := r.Throttled; t != nil {
		row("throttled: all Ready", "%.1f s for %d bindings", t.Seconds, t.Bindings)
		row("throttled: 429s caused", "%d (requests %s)", t.Throttled, sortedMap(t.Requests))
		row("throttled: max rate after first 429", "%.1f/s per endpoint (configured %.1f/s)", t.MaxRatePerSecond, t.ConfiguredRate)
	}
	if bz := r.Busy; bz != nil {
		row("busy: new bindings", "%d at %.0f/s among %d present (%d of them refreshed meanwhile)", bz.Created, bz.Rate, bz.Present, bz.Refreshes)
		row("busy: create-to-usable p50 / p99 / max", "%.2f s / %.2f s / %.2f s", bz.P50Seconds, bz.P99Seconds, bz.MaxSeconds)
		row("busy: create-to-secret p50 / p99", "%.2f s / %.2f s", bz.SecretP50Seconds, bz.SecretP99Seconds)
	}
	if rs := r.Restart; rs != nil {
		row("restart: bindings, all current before", "%d; each current since the new process started after %.1f s (the bench looks from 2 s)", rs.Bindings, rs.CurrentSeconds)
		if rs.LeastCurrent >= 0 {
			row("restart: fewest current in a second of the rest of the window", "%d", rs.LeastCurrent)
		}
		row("restart: apiserver writes", "%s in %.0f s (%d token refreshes came due meanwhile)", orNone(sortedMap(rs.Writes)), rs.WindowSeconds, rs.TokenRefreshes)
		row("restart: finalizers owed", "%d bindings lacked the finalizer when the old process stopped; %d got it in the window", rs.OwedFinalizers, rs.FinalizersAdded)
		row("restart: Azure requests", "%s", orNone(sortedMap(rs.AzureRequests)))
		row("restart: peak RSS of the new process", "%.0f MiB", rs.PeakRSSMiB)
	}
	if o := r.Outage; o != nil {
		row("outage: bindings, cloud down", "%d sharing %d credentials; every endpoint 503 for %.0f s; %d reported a failed refresh, %d went not Ready",
			o.Bindings, o.Credentials, o.OutageSeconds, o.EnteredFailure, o.NotReady)
		row("outage: status writes during it", "%d (max %d for one binding)", o.StatusWritesDuringOutage, o.MaxStatusWritesDuringOutage)
		row("outage: status writes through recovery", "%d (max %d for one binding)", o.StatusWritesThroughRecovery, o.MaxStatusWritesThrough)
		row("outage: apiserver writes during it", "%s", orNone(sortedMap(o.ControllerWrites)))
		row("outage: Azure requests during it", "%s", orNone(sortedMap(o.AzureRequests)))
		row("outage: secrets changed during it", "%d", o.SecretsChanged)
		row("outage: Events during it / through recovery", "%d / %d", o.EventsDuringOutage, o.EventsThroughRecovery)
		row("outage: end to first / p50 / last binding refreshed", "%.1f s / %.1f s / %.1f s", o.FirstReadySeconds, o.RecoveryP50Seconds, o.RecoverySeconds)
		row("outage: end to last binding Ready again", "%.1f s (%d went not Ready)", o.LastReadySeconds, o.NotReady)
	}
	if r.ControllerPeakRSSMiB > 0 {
		row("controller peak RSS (VmHWM)", "%.0f MiB (%d metrics scrapes meanwhile)", r.ControllerPeakRSSMiB, r.ControllerScrapes)
	}
	if rt := r.ControllerRuntime; rt != nil {
		limit := "none"
		if rt.MemoryLimitMiB > 0 {
			limit = fmt.Sprintf("%.0f MiB", rt.MemoryLimitMiB)
		}
		row("controller live heap, largest a scrape read", "%.0f MiB (GOMEMLIMIT %s); garbage collector %.1f of %.1f CPU-s (assists, dedicated marking, pauses) in %.0f cycles",
			rt.PeakLiveHeapMiB, limit, rt.GCCPUSeconds, rt.CPUSeconds, rt.GCCycles)
	}
	printPodIdentity(row, r.PodIdentity)
	printNMILoad(row, r.NMILoad)
}

// printSpread prints how a scenario's writes spread over its seconds, and etcd's largest size meanwhile.
func printSpread(row func(k string, format string, args ...any), scenario string, ws *WriteSpread) {
	if ws == nil || ws.Seconds == 0 {
		return
	}
	row(scenario+": writes per second", "mean %.0f, p99 %.0f, max %.0f (%.2fx the mean; %.0f s over twice the mean; readings at most %.1f s apart)",
		ws.MeanPerSecond, ws.P99PerSecond, ws.MaxPerSecond, ws.PeakToMean, ws.SecondsOverTwiceMean, ws.LongestIntervalSeconds)
	row(scenario+": etcd database, largest", "%.0f MiB (apiserver_storage_size_bytes)", ws.PeakStorageMiB)
}

// chartFigure says which of the chart's cluster objects the run had, and whether that is the chart's default.
func chartFigure(options map[string]any) string {
	if policies, _ := options["chartPolicies"].(bool); !policies {
		return "no admission policies (--chart-policies=false)"
	}
	if finalizer, _ := options["finalizerOnCreate"].(bool); finalizer {
		return "admission policies, finalizerOnCreate on (opt-in; the chart's default is off)"
	}
	return "admission policies, finalizerOnCreate off (the chart's defaults)"
}

// readyConditionFigure says when every burst binding had acrpull's Ready condition, or how many had it.
func readyConditionFigure(b *BurstResult) string {
	if b.ReadyConditionSeconds > 0 {
		return fmt.Sprintf("all at %.1f s", b.ReadyConditionSeconds)
	}
	return fmt.Sprintf("%d had it when all were usable (msi-acrpull writes no conditions)", b.ReadyCondition)
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

// sortedMap prints a map's entries sorted by key; seconds with one decimal.
func sortedMap[V int64 | float64](m map[string]V) string {
	parts := make([]string, 0, len(m))
	for _, k := range slices.Sorted(maps.Keys(m)) {
		switch v := any(m[k]).(type) {
		case float64:
			parts = append(parts, fmt.Sprintf("%s=%.1f", k, v))
		default:
			parts = append(parts, fmt.Sprintf("%s=%v", k, v))
		}
	}
	return strings.Join(parts, ", ")
}

// finalizedFigure says when the last binding of the burst had the controller's finalizer.
func finalizedFigure(b *BurstResult) string {
	if b.FinalizedSeconds > 0 {
		return fmt.Sprintf("on all at %.1f s", b.FinalizedSeconds)
	}
	return fmt.Sprintf("on %d when the bench stopped waiting (%s after all were usable)", b.Finalized, finalizerWait)
}
