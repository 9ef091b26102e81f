/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

// Package manager builds acrpull's controller manager: caches sized for clusters with many unrelated objects, the
// Azure client and shared token cache, and the reconcilers. cmd/acrpull and the tests build it the same way.
package manager

import (
	"context"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/selection"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/events"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
	"sigs.k8s.io/controller-runtime/pkg/metrics/filters"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	acrv1beta1 "github.com/acrpull/acrpull/api/v1beta1"
	acrv1beta2 "github.com/acrpull/acrpull/api/v1beta2"
	"github.com/acrpull/acrpull/internal/azauth"
	"github.com/acrpull/acrpull/internal/controller/acrpullbinding"
	"github.com/acrpull/acrpull/internal/metrics"
	"github.com/acrpull/acrpull/internal/mint"
	"github.com/acrpull/acrpull/internal/scheme"
	"github.com/acrpull/acrpull/internal/tokencache"
)

// LeaderElectionID is msi-acrpull's lease name, so an old and a new controller never both act during a migration.
const LeaderElectionID = "aks.azure.com"

// Options configure the manager.
type Options struct {
	MetricsAddr string
	// MetricsSecure serves metrics over HTTPS to callers the apiserver authenticates and authorizes (TokenReview and
	// SubjectAccessReview for GET on the /metrics path), as current kubebuilder scaffolds do; off, plain HTTP as
	// msi-acrpull served them.
	MetricsSecure bool
	ProbeAddr     string
	// PprofAddr serves /debug/pprof when set, for profiling a running controller.
	PprofAddr               string
	LeaderElection          bool
	LeaderElectionNamespace string
	// Workers is the number of bindings reconciled at once, per API version.
	Workers int
	// Controller is the reconcilers' configuration.
	Controller acrpullbinding.Config
	// AzureHTTPClient carries Azure requests; nil honours HTTPS_PROXY and SSL_CERT_FILE like any Go program.
	AzureHTTPClient *http.Client
	// AzureCallTimeout bounds each Azure request; 0 means 30 s.
	AzureCallTimeout time.Duration
	// Clock is the reconcilers' and the token cache's time; nil is the real clock.
	Clock clock.Clock
	// MetricsRegistry receives acrpull's metrics; nil is controller-runtime's registry, which the metrics server serves.
	MetricsRegistry prometheus.Registerer
}

// New builds a manager for cfg with the reconcilers registered.
func New(cfg *rest.Config, opts Options) (ctrl.Manager, error) {
	if opts.Clock == nil {
		opts.Clock = clock.RealClock{}
	}
	if opts.MetricsRegistry == nil {
		opts.MetricsRegistry = ctrlmetrics.Registry
	}
	if opts.Workers <= 0 {
		opts.Workers = 1
	}
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                        scheme.New(),
		Metrics:                       metricsOptions(opts),
		HealthProbeBindAddress:        opts.ProbeAddr,
		PprofBindAddress:              opts.PprofAddr,
		LeaderElection:                opts.LeaderElection,
		LeaderElectionID:              LeaderElectionID,
		LeaderElectionNamespace:       opts.LeaderElectionNamespace,
		LeaderElectionReleaseOnCancel: true,
		Cache:                         cacheOptions(opts.Controller.LabelSelector),
	})
	if err != nil {
		return nil, err
	}
	if err := mgr.AddHealthzCheck("healthz", healthz.Ping); err != nil {
		return nil, err
	}
	if err := mgr.AddReadyzCheck("readyz", healthz.Ping); err != nil {
		return nil, err
	}

	m := metrics.New(opts.MetricsRegistry)
	httpClient := opts.AzureHTTPClient
	if httpClient == nil {
		httpClient = &http.Client{Transport: http.DefaultTransport}
	}
	instrumented := &http.Client{Transport: m.Transport(transportOf(httpClient)), Timeout: httpClient.Timeout}
	tokens := tokencache.New(opts.Clock, m)
	azure := azauth.NewClient(azauth.Options{HTTPClient: instrumented, Clock: opts.Clock, CallTimeout: opts.AzureCallTimeout})
	minter := mint.New(azure, tokens, opts.Clock)
	if err := mgr.Add(sweeper{cache: tokens}); err != nil {
		return nil, err
	}
	err = acrpullbinding.SetupWithManager(mgr, acrpullbinding.Deps{
		Minter:      minter,
		PullChecker: azure,
		Metrics:     m,
		Config:      opts.Controller,
		Clock:       opts.Clock,
		Workers:     opts.Workers,
		Recorder:    func(name string) events.EventRecorder { return mgr.GetEventRecorder(name) },
	})
	return mgr, err
}

func transportOf(c *http.Client) http.RoundTripper {
	if c.Transport != nil {
		return c.Transport
	}
	return http.DefaultTransport
}

// cacheOptions keep memory independent of unrelated objects: only labelled Secrets are cached (and as metadata,
// see the reconciler's watch), bindings only of this shard, and no object keeps its managedFields.
func cacheOptions(bindings labels.Selector) cache.Options {
	managed, _ := labels.NewRequirement(acrpullbinding.BindingLabel, selection.Exists, nil)
	byObject := map[client.Object]cache.ByObject{
		&corev1.Secret{}: {Label: labels.NewSelector().Add(*managed)},
	}
	if bindings != nil && !bindings.Empty() {
		byObject[&acrv1beta2.AcrPullBinding{}] = cache.ByObject{Label: bindings}
		byObject[&acrv1beta1.AcrPullBinding{}] = cache.ByObject{Label: bindings}
	}
	return cache.Options{ByObject: byObject, DefaultTransform: cache.TransformStripManagedFields()}
}

// sweeper drops expired tokens from the cache now and then.
type sweeper struct{ cache *tokencache.Cache }

func (s sweeper) Start(ctx context.Context) error {
	t := time.NewTicker(10 * time.Minute)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			s.cache.Sweep()
		}
	}
}

// NeedLeaderElection: every replica keeps its own cache tidy.
func (sweeper) NeedLeaderElection() bool { return false }

var _ manager.LeaderElectionRunnable = sweeper{}

func metricsOptions(opts Options) metricsserver.Options {
	m := metricsserver.Options{BindAddress: opts.MetricsAddr}
	if opts.MetricsSecure {
		// A self-signed certificate: Prometheus scrapes in-cluster with the pod's address, which no CA can name.
		m.SecureServing, m.FilterProvider = true, filters.WithAuthenticationAndAuthorization
	}
	return m
}
