/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

package bench

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	acrv1beta2 "github.com/acrpull/acrpull/api/v1beta2"
)

// UpstreamResults are the second controller's figures (--upstream), taken in the same run as the main ones.
type UpstreamResults struct {
	Controller string         `json:"controller"`
	Burst      *BurstResult   `json:"burst,omitempty"`
	Steady     *SteadyResult  `json:"steady,omitempty"`
	Busy       *BusyResult    `json:"busy,omitempty"`
	Restart    *RestartResult `json:"restart,omitempty"`
	PeakRSSMiB float64        `json:"peakRSSMiB,omitempty"`
	// Error is the scenario that failed for the upstream controller, if one did: its later scenarios were not run,
	// and the main controller was measured all the same.
	Error string `json:"error,omitempty"`
}

// comparableScenarios are those that leave nothing behind but bindings, their secrets and references, which
// clearBindings removes before the next controller starts.
var comparableScenarios = []string{"burst", "steady", "busy", "restart"}

// measureUpstream runs the selected scenarios against the upstream controller, then stops it and removes every
// binding, its secrets and references, so the main controller starts on the same empty namespaces.
func (b *bench) measureUpstream(ctx context.Context, floor *FloorResult) (*UpstreamResults, error) {
	for _, s := range b.o.Scenarios {
		if !slices.Contains(comparableScenarios, s) {
			return nil, fmt.Errorf("--upstream measures only %s, not %q", strings.Join(comparableScenarios, ", "), s)
		}
	}
	args := b.o.Upstream
	b.logf("starting upstream controller: %s", strings.Join(args, " "))
	if err := b.startController(args); err != nil {
		return nil, err
	}
	res := &Results{Floor: floor}
	err := b.runScenarios(ctx, res)
	up := &UpstreamResults{Controller: strings.Join(args, " "), Burst: res.Burst, Steady: res.Steady, Busy: res.Busy, Restart: res.Restart, PeakRSSMiB: mib(b.procStatus("VmHWM"))}
	b.stopController()
	if err != nil {
		if ctx.Err() != nil {
			return up, err
		}
		// A scenario the upstream controller could not finish is a figure too; acrpull is still measured.
		up.Error = err.Error()
		b.logf("upstream controller: %v; its later scenarios are skipped", err)
	}
	b.logf("removing the upstream controller's bindings, secrets and references")
	return up, b.clearBindings(ctx)
}

// clearBindings deletes every binding (its finalizer removed: no controller runs), every labelled secret, and the
// default service accounts' pull secret references, and waits until the bench's watches see no binding.
func (b *bench) clearBindings(ctx context.Context) error {
	err := parallel(b.o.Workers, b.o.Namespaces, func(i int) error {
		ns := namespace(i)
		var list acrv1beta2.AcrPullBindingList
		if err := b.c.List(ctx, &list, client.InNamespace(ns)); err != nil {
			return err
		}
		for j := range list.Items {
			bnd := &list.Items[j]
			if len(bnd.Finalizers) > 0 {
				base := bnd.DeepCopy()
				bnd.Finalizers = nil
				if err := client.IgnoreNotFound(b.c.Patch(ctx, bnd, client.MergeFrom(base))); err != nil {
					return err
				}
			}
		}
		if err := b.c.DeleteAllOf(ctx, &acrv1beta2.AcrPullBinding{}, client.InNamespace(ns)); err != nil {
			return err
		}
		if err := b.c.DeleteAllOf(ctx, &corev1.Secret{}, client.InNamespace(ns), client.HasLabels{bindingLabel}); err != nil {
			return err
		}
		sa := &corev1.ServiceAccount{}
		if err := b.c.Get(ctx, client.ObjectKey{Namespace: ns, Name: "default"}, sa); err != nil {
			return err
		}
		sa.ImagePullSecrets = nil
		return b.c.Update(ctx, sa)
	})
	if err != nil {
		return err
	}
	deadline := time.Now().Add(5 * time.Minute)
	for b.ready.live() > 0 {
		if time.Now().After(deadline) {
			return fmt.Errorf("%d bindings still present 5 minutes after deletion", b.ready.live())
		}
		time.Sleep(time.Second)
	}
	return nil
}

// printComparison prints the upstream controller's figures beside the main controller's, with their ratio.
func printComparison(w io.Writer, r *Results) {
	up := r.Upstream
	fmt.Fprintf(w, "\nside by side, same run, same apiserver and fake cloud (upstream measured first)\n")
	fmt.Fprintf(w, "  upstream: %s\n  acrpull:  %s\n", up.Controller, r.Machine.Controller)
	fmt.Fprintf(w, "%-44s %14s %14s %10s\n", "figure", "upstream", "acrpull", "upstream/acrpull")
	row := func(name string, upstream, ours float64, format string) {
		ratio := "-"
		if ours > 0 {
			ratio = fmt.Sprintf("%.2fx", upstream/ours)
		}
		fmt.Fprintf(w, "%-44s %14s %14s %10s\n", name, fmt.Sprintf(format, upstream), fmt.Sprintf(format, ours), ratio)
	}
	if ub, ab := up.Burst, r.Burst; ub != nil && ab != nil {
		row("burst: all usable, s", ub.Seconds, ab.Seconds, "%.1f")
		row("burst: ratio to the write floor", ub.RatioToFloor, ab.RatioToFloor, "%.2fx")
		row("burst: create-to-usable p50, s", ub.P50UsableSeconds, ab.P50UsableSeconds, "%.2f")
		row("burst: create-to-usable p99, s", ub.P99UsableSeconds, ab.P99UsableSeconds, "%.2f")
		row("burst: every binding finalized, s", ub.FinalizedSeconds, ab.FinalizedSeconds, "%.1f")
		row("burst: create-to-secret p50, s", ub.P50Seconds, ab.P50Seconds, "%.2f")
		row("burst: create-to-secret p99, s", ub.P99Seconds, ab.P99Seconds, "%.2f")
		row("burst: apiserver writes", float64(sum(ub.ControllerWrites)), float64(sum(ab.ControllerWrites)), "%.0f")
		row("burst: Azure requests", float64(sum(ub.AzureRequests)), float64(sum(ab.AzureRequests)), "%.0f")
		row("burst: controller CPU, s", ub.CPUSeconds["controller"], ab.CPUSeconds["controller"], "%.1f")
		row("burst: kube-apiserver CPU, s", ub.CPUSeconds["kube-apiserver"], ab.CPUSeconds["kube-apiserver"], "%.1f")
	}
	if us, as := up.Steady, r.Steady; us != nil && as != nil {
		row("steady: secret updates", float64(us.SecretUpdates), float64(as.SecretUpdates), "%.0f")
		row("steady: status writes per secret update", us.StatusPatchesPerUpdate, as.StatusPatchesPerUpdate, "%.2f")
		row("steady: apiserver writes", float64(sum(us.ControllerWrites)), float64(sum(as.ControllerWrites)), "%.0f")
		row("steady: Azure requests", float64(sum(us.AzureRequests)), float64(sum(as.AzureRequests)), "%.0f")
		row("steady: most secret updates in one second", float64(us.MaxSecretUpdatesPerSec), float64(as.MaxSecretUpdatesPerSec), "%.0f")
	}
	if ub, ab := up.Busy, r.Busy; ub != nil && ab != nil {
		row("busy: bindings present", float64(ub.Present), float64(ab.Present), "%.0f")
		row("busy: create-to-usable p50, s", ub.P50Seconds, ab.P50Seconds, "%.2f")
		row("busy: create-to-usable p99, s", ub.P99Seconds, ab.P99Seconds, "%.2f")
		row("busy: create-to-usable max, s", ub.MaxSeconds, ab.MaxSeconds, "%.2f")
		row("busy: create-to-secret p50, s", ub.SecretP50Seconds, ab.SecretP50Seconds, "%.2f")
		row("busy: create-to-secret p99, s", ub.SecretP99Seconds, ab.SecretP99Seconds, "%.2f")
		row("busy: present secrets refreshed meanwhile", float64(ub.Refreshes), float64(ab.Refreshes), "%.0f")
		row("busy: not usable when the wait ended", float64(ub.NotUsable), float64(ab.NotUsable), "%.0f")
	}
	if ur, ar := up.Restart, r.Restart; ur != nil && ar != nil {
		row("restart: bindings", float64(ur.Bindings), float64(ar.Bindings), "%.0f")
		row("restart: counted for, s", ur.WindowSeconds, ar.WindowSeconds, "%.1f")
		row("restart: apiserver writes", float64(sum(ur.Writes)), float64(sum(ar.Writes)), "%.0f")
		row("restart: token refreshes meanwhile", float64(ur.TokenRefreshes), float64(ar.TokenRefreshes), "%.0f")
		row("restart: Azure requests", float64(sum(ur.AzureRequests)), float64(sum(ar.AzureRequests)), "%.0f")
		row("restart: until every binding current, s", ur.CurrentSeconds, ar.CurrentSeconds, "%.1f")
		row("restart: fewest current afterwards", float64(ur.LeastCurrent), float64(ar.LeastCurrent), "%.0f")
		row("restart: peak RSS of the new process, MiB", ur.PeakRSSMiB, ar.PeakRSSMiB, "%.0f")
	}
	row("controller peak RSS, MiB", up.PeakRSSMiB, r.ControllerPeakRSSMiB, "%.0f")
	if up.Burst != nil && r.Burst != nil {
		fmt.Fprintf(w, "upstream burst writes: %s\nacrpull burst writes:  %s\n", sortedMap(up.Burst.ControllerWrites), sortedMap(r.Burst.ControllerWrites))
	}
	if up.Steady != nil && r.Steady != nil {
		fmt.Fprintf(w, "upstream steady writes: %s\nacrpull steady writes:  %s\n", sortedMap(up.Steady.ControllerWrites), sortedMap(r.Steady.ControllerWrites))
	}
	if up.Restart != nil && r.Restart != nil {
		fmt.Fprintf(w, "upstream restart writes: %s\nacrpull restart writes:  %s\n", sortedMap(up.Restart.Writes), sortedMap(r.Restart.Writes))
		fmt.Fprintf(w, "upstream restart Azure: %s\nacrpull restart Azure:  %s\n", sortedMap(up.Restart.AzureRequests), sortedMap(r.Restart.AzureRequests))
	}
	if up.Error != "" {
		fmt.Fprintf(w, "upstream did not finish: %s\n", up.Error)
	}
}

func sum(m map[string]int64) int64 {
	var n int64
	for _, v := range m {
		n += v
	}
	return n
}
