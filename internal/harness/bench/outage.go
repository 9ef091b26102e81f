/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

package bench

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/cache"

	acrv1beta2 "github.com/acrpull/acrpull/api/v1beta2"
	"github.com/acrpull/acrpull/internal/harness/azurefake"
)

// OutageResult is what a whole-cloud Azure outage costs the apiserver, and how fast the bindings come back.
type OutageResult struct {
	Bindings      int     `json:"bindings"`
	OutageSeconds float64 `json:"outageSeconds"`
	// EnteredFailure is how many bindings reported a failure during the outage: a Ready condition whose reason is not
	// TokenMinted, whether Ready stayed True (a refresh failed while the held token still served) or not.
	EnteredFailure int `json:"bindingsFailingDuringOutage"`
	// NotReady is how many of them went Ready=False (their token expired, or they had none).
	NotReady int `json:"bindingsNotReadyDuringOutage"`
	// StatusWrites* count changes of a binding's status seen by a watch (during the outage, and from its start until
	// every binding had recovered); the apiserver's own count of status writes is among ControllerWrites.
	StatusWritesDuringOutage    int `json:"statusWritesDuringOutage"`
	MaxStatusWritesDuringOutage int `json:"maxStatusWritesOfOneBindingDuringOutage"`
	StatusWritesThroughRecovery int `json:"statusWritesThroughRecovery"`
	MaxStatusWritesThrough      int `json:"maxStatusWritesOfOneBindingThroughRecovery"`
	// ControllerWrites are the apiserver's write counts during the outage, by resource and verb.
	ControllerWrites map[string]int64 `json:"controllerWritesDuringOutage"`
	AzureRequests    map[string]int64 `json:"azureRequestsDuringOutage"`
	// Credentials is how many identity/registry/scope combinations the bindings share.
	Credentials int `json:"distinctCredentials"`
	// RecoverySeconds is from the end of the outage until the last failing binding reported TokenMinted again (its
	// secret refreshed); P50 the median, First the first: how long the controller took to notice the cloud was back,
	// before the apiserver writes of the recovery itself.
	RecoverySeconds    float64 `json:"secondsUntilLastRecovered"`
	RecoveryP50Seconds float64 `json:"p50SecondsUntilRecovered"`
	FirstReadySeconds  float64 `json:"secondsUntilFirstRecovered"`
	// LastReadySeconds is from the end of the outage until the last binding that went Ready=False was Ready again
	// (0 when none did).
	LastReadySeconds float64 `json:"secondsUntilLastReady"`
	// SecretsChanged is how many secrets got a new token during the outage (there is none to get).
	SecretsChanged int64 `json:"secretsChangedDuringOutage"`
	// EventsDuringOutage and EventsThroughRecovery are the Events the apiserver created, from the outage's start.
	EventsDuringOutage    int64 `json:"eventsDuringOutage"`
	EventsThroughRecovery int64 `json:"eventsThroughRecovery"`
}

// outage waits until every binding present is Ready, takes the whole fake cloud down for OutageDuration (every
// endpoint answers 503), brings it back, and waits until every binding reports a freshly minted token again.
func (b *bench) outage(ctx context.Context) (*OutageResult, error) {
	n := b.ready.live()
	if n == 0 {
		return nil, fmt.Errorf("no bindings to take through an outage; run burst first")
	}
	if err := b.waitFor(ctx, n, 10*time.Minute, "Ready before the outage", func() int { _, r, _ := b.ready.counts(""); return r }); err != nil {
		return nil, err
	}
	w, err := b.watchStatuses(ctx)
	if err != nil {
		return nil, err
	}
	defer w.stop()
	before, err := b.apiserverWrites(ctx)
	if err != nil {
		return nil, err
	}
	refreshesBefore := b.ready.refreshCount()
	b.cloud.ResetCounts()
	b.logf("taking the cloud down for %s with %d Ready bindings", b.o.OutageDuration, n)
	b.cloud.Outage(azurefake.Fault{Status: 503})
	w.mark()
	select {
	case <-time.After(b.o.OutageDuration):
	case <-ctx.Done():
		b.cloud.ClearFaults()
		return nil, ctx.Err()
	}
	after, err := b.apiserverWrites(ctx)
	if err != nil {
		b.cloud.ClearFaults()
		return nil, err
	}
	azure := azureCounts(b.cloud)
	secretsChanged := b.ready.refreshCount() - refreshesBefore
	duringTotal, duringMax, failing, notReady := w.writes()
	b.cloud.ClearFaults()
	up := time.Now()
	b.logf("the cloud is back; %d bindings failing (%d not Ready), %d status writes during the outage", failing, notReady, duringTotal)
	if err := b.waitFor(ctx, n, 10*time.Minute, "Ready after the outage", func() int { _, r, _ := b.ready.counts(""); return r }); err != nil {
		return nil, err
	}
	if err := b.waitFor(ctx, n, 10*time.Minute, "not failing after the outage", func() int { return n - w.failingNow() }); err != nil {
		return nil, err
	}
	end, err := b.apiserverWrites(ctx)
	if err != nil {
		return nil, err
	}
	throughTotal, throughMax, _, _ := w.writes()
	res := &OutageResult{
		Bindings: n, OutageSeconds: b.o.OutageDuration.Seconds(), EnteredFailure: failing, NotReady: notReady,
		StatusWritesDuringOutage: duringTotal, MaxStatusWritesDuringOutage: duringMax,
		StatusWritesThroughRecovery: throughTotal, MaxStatusWritesThrough: throughMax,
		ControllerWrites: diffWrites(before, after), AzureRequests: azure, Credentials: min(b.o.Identities, n),
		SecretsChanged:     secretsChanged,
		EventsDuringOutage: eventWrites(before, after), EventsThroughRecovery: eventWrites(before, end),
	}
	// The status watch saw each binding's recovery when it happened; the waits above poll once a second.
	if recovered := w.sinceFor(up, w.recoveredAt); len(recovered) > 0 {
		res.RecoverySeconds = recovered[len(recovered)-1]
		res.RecoveryP50Seconds = percentile(recovered, 0.5)
		res.FirstReadySeconds = recovered[0]
	}
	if ready := w.sinceFor(up, w.readyAt); len(ready) > 0 {
		res.LastReadySeconds = ready[len(ready)-1]
	}
	return res, nil
}

// eventWrites is how many Events were created between two readings of the apiserver's write counters.
func eventWrites(before, after map[string]int64) int64 {
	var n int64
	for k, v := range diffWrites(before, after) {
		if strings.HasPrefix(k, "events") {
			n += v
		}
	}
	return n
}

// statusWatch counts, per binding, the changes of its status after mark, which bindings reported a failure (a Ready
// reason other than TokenMinted) or went not Ready, and when each recovered. It reads an informer, not a bare watch:
// at 10,000 bindings the apiserver closed a bare watch that fell behind, and the counts silently stopped.
type statusWatch struct {
	cancel context.CancelFunc

	mu      sync.Mutex
	marked  bool
	last    map[string]acrv1beta2.AcrPullBindingStatus
	changes map[string]int
	// failing and notReady are the bindings seen failing, or not Ready, since mark; recoveredAt when each was last
	// seen reporting TokenMinted again, readyAt when each was last seen turning Ready again.
	failing, notReady    map[string]bool
	recoveredAt, readyAt map[string]time.Time
}

func (b *bench) watchStatuses(ctx context.Context) (*statusWatch, error) {
	ctx, cancel := context.WithCancel(ctx)
	sw := &statusWatch{cancel: cancel, last: map[string]acrv1beta2.AcrPullBindingStatus{}, changes: map[string]int{},
		failing: map[string]bool{}, notReady: map[string]bool{}, recoveredAt: map[string]time.Time{}, readyAt: map[string]time.Time{}}
	c, err := cache.New(b.env.Config, cache.Options{Scheme: b.c.Scheme()})
	if err != nil {
		cancel()
		return nil, err
	}
	informer, err := c.GetInformer(ctx, &acrv1beta2.AcrPullBinding{})
	if err != nil {
		cancel()
		return nil, err
	}
	observe := func(typ watch.EventType) func(obj any) {
		return func(obj any) {
			if bnd, ok := obj.(*acrv1beta2.AcrPullBinding); ok {
				sw.observe(bnd, typ)
			}
		}
	}
	if _, err := informer.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
		AddFunc:    observe(watch.Added),
		UpdateFunc: func(_, obj any) { observe(watch.Modified)(obj) },
	}); err != nil {
		cancel()
		return nil, err
	}
	go func() { _ = c.Start(ctx) }()
	if !c.WaitForCacheSync(ctx) {
		cancel()
		return nil, fmt.Errorf("binding status watch did not sync")
	}
	return sw, nil
}

// healthy says whether a status reports a freshly minted token: Ready, for no failure.
func healthy(st acrv1beta2.AcrPullBindingStatus) bool {
	c := meta.FindStatusCondition(st.Conditions, acrv1beta2.ConditionReady)
	return c != nil && c.Status == metav1.ConditionTrue && c.Reason == acrv1beta2.ReasonTokenMinted
}

func (sw *statusWatch) observe(bnd *acrv1beta2.AcrPullBinding, typ watch.EventType) {
	key := bnd.Namespace + "/" + bnd.Name
	now := time.Now()
	sw.mu.Lock()
	defer sw.mu.Unlock()
	prev, seen := sw.last[key]
	sw.last[key] = bnd.Status
	if !sw.marked || typ != watch.Modified || !seen || equality.Semantic.DeepEqual(prev, bnd.Status) {
		return
	}
	sw.changes[key]++
	wasReady := meta.IsStatusConditionTrue(prev.Conditions, acrv1beta2.ConditionReady)
	ready := meta.IsStatusConditionTrue(bnd.Status.Conditions, acrv1beta2.ConditionReady)
	if !ready {
		sw.notReady[key] = true
	}
	if ready && !wasReady {
		sw.readyAt[key] = now
	}
	if !healthy(bnd.Status) {
		sw.failing[key] = true
	} else if !healthy(prev) {
		sw.recoveredAt[key] = now
	}
}

// mark starts the counting.
func (sw *statusWatch) mark() {
	sw.mu.Lock()
	defer sw.mu.Unlock()
	sw.marked = true
}

// writes is the status changes since mark in all and of the busiest binding, and how many bindings reported a
// failure and went not Ready.
func (sw *statusWatch) writes() (total, most, failing, notReady int) {
	sw.mu.Lock()
	defer sw.mu.Unlock()
	for _, c := range sw.changes {
		total += c
		most = max(most, c)
	}
	return total, most, len(sw.failing), len(sw.notReady)
}

// failingNow is how many bindings report a failure now.
func (sw *statusWatch) failingNow() int {
	sw.mu.Lock()
	defer sw.mu.Unlock()
	n := 0
	for _, st := range sw.last {
		if !healthy(st) {
			n++
		}
	}
	return n
}

// sinceFor is, sorted, the seconds from t until each binding seen failing (or not Ready, for readyAt) turned well
// (Ready) after t, by the times in at.
func (sw *statusWatch) sinceFor(t time.Time, at map[string]time.Time) []float64 {
	sw.mu.Lock()
	defer sw.mu.Unlock()
	var out []float64
	for key := range sw.failing {
		if when, ok := at[key]; ok && when.After(t) {
			out = append(out, when.Sub(t).Seconds())
		}
	}
	sort.Float64s(out)
	return out
}

func (sw *statusWatch) stop() { sw.cancel() }
