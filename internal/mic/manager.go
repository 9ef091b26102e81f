/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

package mic

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/selection"
	"k8s.io/client-go/rest"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/manager"

	aadv1 "github.com/acrpull/acrpull/api/aadpodidentity/v1"
	"github.com/acrpull/acrpull/internal/healthprobe"
	"github.com/acrpull/acrpull/internal/processmanager"
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

// withDefaults fills in what opts leave unset: the real clock, controller-runtime's metrics registry, upstream's
// lock name and 20 record writers.
func (opts Options) withDefaults() Options {
	opts.Clock, opts.MetricsRegistry = processmanager.OrDefaults(opts.Clock, opts.MetricsRegistry)
	if opts.LeaderElectionID == "" {
		opts.LeaderElectionID = LeaderElectionID
	}
	if opts.Config.RecordWriters <= 0 {
		opts.Config.RecordWriters = 20
	}
	return opts
}

// processOptions are how the assignment controller's process serves and elects: /healthz answered as upstream's MIC
// did, its Lease, and only the pods that carry the binding label cached.
func (opts Options) processOptions() processmanager.Options {
	labelled, _ := labels.NewRequirement(aadv1.PodLabel, selection.Exists, nil)
	return processmanager.Options{
		MetricsAddr:  opts.MetricsAddr,
		ProbeAddr:    opts.ProbeAddr,
		Healthz:      map[string]healthz.Checker{"ping": healthz.Ping},
		Readyz:       map[string]healthz.Checker{"ping": healthz.Ping},
		ProbeHandler: healthprobe.Handler,
		LeaderElection: processmanager.LeaderElection{
			Enabled: opts.LeaderElection, ID: opts.LeaderElectionID, Namespace: opts.LeaderElectionNamespace,
			LeaseDuration: opts.LeaseDuration, RenewDeadline: opts.RenewDeadline, RetryPeriod: opts.RetryPeriod,
		},
		Cache: cache.Options{
			ByObject:         map[client.Object]cache.ByObject{&corev1.Pod{}: {Label: labels.NewSelector().Add(*labelled)}},
			DefaultTransform: cache.TransformStripManagedFields(),
		},
	}
}

// NewManager builds the assignment controller: leader-elected, caching only pods that carry the binding label.
func NewManager(cfg *rest.Config, opts Options) (manager.Manager, error) {
	opts = opts.withDefaults()
	mgr, err := processmanager.New(cfg, opts.processOptions())
	if err != nil {
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
