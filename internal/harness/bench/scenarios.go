/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

package bench

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	acrv1beta2 "github.com/acrpull/acrpull/api/v1beta2"
	"github.com/acrpull/acrpull/internal/dockerconfig"
	"github.com/acrpull/acrpull/internal/harness/azurefake"
)

// FloorResult is the apiserver's own write throughput for the controller's kind of writes.
type FloorResult struct {
	Writes       int     `json:"writes"`
	Seconds      float64 `json:"seconds"`
	WritesPerSec float64 `json:"writesPerSecond"`
	// CPUSeconds is the CPU time each process used while the floor's writes ran.
	CPUSeconds map[string]float64 `json:"cpuSeconds"`
	// CreateSeconds is how long the same client took to create the N bindings the floor then writes for: the
	// burst's own creates, which the floor leaves out, cost the apiserver about this much on top.
	CreateSeconds float64 `json:"bindingCreateSeconds"`
	// MeasuredBindings, when fewer than the burst's, is how many bindings' writes were measured; Writes, Seconds
	// and CreateSeconds are then scaled up to the burst's size in proportion (see Options.FloorBindings).
	MeasuredBindings int `json:"measuredBindings,omitempty"`
	// Spread is how the floor's writes spread over time, read the way the burst's are (the same sampling of the
	// apiserver's counters runs during both).
	Spread *WriteSpread `json:"writeSpread,omitempty"`
}

// BurstResult is how fast N new bindings become usable: a secret with a token, attached to the service account,
// and status.tokenExpirationTime set (see readiness).
type BurstResult struct {
	Seconds      float64 `json:"seconds"`
	RatioToFloor float64 `json:"ratioToFloor"`
	// RatioToFloorWithCreates compares with the floor plus the plain client's time for the bench's binding creates,
	// which the burst also waits for.
	RatioToFloorWithCreates float64 `json:"ratioToFloorWithCreates"`
	P50Seconds              float64 `json:"p50CreateToSecretSeconds"`
	P99Seconds              float64 `json:"p99CreateToSecretSeconds"`
	P50UsableSeconds        float64 `json:"p50CreateToUsableSeconds"`
	P99UsableSeconds        float64 `json:"p99CreateToUsableSeconds"`
	// ReadyCondition is how many had acrpull's Ready condition when all were usable, and ReadyConditionSeconds
	// when the last of them got it (0 unless all did; msi-acrpull writes no conditions).
	ReadyCondition        int     `json:"readyCondition"`
	ReadyConditionSeconds float64 `json:"readyConditionSeconds,omitempty"`
	// Finalized is how many had the controller's finalizer (msi-acrpull's name, which acrpull keeps) when the bench
	// stopped waiting for it, at most finalizerWait after all were usable, and FinalizedSeconds when the last got it
	// (0 unless all did). A controller may add it after a binding is usable; the burst's work ends only then.
	Finalized        int              `json:"finalized"`
	FinalizedSeconds float64          `json:"finalizedSeconds,omitempty"`
	ControllerWrites map[string]int64 `json:"controllerWritesByResource"`
	// RefusedWrites are the writes among ControllerWrites the apiserver refused, by code (409: a conflict, retried).
	RefusedWrites  map[string]int64 `json:"refusedWritesByResourceAndCode,omitempty"`
	AzureRequests  map[string]int64 `json:"azureRequestsByEndpoint"`
	DistinctTokens int              `json:"distinctIdentityRegistryScope"`
	// CPUSeconds is the CPU time each process used from the first create until all were Ready.
	CPUSeconds map[string]float64 `json:"cpuSeconds"`
	// Writes is how the writes to the binding resources (the bench's creates included) spread over the burst.
	Writes *WriteSpread `json:"writeSpread,omitempty"`
}

// SteadyResult is what refresh cycles cost.
type SteadyResult struct {
	WindowSeconds              float64 `json:"windowSeconds"`
	Cycles                     float64 `json:"cycles"`
	SecretUpdates              int64   `json:"secretUpdates"`
	MeanRefreshIntervalSeconds float64 `json:"meanSecondsBetweenUpdatesOfOneSecret"`
	DuplicateUpdates           int     `json:"updatesCloserThan0_3Lifetime"`
	// StatusPatchesPerUpdate counts status writes, PATCH (acrpull) or PUT (msi-acrpull), per secret update.
	StatusPatchesPerUpdate float64          `json:"statusPatchesPerSecretUpdate"`
	ControllerWrites       map[string]int64 `json:"controllerWritesByResource"`
	AzureRequests          map[string]int64 `json:"azureRequestsByEndpoint"`
	MaxSecretUpdatesPerSec int64            `json:"maxSecretUpdatesInOneSecond"`
	QuietSeconds           int              `json:"secondsWithoutWrites"`
	// Writes is how every write to the binding resources (secrets, service accounts, bindings, events) spread over
	// the window, second by second.
	Writes *WriteSpread `json:"writeSpread,omitempty"`
}

// NoiseResult is the controller's memory before and after unrelated objects appear.
type NoiseResult struct {
	Objects       int     `json:"objects"`
	RSSBeforeMiB  float64 `json:"rssBeforeMiB"`
	RSSAfterMiB   float64 `json:"rssAfterMiB"`
	HeapBeforeMiB float64 `json:"heapBeforeMiB,omitempty"`
	HeapAfterMiB  float64 `json:"heapAfterMiB,omitempty"`
}

// ThrottledResult is how the controller behaves when Azure answers 429 above a rate.
type ThrottledResult struct {
	Bindings         int              `json:"bindings"`
	Seconds          float64          `json:"seconds"`
	Requests         map[string]int64 `json:"azureRequestsByEndpoint"`
	Throttled        int64            `json:"responses429"`
	MaxRatePerSecond float64          `json:"maxRequestsPerSecondAfterFirst429"`
	ConfiguredRate   float64          `json:"configuredRate"`
}

func (b *bench) createNamespaces(ctx context.Context) error {
	return parallel(b.o.Workers, b.o.Namespaces, func(i int) error {
		ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: namespace(i)}}
		if err := b.c.Create(ctx, ns); err != nil && !apierrors.IsAlreadyExists(err) {
			return err
		}
		sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: namespace(i), Name: "default"}}
		if err := b.c.Create(ctx, sa); err != nil && !apierrors.IsAlreadyExists(err) {
			return err
		}
		return nil
	})
}

func newBinding(ns, name string, identityIndex int) *acrv1beta2.AcrPullBinding {
	return &acrv1beta2.AcrPullBinding{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: acrv1beta2.AcrPullBindingSpec{
			ACR:                acrv1beta2.AcrConfiguration{Server: registryHost, Scope: scope, Environment: acrv1beta2.AzureEnvironmentPublicCloud},
			Auth:               acrv1beta2.AuthenticationMethod{ManagedIdentity: &acrv1beta2.ManagedIdentityAuth{ClientID: identity(identityIndex)}},
			ServiceAccountName: "default",
		},
	}
}

// writeFloor does, with a plain client and the bench's workers, the writes a controller must do for N bindings: a
// secret create, a service-account patch and a status patch each. It runs before the controller starts, on
// bindings it deletes afterwards. Each write carries what any controller's must for the bench to count the binding
// usable and for msi-acrpull's clients to find it: the secret a registry token, the binding label, the expiry
// annotation and the binding as its owner; the status an issue and an expiry time (nominal ones, now and one access
// token lifetime later: their size is what costs the apiserver, not their values). What acrpull writes beyond that
// (its other annotations, its conditions) is the controller's cost, not the floor's.
func (b *bench) writeFloor(ctx context.Context) (*FloorResult, error) {
	n := b.o.Bindings
	if b.o.FloorBindings > 0 && b.o.FloorBindings < n {
		n = b.o.FloorBindings
	}
	token, err := b.cloud.IssueRefreshToken(identity(0), registryHost)
	if err != nil {
		return nil, err
	}
	payload, err := dockerconfig.Render(registryHost, token)
	if err != nil {
		return nil, err
	}
	issued := metav1.NewTime(time.Now().Truncate(time.Second))
	expires := metav1.NewTime(issued.Add(b.o.AccessTokenLifetime))
	uids := make([]types.UID, n)
	accounts := &floorAccounts{latest: map[string]*corev1.ServiceAccount{}}
	createStart := time.Now()
	err = parallel(b.o.Workers, n, func(i int) error {
		bnd := newBinding(namespace(i%b.o.Namespaces), fmt.Sprintf("floor-%d", i), i%b.o.Identities)
		err := b.c.Create(ctx, bnd)
		uids[i] = bnd.UID
		return err
	})
	if err != nil {
		return nil, err
	}
	createSecs := time.Since(createStart).Seconds()
	// Before the clock starts, as a controller's cache holds the accounts before its first reconcile.
	var existing corev1.ServiceAccountList
	if err := b.c.List(ctx, &existing); err != nil {
		return nil, err
	}
	for i := range existing.Items {
		if sa := &existing.Items[i]; sa.Name == "default" {
			accounts.latest[sa.Namespace] = sa
		}
	}
	start, cpuBefore := time.Now(), b.processCPU()
	sampler := b.sampleWrites(ctx)
	err = parallel(b.o.Workers, n, func(i int) error {
		ns, name := namespace(i%b.o.Namespaces), fmt.Sprintf("floor-%d", i)
		secret := &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name,
				Labels:      map[string]string{bindingLabel: name},
				Annotations: map[string]string{expiryAnnotation: expires.UTC().Format(time.RFC3339)},
				OwnerReferences: []metav1.OwnerReference{{APIVersion: acrv1beta2.GroupVersion.String(), Kind: "AcrPullBinding",
					Name: name, UID: uids[i], Controller: ptr.To(true), BlockOwnerDeletion: ptr.To(true)}},
			},
			Type: corev1.SecretTypeDockerConfigJson,
			Data: map[string][]byte{corev1.DockerConfigJsonKey: payload},
		}
		if err := b.c.Create(ctx, secret); err != nil {
			return err
		}
		if err := accounts.attach(ctx, b.c, ns, name); err != nil {
			return err
		}
		bnd := newBinding(ns, name, 0)
		base := bnd.DeepCopy()
		bnd.Status.LastTokenRefreshTime, bnd.Status.TokenExpirationTime = &issued, &expires
		return b.c.Status().Patch(ctx, bnd, client.MergeFrom(base))
	})
	spread := sampler.stop()
	if err != nil {
		return nil, err
	}
	secs, cpu := time.Since(start).Seconds(), cpuSpent(cpuBefore, b.processCPU())
	// The floor's writes are the whole of what makes a binding usable: the bench's watches must count every one.
	if err := b.waitUsable(ctx, "floor-", n, time.Minute); err != nil {
		return nil, err
	}
	// Leave no trace for the controller: floor bindings, secrets and references go.
	err = parallel(b.o.Workers, b.o.Namespaces, func(i int) error {
		ns := namespace(i)
		if err := b.c.DeleteAllOf(ctx, &acrv1beta2.AcrPullBinding{}, client.InNamespace(ns)); err != nil {
			return err
		}
		if err := b.c.DeleteAllOf(ctx, &corev1.Secret{}, client.InNamespace(ns)); err != nil {
			return err
		}
		sa := &corev1.ServiceAccount{}
		if err := b.c.Get(ctx, types.NamespacedName{Namespace: ns, Name: "default"}, sa); err != nil {
			return err
		}
		sa.ImagePullSecrets = nil
		return b.c.Update(ctx, sa)
	})
	writes := 3 * n
	res := &FloorResult{Writes: writes, Seconds: secs, WritesPerSec: float64(writes) / secs, CPUSeconds: cpu, CreateSeconds: createSecs, Spread: spread}
	if n < b.o.Bindings {
		scale := float64(b.o.Bindings) / float64(n)
		res.MeasuredBindings, res.Writes = n, 3*b.o.Bindings
		res.Seconds, res.CreateSeconds = secs*scale, createSecs*scale
		for k, v := range res.CPUSeconds {
			res.CPUSeconds[k] = v * scale
		}
	}
	return res, err
}

// floorAccounts keeps the latest copy of each service account, as a controller's cache would: listed before the
// floor's clock starts, then the copy each patch returns; the floor reads one again only after a conflict.
type floorAccounts struct {
	mu     sync.Mutex
	latest map[string]*corev1.ServiceAccount // namespace -> its default service account
}

// attach lists the pull secret name on the namespace's default service account, with an optimistic lock.
func (f *floorAccounts) attach(ctx context.Context, c client.Client, namespace, name string) error {
	for {
		f.mu.Lock()
		sa := f.latest[namespace].DeepCopy()
		f.mu.Unlock()
		if sa == nil {
			sa = &corev1.ServiceAccount{}
			if err := c.Get(ctx, types.NamespacedName{Namespace: namespace, Name: "default"}, sa); err != nil {
				return err
			}
		}
		base := sa.DeepCopy()
		sa.ImagePullSecrets = append(sa.ImagePullSecrets, corev1.LocalObjectReference{Name: name})
		err := c.Patch(ctx, sa, client.MergeFromWithOptions(base, client.MergeFromWithOptimisticLock{}))
		f.mu.Lock()
		if err == nil {
			f.latest[namespace] = sa
		} else {
			delete(f.latest, namespace)
		}
		f.mu.Unlock()
		if !apierrors.IsConflict(err) {
			return err
		}
	}
}

// finalizerWait bounds how long the burst waits, once every binding is usable, for every binding's finalizer.
const finalizerWait = 5 * time.Minute

// burst creates N bindings and waits for all of them to be Ready.
func (b *bench) burst(ctx context.Context, floor *FloorResult) (*BurstResult, error) {
	n := b.o.Bindings
	before, refusedBefore, err := b.apiserverWriteCounts(ctx, bindingResources)
	if err != nil {
		return nil, err
	}
	b.cloud.ResetCounts()
	created := make([]time.Time, n)
	start, cpuBefore := time.Now(), b.processCPU()
	if b.profiles != nil {
		defer b.profiles.cpu(ctx, "burst", b.o.ProfileBurst)()
	}
	sampler := b.sampleWrites(ctx)
	err = parallel(b.o.Workers, n, func(i int) error {
		err := b.c.Create(ctx, newBinding(namespace(i%b.o.Namespaces), fmt.Sprintf("app-%d", i), i%b.o.Identities))
		created[i] = time.Now()
		return err
	})
	if err != nil {
		return nil, err
	}
	b.logf("created %d bindings in %.1f s; waiting until they are usable", n, time.Since(start).Seconds())
	if err := b.waitUsable(ctx, "app-", n, b.burstTimeout()); err != nil {
		sampler.stop()
		return nil, err
	}
	secs, cpu := time.Since(start).Seconds(), cpuSpent(cpuBefore, b.processCPU())
	spread := sampler.stop()
	after, refusedAfter, err := b.apiserverWriteCounts(ctx, bindingResources)
	if err != nil {
		return nil, err
	}
	// Azure's counters at the same moment as the writes: during the wait for the finalizers below the first
	// refreshes may come due (short tokens) and would be counted as the burst's.
	azure := azureCounts(b.cloud)
	// After the figures of "all usable": a finalizer the controller adds later is counted, not waited for in them.
	// Not all of them by then is a figure (Finalized says how many), not a failure: at 100,000 the finalizer patches,
	// which wait behind everything else, take longer than the wait (errNotReached is let through below).
	err = b.waitFor(ctx, n, finalizerWait, "with the finalizer", func() int { f, _ := b.ready.finalized("app-"); return f })
	var toSecret, toUsable []float64
	var readyCondition int
	var lastReady, lastUsable time.Time
	for i := range n {
		key := namespace(i%b.o.Namespaces) + "/" + fmt.Sprintf("app-%d", i)
		if seen, ok := b.ready.firstSecret(key); ok {
			toSecret = append(toSecret, seen.Sub(created[i]).Seconds())
		}
		if at, ok := b.ready.firstUsable(key); ok {
			toUsable = append(toUsable, at.Sub(created[i]).Seconds())
			lastUsable = later(lastUsable, at)
		}
		if at, ok := b.ready.firstReady(key); ok {
			readyCondition++
			lastReady = later(lastReady, at)
		}
	}
	if err != nil && !errors.Is(err, errNotReached) {
		return nil, err
	}
	finalized, lastFinalized := b.ready.finalized("app-")
	sort.Float64s(toSecret)
	sort.Float64s(toUsable)
	// The moment the last binding became usable, not the wait's poll that noticed it.
	if len(toUsable) == n {
		secs = lastUsable.Sub(start).Seconds()
	}
	if b.profiles != nil {
		b.profiles.heap(ctx, "burst-heap.pprof")
	}
	writes := diffWrites(before, after)
	// The bench's own binding creates are not the controller's.
	writes["acrpullbindings POST"] -= int64(n)
	if writes["acrpullbindings POST"] == 0 {
		delete(writes, "acrpullbindings POST")
	}
	return &BurstResult{
		Seconds: secs, RatioToFloor: secs / floor.Seconds, RatioToFloorWithCreates: secs / (floor.Seconds + floor.CreateSeconds),
		P50Seconds: percentile(toSecret, 0.50), P99Seconds: percentile(toSecret, 0.99),
		P50UsableSeconds: percentile(toUsable, 0.50), P99UsableSeconds: percentile(toUsable, 0.99),
		ReadyCondition: readyCondition, ReadyConditionSeconds: sinceIfAll(start, lastReady, readyCondition, n),
		Finalized: finalized, FinalizedSeconds: sinceIfAll(start, lastFinalized, finalized, n),
		ControllerWrites: writes, RefusedWrites: diffWrites(refusedBefore, refusedAfter), AzureRequests: azure, DistinctTokens: min(b.o.Identities, n),
		CPUSeconds: cpu, Writes: spread,
	}, nil
}

// burstTimeout bounds the wait for a burst: 30 minutes up to 10,000 bindings, and as long again for each further
// 10,000 (a 100,000 burst on a loaded two-core machine takes most of an hour).
func (b *bench) burstTimeout() time.Duration {
	return 30 * time.Minute * time.Duration(max(1, (b.o.Bindings+9999)/10000))
}

// steady watches refresh cycles after the burst.
func (b *bench) steady(ctx context.Context) (*SteadyResult, error) {
	life := b.o.AccessTokenLifetime
	window := time.Duration(float64(b.o.SteadyCycles)*0.5*float64(life)) + life/4
	before, err := b.apiserverWrites(ctx)
	if err != nil {
		return nil, err
	}
	b.cloud.ResetCounts()
	b.ready.startRefreshLog()
	b.logf("observing %s (%d refresh cycles of tokens living %s)", window.Round(time.Second), b.o.SteadyCycles, life)
	sampler := b.sampleWrites(ctx)
	select {
	case <-time.After(window):
	case <-ctx.Done():
		sampler.stop()
		b.ready.stopRefreshLog()
		return nil, ctx.Err()
	}
	spread := sampler.stop()
	after, err := b.apiserverWrites(ctx)
	refreshes := b.ready.stopRefreshLog()
	if err != nil {
		return nil, err
	}
	updates, perSecond := refreshes.count(), refreshes.perSec
	var maxPerSec int64
	for _, c := range perSecond {
		maxPerSec = max(maxPerSec, c)
	}
	mean, duplicates := refreshes.intervals(time.Duration(0.3 * float64(life)))
	writes := diffWrites(before, after)
	cycles := window.Seconds() / (0.45 * life.Seconds())
	if mean > 0 {
		cycles = window.Seconds() / mean.Seconds()
	}
	return &SteadyResult{
		WindowSeconds: window.Seconds(), Cycles: cycles, SecretUpdates: updates,
		MeanRefreshIntervalSeconds: mean.Seconds(), DuplicateUpdates: duplicates,
		StatusPatchesPerUpdate: float64(writes["acrpullbindings/status PATCH"]+writes["acrpullbindings/status PUT"]) / float64(max(updates, 1)),
		ControllerWrites:       writes, AzureRequests: azureCounts(b.cloud),
		MaxSecretUpdatesPerSec: maxPerSec, QuietSeconds: int(window.Seconds()) - len(perSecond),
		Writes: spread,
	}, nil
}

// noise adds unrelated Secrets and ConfigMaps and compares the controller's memory.
func (b *bench) noise(ctx context.Context) (*NoiseResult, error) {
	res := &NoiseResult{Objects: b.o.NoiseObjects, RSSBeforeMiB: mib(b.rss())}
	res.HeapBeforeMiB = mib(b.heap(ctx))
	payload := make([]byte, 1024)
	err := parallel(b.o.Workers, b.o.NoiseObjects, func(i int) error {
		ns, name := namespace(i%b.o.Namespaces), fmt.Sprintf("noise-%d", i)
		if i%2 == 0 {
			return b.c.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Data: map[string][]byte{"blob": payload}})
		}
		return b.c.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, BinaryData: map[string][]byte{"blob": payload}})
	})
	if err != nil {
		return nil, err
	}
	time.Sleep(10 * time.Second)
	res.RSSAfterMiB = mib(b.rss())
	res.HeapAfterMiB = mib(b.heap(ctx))
	if b.profiles != nil {
		b.profiles.heap(ctx, "noise-heap.pprof")
	}
	return res, nil
}

// throttled makes Azure answer 429 above a rate and creates bindings for identities no token is cached for.
func (b *bench) throttled(ctx context.Context) (*ThrottledResult, error) {
	n := b.o.ThrottleBindings
	for _, ep := range []azurefake.Endpoint{azurefake.IMDSToken, azurefake.ACRExchange, azurefake.ACRToken} {
		b.cloud.SetFault(ep, azurefake.Fault{RatePerSecond: b.o.ThrottleRate, RetryAfter: 2 * time.Second})
	}
	defer b.cloud.ClearFaults()
	b.cloud.ResetCounts()
	sampler := newRateSampler(b.cloud)
	defer sampler.stop()
	start := time.Now()
	err := parallel(b.o.Workers, n, func(i int) error {
		return b.c.Create(ctx, newBinding(namespace(i%b.o.Namespaces), fmt.Sprintf("throttled-%d", i), b.o.Identities+i%b.o.ThrottleIdentities))
	})
	if err != nil {
		return nil, err
	}
	if err := b.waitUsable(ctx, "throttled-", n, 20*time.Minute); err != nil {
		return nil, err
	}
	return &ThrottledResult{
		Bindings: n, Seconds: time.Since(start).Seconds(), Requests: azureCounts(b.cloud),
		Throttled: b.cloud.CountStatus(http429), MaxRatePerSecond: sampler.maxRateAfterFirst429(),
		ConfiguredRate: b.o.ThrottleRate,
	}, nil
}

const http429 = 429

// later is the later of two times.
func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// sinceIfAll is the seconds from start to last when count reached n, else 0.
func sinceIfAll(start, last time.Time, count, n int) float64 {
	if count < n || last.IsZero() {
		return 0
	}
	return last.Sub(start).Seconds()
}

// parallel runs fn(0..n-1) on workers goroutines and returns the first error.
func parallel(workers, n int, fn func(i int) error) error {
	var next atomic.Int64
	var firstErr error
	var once sync.Once
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				if err := fn(i); err != nil {
					once.Do(func() { firstErr = err })
					return
				}
			}
		}()
	}
	wg.Wait()
	return firstErr
}

func percentile(sorted []float64, p float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	// The nearest rank: the smallest figure at least a share p of the figures are no larger than.
	rank := int(math.Ceil(float64(len(sorted)) * p))
	return sorted[min(len(sorted)-1, max(rank-1, 0))]
}

func mib(b uint64) float64 { return float64(b) / (1 << 20) }

func azureCounts(c *azurefake.Cloud) map[string]int64 {
	out := map[string]int64{}
	for ep, n := range c.Counts() {
		out[string(ep)] = n
	}
	return out
}
