/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

// Package processmanager builds the controller-runtime manager each acrpull program runs in: the one scheme, the
// metrics server, the health probes, leader election, the caches' options and the sweeping of a token cache. The
// binding controller (internal/manager), the assignment controller (internal/mic) and the node agent (internal/nmi)
// build theirs here, so the three processes' plumbing is written once; what each runs in it, and its defaults, stay
// with its product. It is process plumbing, not product logic, which is why both products may link it (hack/verify.sh
// lists it as shared).
package processmanager

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/client-go/rest"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
	"sigs.k8s.io/controller-runtime/pkg/metrics/filters"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/acrpull/acrpull/internal/scheme"
)

// Options say how a program's manager serves and elects.
type Options struct {
	// MetricsAddr serves /metrics ("0" serves none).
	MetricsAddr string
	// MetricsSecure serves metrics over HTTPS to callers the apiserver authenticates and authorizes (TokenReview and
	// SubjectAccessReview for GET on the /metrics path); off, plain HTTP.
	MetricsSecure bool
	// PprofAddr serves /debug/pprof when set.
	PprofAddr string

	// ProbeAddr serves the liveness (/healthz) and readiness (/readyz) checks ("" or "0" serves none).
	ProbeAddr string
	// Healthz and Readyz are the checks by name. More can be added with the manager's AddHealthzCheck and
	// AddReadyzCheck before it starts, whichever server answers them.
	Healthz, Readyz map[string]healthz.Checker
	// ProbeHandler, when set, answers ProbeAddr in place of controller-runtime's probe server: the pod identity
	// programs answer /healthz as upstream aad-pod-identity's did (internal/healthprobe).
	ProbeHandler func(healthz, readyz map[string]healthz.Checker) http.Handler

	// LeaderElection makes one replica at a time run the runnables that need it.
	LeaderElection LeaderElection

	// Cache and Client are controller-runtime's cache and client options, as each program narrows what it caches.
	Cache  cache.Options
	Client client.Options

	// TokenCache, when set, is swept every SweepEvery on every replica, so tokens nobody asks for again do not stay
	// in memory.
	TokenCache Sweeper
	SweepEvery time.Duration
}

// LeaderElection configures the Lease a program's replicas elect a leader with.
type LeaderElection struct {
	Enabled   bool
	ID        string
	Namespace string
	// LeaseDuration, RenewDeadline and RetryPeriod tune the election; zero keeps controller-runtime's defaults.
	LeaseDuration, RenewDeadline, RetryPeriod time.Duration
}

// OrDefaults returns c and r, with the real clock for a nil c and controller-runtime's registry (which the metrics
// server serves) for a nil r: every program's default time and metrics.
func OrDefaults(c clock.Clock, r prometheus.Registerer) (clock.Clock, prometheus.Registerer) {
	if c == nil {
		c = clock.RealClock{}
	}
	if r == nil {
		r = ctrlmetrics.Registry
	}
	return c, r
}

// Sweeper drops what has expired; tokencache.Cache is one.
type Sweeper interface{ Sweep() }

// New builds the manager for cfg: the checks are served, and the token cache is swept once the manager starts.
func New(cfg *rest.Config, opts Options) (manager.Manager, error) {
	if opts.TokenCache != nil && opts.SweepEvery <= 0 {
		return nil, errors.New("a token cache to sweep needs a sweep interval")
	}
	mgr, err := ctrl.NewManager(cfg, opts.managerOptions())
	if err != nil {
		return nil, err
	}
	if mgr, err = serveProbes(mgr, opts); err != nil {
		return nil, err
	}
	if opts.TokenCache != nil {
		if err := mgr.Add(sweeper{cache: opts.TokenCache, every: opts.SweepEvery}); err != nil {
			return nil, err
		}
	}
	return mgr, nil
}

// managerOptions maps opts onto controller-runtime's.
func (opts Options) managerOptions() ctrl.Options {
	o := ctrl.Options{
		Scheme:           scheme.New(),
		Metrics:          metricsserver.Options{BindAddress: opts.MetricsAddr},
		PprofBindAddress: opts.PprofAddr,
		Cache:            opts.Cache,
		Client:           opts.Client,
	}
	if opts.MetricsSecure {
		// A self-signed certificate: Prometheus scrapes in-cluster with the pod's address, which no CA can name.
		o.Metrics.SecureServing, o.Metrics.FilterProvider = true, filters.WithAuthenticationAndAuthorization
	}
	o.HealthProbeBindAddress = opts.ProbeAddr
	if opts.ProbeHandler != nil {
		o.HealthProbeBindAddress = "0" // serveProbes answers ProbeAddr
	}
	if le := opts.LeaderElection; le.Enabled {
		o.LeaderElection, o.LeaderElectionID, o.LeaderElectionNamespace = true, le.ID, le.Namespace
		// A replica that stops hands the Lease over at once instead of making the next leader wait it out.
		o.LeaderElectionReleaseOnCancel = true
		o.LeaseDuration, o.RenewDeadline, o.RetryPeriod = positive(le.LeaseDuration), positive(le.RenewDeadline), positive(le.RetryPeriod)
	}
	return o
}

// positive is d, or nil (controller-runtime's default) when d is not set.
func positive(d time.Duration) *time.Duration {
	if d > 0 {
		return &d
	}
	return nil
}

// serveProbes adds opts' checks to controller-runtime's probe server, or serves them with opts.ProbeHandler as one
// of the manager's HTTP servers; either way they answer from the start, while caches sync and on replicas not
// leading. With a ProbeHandler the manager returned takes further checks into the maps that handler serves.
func serveProbes(mgr manager.Manager, opts Options) (manager.Manager, error) {
	if opts.ProbeHandler == nil {
		for name, check := range opts.Healthz {
			if err := mgr.AddHealthzCheck(name, check); err != nil {
				return nil, err
			}
		}
		for name, check := range opts.Readyz {
			if err := mgr.AddReadyzCheck(name, check); err != nil {
				return nil, err
			}
		}
		return mgr, nil
	}
	probed := &probedManager{Manager: mgr, healthz: maps.Clone(opts.Healthz), readyz: maps.Clone(opts.Readyz)}
	if probed.healthz == nil {
		probed.healthz = map[string]healthz.Checker{}
	}
	if probed.readyz == nil {
		probed.readyz = map[string]healthz.Checker{}
	}
	if opts.ProbeAddr == "" || opts.ProbeAddr == "0" {
		return probed, nil
	}
	return probed, mgr.Add(&manager.Server{
		Name:   "health probe",
		Server: &http.Server{Addr: opts.ProbeAddr, Handler: opts.ProbeHandler(probed.healthz, probed.readyz), ReadHeaderTimeout: 10 * time.Second},
	})
}

// probedManager is a manager whose checks a ProbeHandler serves: its AddHealthzCheck and AddReadyzCheck add to the
// maps that handler reads.
type probedManager struct {
	manager.Manager
	healthz, readyz map[string]healthz.Checker
}

// AddHealthzCheck adds a liveness check; call it before Start.
func (m *probedManager) AddHealthzCheck(name string, check healthz.Checker) error {
	return addCheck(m.healthz, "liveness", name, check)
}

// AddReadyzCheck adds a readiness check; call it before Start.
func (m *probedManager) AddReadyzCheck(name string, check healthz.Checker) error {
	return addCheck(m.readyz, "readiness", name, check)
}

func addCheck(checks map[string]healthz.Checker, kind, name string, check healthz.Checker) error {
	if _, ok := checks[name]; ok {
		return fmt.Errorf("%s check %q added twice", kind, name)
	}
	checks[name] = check
	return nil
}

// sweeper sweeps a token cache now and then. It ticks on the wall clock, not an injected one: a sweep frees only
// entries the cache, by its own clock, holds expired and unblocked, so when it runs changes no answer.
type sweeper struct {
	cache Sweeper
	every time.Duration
}

func (s sweeper) Start(ctx context.Context) error {
	t := time.NewTicker(s.every)
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
