/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

// Package manager builds acrpull's controller manager: caches sized for clusters with many unrelated objects, the
// Azure client and shared token cache, and the reconcilers. cmd/acrpull and the tests build it the same way.
package manager

import (
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

	acrv1beta1 "github.com/acrpull/acrpull/api/v1beta1"
	acrv1beta2 "github.com/acrpull/acrpull/api/v1beta2"
	"github.com/acrpull/acrpull/internal/azauth"
	"github.com/acrpull/acrpull/internal/controller/acrpullbinding"
	"github.com/acrpull/acrpull/internal/metrics"
	"github.com/acrpull/acrpull/internal/mint"
	"github.com/acrpull/acrpull/internal/processmanager"
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

// withDefaults fills in what opts leave unset: the real clock, controller-runtime's metrics registry (which the
// metrics server serves) and one worker.
func (opts Options) withDefaults() Options {
	opts.Clock, opts.MetricsRegistry = processmanager.OrDefaults(opts.Clock, opts.MetricsRegistry)
	if opts.Workers <= 0 {
		opts.Workers = 1
	}
	return opts
}

// processOptions are how the binding controller's process serves and elects: controller-runtime's probe server with
// one ping check each, msi-acrpull's Lease, and caches sized for clusters with many unrelated objects.
func (opts Options) processOptions(tokens *tokencache.Cache) processmanager.Options {
	return processmanager.Options{
		MetricsAddr:   opts.MetricsAddr,
		MetricsSecure: opts.MetricsSecure,
		PprofAddr:     opts.PprofAddr,
		ProbeAddr:     opts.ProbeAddr,
		Healthz:       map[string]healthz.Checker{"healthz": healthz.Ping},
		Readyz:        map[string]healthz.Checker{"readyz": healthz.Ping},
		LeaderElection: processmanager.LeaderElection{
			Enabled: opts.LeaderElection, ID: LeaderElectionID, Namespace: opts.LeaderElectionNamespace,
		},
		Cache:      cacheOptions(opts.Controller.LabelSelector),
		TokenCache: tokens,
		SweepEvery: 10 * time.Minute,
	}
}

// New builds a manager for cfg with the reconcilers registered.
func New(cfg *rest.Config, opts Options) (ctrl.Manager, error) {
	opts = opts.withDefaults()
	m := metrics.New(opts.MetricsRegistry)
	tokens := tokencache.New(opts.Clock, m)
	mgr, err := processmanager.New(cfg, opts.processOptions(tokens))
	if err != nil {
		return nil, err
	}
	httpClient := opts.AzureHTTPClient
	if httpClient == nil {
		httpClient = &http.Client{Transport: http.DefaultTransport}
	}
	instrumented := &http.Client{Transport: m.Transport(transportOf(httpClient)), Timeout: httpClient.Timeout}
	azure := azauth.NewClient(azauth.Options{HTTPClient: instrumented, Clock: opts.Clock, CallTimeout: opts.AzureCallTimeout})
	minter := mint.New(azure, tokens, opts.Clock)
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
// see the reconciler's watch), bindings only of this shard, no object keeps its managedFields, and repeated
// strings are stored once (compactObjects).
func cacheOptions(bindings labels.Selector) cache.Options {
	managed, _ := labels.NewRequirement(acrpullbinding.BindingLabel, selection.Exists, nil)
	byObject := map[client.Object]cache.ByObject{
		&corev1.Secret{}: {Label: labels.NewSelector().Add(*managed)},
	}
	if bindings != nil && !bindings.Empty() {
		byObject[&acrv1beta2.AcrPullBinding{}] = cache.ByObject{Label: bindings}
		byObject[&acrv1beta1.AcrPullBinding{}] = cache.ByObject{Label: bindings}
	}
	return cache.Options{ByObject: byObject, DefaultTransform: compactObjects()}
}
