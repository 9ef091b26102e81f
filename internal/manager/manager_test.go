/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

package manager

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/utils/clock"
	clocktesting "k8s.io/utils/clock/testing"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

	acrv1beta2 "github.com/acrpull/acrpull/api/v1beta2"
	"github.com/acrpull/acrpull/internal/controller/acrpullbinding"
	"github.com/acrpull/acrpull/internal/tokencache"
)

func TestWithDefaults(t *testing.T) {
	d := Options{Workers: -3}.withDefaults()
	if _, real := d.Clock.(clock.RealClock); !real || d.MetricsRegistry != ctrlmetrics.Registry || d.Workers != 1 {
		t.Errorf("defaults: clock %T, controller-runtime's registry %v, workers %d; want the real clock, its registry, 1", d.Clock, d.MetricsRegistry == ctrlmetrics.Registry, d.Workers)
	}
	fake, registry := clocktesting.NewFakeClock(time.Unix(0, 0)), prometheus.NewRegistry()
	set := Options{Clock: fake, MetricsRegistry: registry, Workers: 8}.withDefaults()
	if set.Clock != fake || set.MetricsRegistry != registry || set.Workers != 8 {
		t.Errorf("set options replaced: clock %v registry %v workers %d", set.Clock == fake, set.MetricsRegistry == registry, set.Workers)
	}
}

// The binding controller's process: msi-acrpull's Lease, controller-runtime's probe server with the healthz and
// readyz pings, secure metrics when asked, only labelled Secrets and this shard's bindings cached, the token cache
// swept every ten minutes.
func TestProcessOptions(t *testing.T) {
	shard := labels.SelectorFromSet(labels.Set{"shard": "a"})
	tokens := tokencache.New(clock.RealClock{}, nil)
	opts := Options{MetricsAddr: ":8443", MetricsSecure: true, ProbeAddr: ":8081", PprofAddr: ":6060",
		LeaderElection: true, LeaderElectionNamespace: "kube-system", Controller: acrpullbinding.Config{LabelSelector: shard}}
	p := opts.processOptions(tokens)
	if p.MetricsAddr != ":8443" || !p.MetricsSecure || p.ProbeAddr != ":8081" || p.PprofAddr != ":6060" || p.ProbeHandler != nil {
		t.Errorf("serving %+v", p)
	}
	if p.Healthz["healthz"] == nil || p.Readyz["readyz"] == nil || len(p.Healthz) != 1 || len(p.Readyz) != 1 {
		t.Errorf("checks %v %v, want healthz and readyz", p.Healthz, p.Readyz)
	}
	if le := p.LeaderElection; !le.Enabled || le.ID != "aks.azure.com" || le.Namespace != "kube-system" || le.LeaseDuration != 0 {
		t.Errorf("leader election %+v", le)
	}
	if p.TokenCache != tokens || p.SweepEvery != 10*time.Minute {
		t.Errorf("sweeping the token cache %v every %s", p.TokenCache == tokens, p.SweepEvery)
	}
	var secrets, bindings bool
	for obj, by := range p.Cache.ByObject {
		switch obj.(type) {
		case *corev1.Secret:
			secrets = by.Label.Matches(labels.Set{acrpullbinding.BindingLabel: "x"}) && !by.Label.Matches(labels.Set{})
		case *acrv1beta2.AcrPullBinding:
			bindings = by.Label.String() == shard.String()
		}
	}
	if !secrets || !bindings || p.Cache.DefaultTransform == nil {
		t.Errorf("cache %+v: labelled Secrets %v, shard's bindings %v", p.Cache, secrets, bindings)
	}
	if p := (Options{}).processOptions(nil); p.LeaderElection.Enabled || p.MetricsSecure {
		t.Errorf("election or secure metrics without being asked for: %+v", p)
	}
}
