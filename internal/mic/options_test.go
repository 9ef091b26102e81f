/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

package mic

import (
	"net/http/httptest"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/utils/clock"
	clocktesting "k8s.io/utils/clock/testing"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

	aadv1 "github.com/acrpull/acrpull/api/aadpodidentity/v1"
)

func TestWithDefaults(t *testing.T) {
	d := Options{}.withDefaults()
	if _, real := d.Clock.(clock.RealClock); !real || d.MetricsRegistry != ctrlmetrics.Registry ||
		d.LeaderElectionID != "aad-pod-identity-mic" || d.Config.RecordWriters != 20 {
		t.Errorf("defaults: clock %T, controller-runtime's registry %v, lease %q, writers %d", d.Clock, d.MetricsRegistry == ctrlmetrics.Registry, d.LeaderElectionID, d.Config.RecordWriters)
	}
	fake, registry := clocktesting.NewFakeClock(time.Unix(0, 0)), prometheus.NewRegistry()
	set := Options{Clock: fake, MetricsRegistry: registry, LeaderElectionID: "mine", Config: Config{RecordWriters: 3}}.withDefaults()
	if set.Clock != fake || set.MetricsRegistry != registry || set.LeaderElectionID != "mine" || set.Config.RecordWriters != 3 {
		t.Errorf("set options replaced: clock %v registry %v lease %q writers %d", set.Clock == fake, set.MetricsRegistry == registry, set.LeaderElectionID, set.Config.RecordWriters)
	}
}

// The assignment controller's process: its Lease with upstream's timings when given, upstream's /healthz, plain
// metrics, only labelled pods cached, and no token cache.
func TestProcessOptions(t *testing.T) {
	opts := Options{MetricsAddr: ":8888", ProbeAddr: ":8080", LeaderElection: true, LeaderElectionNamespace: "ns",
		LeaseDuration: 15 * time.Second, RetryPeriod: 2 * time.Second}.withDefaults()
	p := opts.processOptions()
	if p.MetricsAddr != ":8888" || p.MetricsSecure || p.ProbeAddr != ":8080" || p.ProbeHandler == nil || p.TokenCache != nil {
		t.Errorf("serving %+v", p)
	}
	if le := p.LeaderElection; !le.Enabled || le.ID != LeaderElectionID || le.Namespace != "ns" ||
		le.LeaseDuration != 15*time.Second || le.RenewDeadline != 0 || le.RetryPeriod != 2*time.Second {
		t.Errorf("leader election %+v", le)
	}
	// The handler is upstream's: /healthz answers "Active" while the ping passes.
	rec := httptest.NewRecorder()
	p.ProbeHandler(p.Healthz, p.Readyz).ServeHTTP(rec, httptest.NewRequest("GET", "/healthz", nil))
	if rec.Code != 200 || rec.Body.String() != "Active" || p.Readyz["ping"] == nil {
		t.Errorf("/healthz %d %q, readiness checks %v", rec.Code, rec.Body, p.Readyz)
	}
	var pods bool
	for obj, by := range p.Cache.ByObject {
		if _, ok := obj.(*corev1.Pod); ok {
			pods = by.Label.Matches(labels.Set{aadv1.PodLabel: "x"}) && !by.Label.Matches(labels.Set{})
		}
	}
	if !pods || len(p.Cache.ByObject) != 1 || p.Cache.DefaultTransform == nil {
		t.Errorf("cache %+v, want only labelled pods", p.Cache)
	}
}
