/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

package mic

import (
	"cmp"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/selection"
	"k8s.io/client-go/rest"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	aadv1 "github.com/acrpull/acrpull/api/aadpodidentity/v1"
	"github.com/acrpull/acrpull/internal/healthprobe"
	"github.com/acrpull/acrpull/internal/scheme"
)

// LeaderElectionID is upstream MIC's lock name, now a Lease: an old MIC (Endpoints lock) and acrpull's must not run
// together, which the migration guide says.
const LeaderElectionID = "aad-pod-identity-mic"

// Options configure the assignment controller's manager.
type Options struct {
	MetricsAddr             string
	ProbeAddr               string
	LeaderElection          bool
	LeaderElectionNamespace string
	// LeaderElectionID names the Lease; empty is LeaderElectionID (upstream's --leader-election-name default).
	LeaderElectionID string
	// LeaseDuration, RenewDeadline and RetryPeriod tune leader election; zero keeps controller-runtime's defaults.
	LeaseDuration, RenewDeadline, RetryPeriod time.Duration
	Config                                    Config
	ARM                                       ARM
	Clock                                     clock.Clock
	// MetricsRegistry receives the controller's metrics; nil is controller-runtime's registry.
	MetricsRegistry prometheus.Registerer
}

// NewManager builds the assignment controller: leader-elected, caching only pods that carry the binding label.
func NewManager(cfg *rest.Config, opts Options) (manager.Manager, error) {
	if opts.Clock == nil {
		opts.Clock = clock.RealClock{}
	}
	if opts.MetricsRegistry == nil {
		opts.MetricsRegistry = ctrlmetrics.Registry
	}
	if opts.Config.RecordWriters <= 0 {
		opts.Config.RecordWriters = 20
	}
	labelled, err := labels.NewRequirement(aadv1.PodLabel, selection.Exists, nil)
	if err != nil {
		return nil, err
	}
	orDefault := func(d *time.Duration) *time.Duration {
		if *d > 0 {
			return d
		}
		return nil
	}
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                        scheme.New(),
		Metrics:                       metricsserver.Options{BindAddress: opts.MetricsAddr},
		HealthProbeBindAddress:        "0", // healthprobe.Serve answers /healthz as upstream's MIC did
		LeaderElection:                opts.LeaderElection,
		LeaderElectionID:              cmp.Or(opts.LeaderElectionID, LeaderElectionID),
		LeaderElectionNamespace:       opts.LeaderElectionNamespace,
		LeaderElectionReleaseOnCancel: true,
		LeaseDuration:                 orDefault(&opts.LeaseDuration),
		RenewDeadline:                 orDefault(&opts.RenewDeadline),
		RetryPeriod:                   orDefault(&opts.RetryPeriod),
		Cache: cache.Options{
			ByObject:         map[client.Object]cache.ByObject{&corev1.Pod{}: {Label: labels.NewSelector().Add(*labelled)}},
			DefaultTransform: cache.TransformStripManagedFields(),
		},
	})
	if err != nil {
		return nil, err
	}
	probes := healthprobe.Checks{
		Healthz: map[string]healthz.Checker{"ping": healthz.Ping},
		Readyz:  map[string]healthz.Checker{"ping": healthz.Ping},
	}
	if err := healthprobe.Serve(mgr, opts.ProbeAddr, probes); err != nil {
		return nil, err
	}
	metrics := NewMetrics(opts.MetricsRegistry)
	if err := mgr.Add(leadership{metrics}); err != nil {
		return nil, err
	}
	r := &Reconciler{Client: mgr.GetClient(), ARM: opts.ARM, Config: opts.Config, Clock: opts.Clock,
		Recorder: mgr.GetEventRecorder("acrpull-mic"), Metrics: metrics}
	return mgr, r.SetupWithManager(mgr)
}
