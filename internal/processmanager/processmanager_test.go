/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

package processmanager

import (
	"context"
	"errors"
	"net"
	"net/http"
	"reflect"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/rest"
	"k8s.io/utils/clock"
	clocktesting "k8s.io/utils/clock/testing"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/acrpull/acrpull/internal/harness/testenv"
)

func TestManagerOptions(t *testing.T) {
	minute := time.Minute
	handler := func(map[string]healthz.Checker, map[string]healthz.Checker) http.Handler {
		return http.NotFoundHandler()
	}
	for _, tc := range []struct {
		name string
		opts Options
		// check fails the test when the mapped options are not what opts say.
		check func(t *testing.T, o Options)
	}{{
		name: "plain metrics, controller-runtime's probes, no election",
		opts: Options{MetricsAddr: ":8080", ProbeAddr: ":8081", PprofAddr: ":6060"},
		check: func(t *testing.T, opts Options) {
			o := opts.managerOptions()
			if o.Metrics.BindAddress != ":8080" || o.Metrics.SecureServing || o.Metrics.FilterProvider != nil {
				t.Errorf("metrics %+v, want plain HTTP on :8080", o.Metrics)
			}
			if o.HealthProbeBindAddress != ":8081" || o.PprofBindAddress != ":6060" {
				t.Errorf("probe %q pprof %q", o.HealthProbeBindAddress, o.PprofBindAddress)
			}
			if o.LeaderElection || o.LeaderElectionID != "" || o.LeaderElectionReleaseOnCancel || o.LeaseDuration != nil {
				t.Errorf("leader election set without being asked for: %v %q", o.LeaderElection, o.LeaderElectionID)
			}
		},
	}, {
		name: "secure metrics",
		opts: Options{MetricsAddr: ":8443", MetricsSecure: true},
		check: func(t *testing.T, opts Options) {
			o := opts.managerOptions()
			if o.Metrics.BindAddress != ":8443" || !o.Metrics.SecureServing || o.Metrics.FilterProvider == nil {
				t.Errorf("metrics %+v, want HTTPS with authentication and authorization", o.Metrics)
			}
		},
	}, {
		name: "a probe handler serves the probes, not controller-runtime",
		opts: Options{ProbeAddr: ":9090", ProbeHandler: handler},
		check: func(t *testing.T, opts Options) {
			if o := opts.managerOptions(); o.HealthProbeBindAddress != "0" {
				t.Errorf("controller-runtime's probe server on %q beside the handler's", o.HealthProbeBindAddress)
			}
		},
	}, {
		name: "leader election with tuned and default timings",
		opts: Options{LeaderElection: LeaderElection{Enabled: true, ID: "lease", Namespace: "ns", LeaseDuration: time.Minute}},
		check: func(t *testing.T, opts Options) {
			o := opts.managerOptions()
			if !o.LeaderElection || o.LeaderElectionID != "lease" || o.LeaderElectionNamespace != "ns" || !o.LeaderElectionReleaseOnCancel {
				t.Errorf("election %v %q %q release %v", o.LeaderElection, o.LeaderElectionID, o.LeaderElectionNamespace, o.LeaderElectionReleaseOnCancel)
			}
			if o.LeaseDuration == nil || *o.LeaseDuration != minute || o.RenewDeadline != nil || o.RetryPeriod != nil {
				t.Errorf("lease %v renew %v retry %v, want 1m and controller-runtime's defaults", o.LeaseDuration, o.RenewDeadline, o.RetryPeriod)
			}
		},
	}, {
		name: "cache and client options pass through; the scheme knows both products' types",
		opts: Options{
			Cache:  cache.Options{ByObject: map[client.Object]cache.ByObject{&corev1.Pod{}: {}}},
			Client: client.Options{Cache: &client.CacheOptions{DisableFor: []client.Object{&corev1.Secret{}}}},
		},
		check: func(t *testing.T, opts Options) {
			o := opts.managerOptions()
			if !reflect.DeepEqual(o.Cache, opts.Cache) || !reflect.DeepEqual(o.Client, opts.Client) {
				t.Errorf("cache %+v client %+v, want %+v %+v", o.Cache, o.Client, opts.Cache, opts.Client)
			}
			for _, gvk := range []schema.GroupVersionKind{
				{Group: "acrpull.microsoft.com", Version: "v1beta2", Kind: "AcrPullBinding"},
				{Group: "aadpodidentity.k8s.io", Version: "v1", Kind: "AzureIdentity"},
				{Version: "v1", Kind: "Pod"},
			} {
				if !o.Scheme.Recognizes(gvk) {
					t.Errorf("scheme does not know %s", gvk)
				}
			}
		},
	}} {
		t.Run(tc.name, func(t *testing.T) { tc.check(t, tc.opts) })
	}
}

// With a probe handler, the checks the options name and those added to the manager later are the ones the handler
// serves; a name is taken once.
func TestProbeHandlerServesChecksAddedLater(t *testing.T) {
	var served struct{ healthz, readyz map[string]healthz.Checker }
	opts := Options{
		MetricsAddr: "0",
		ProbeAddr:   "127.0.0.1:0",
		Healthz:     map[string]healthz.Checker{"ping": healthz.Ping},
		ProbeHandler: func(live, ready map[string]healthz.Checker) http.Handler {
			served.healthz, served.readyz = live, ready
			return http.NotFoundHandler()
		},
	}
	// No request reaches this address: a manager is built without calling the apiserver.
	mgr, err := New(&rest.Config{Host: "https://127.0.0.1:1"}, opts)
	if err != nil {
		t.Fatal(err)
	}
	notYet := errors.New("not yet")
	if err := mgr.AddReadyzCheck("serving", func(*http.Request) error { return notYet }); err != nil {
		t.Fatal(err)
	}
	if err := mgr.AddHealthzCheck("redirect", healthz.Ping); err != nil {
		t.Fatal(err)
	}
	if served.readyz["serving"] == nil || served.readyz["serving"](nil) != notYet {
		t.Errorf("readiness checks served %v, want the one added after New", served.readyz)
	}
	if served.healthz["ping"] == nil || served.healthz["redirect"] == nil {
		t.Errorf("liveness checks served %v, want ping and redirect", served.healthz)
	}
	if err := mgr.AddReadyzCheck("serving", healthz.Ping); err == nil {
		t.Error("a second readiness check named serving was taken")
	}
	if _, ok := opts.Healthz["redirect"]; ok {
		t.Error("the caller's map was changed")
	}
}

func TestTokenCacheNeedsASweepInterval(t *testing.T) {
	if _, err := New(&rest.Config{Host: "https://127.0.0.1:1"}, Options{MetricsAddr: "0", TokenCache: sweepCounter(nil)}); err == nil {
		t.Fatal("a token cache without a sweep interval was taken")
	}
}

// sweepCounter says each sweep on its channel, without blocking the sweeper when nobody listens.
type sweepCounter chan struct{}

func (c sweepCounter) Sweep() {
	select {
	case c <- struct{}{}:
	default:
	}
}

// The sweeper sweeps on every replica, leader or not, until the manager stops.
func TestSweeperSweepsUntilStopped(t *testing.T) {
	s := sweeper{cache: make(sweepCounter, 1), every: time.Millisecond}
	if s.NeedLeaderElection() {
		t.Error("the sweeper waits for leadership; a replica not leading would keep every expired token")
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- s.Start(ctx) }()
	<-s.cache.(sweepCounter)
	<-s.cache.(sweepCounter)
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("sweeper stopped with %v", err)
	}
}

func TestOrDefaults(t *testing.T) {
	if c, r := OrDefaults(nil, nil); c != (clock.RealClock{}) || r != ctrlmetrics.Registry {
		t.Errorf("defaults %T, controller-runtime's registry %v; want the real clock and its registry", c, r == ctrlmetrics.Registry)
	}
	fake, registry := clocktesting.NewFakeClock(time.Unix(0, 0)), prometheus.NewRegistry()
	if c, r := OrDefaults(fake, registry); c != fake || r != registry {
		t.Errorf("given clock and registry replaced: %T, registry kept %v", c, r == registry)
	}
}

// On a running manager over a real apiserver, the probe address answers the checks the options name and those added
// later, through controller-runtime's probe server or through a ProbeHandler, and a failing readiness check fails
// /readyz.
func TestRunningManagerAnswersProbes(t *testing.T) {
	env, err := testenv.Start()
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = env.Stop() }()
	upstream := func(live, ready map[string]healthz.Checker) http.Handler {
		mux := http.NewServeMux()
		mux.Handle("/healthz", http.StripPrefix("/healthz", &healthz.Handler{Checks: live}))
		mux.Handle("/readyz", http.StripPrefix("/readyz", &healthz.Handler{Checks: ready}))
		return mux
	}
	for name, handler := range map[string]func(live, ready map[string]healthz.Checker) http.Handler{"controller-runtime": nil, "handler": upstream} {
		t.Run(name, func(t *testing.T) {
			addr := freeAddress(t)
			var ready atomic.Bool
			mgr, err := New(env.Config, Options{MetricsAddr: "0", ProbeAddr: addr, ProbeHandler: handler,
				Healthz: map[string]healthz.Checker{"ping": healthz.Ping}, TokenCache: make(sweepCounter, 1), SweepEvery: time.Hour})
			if err != nil {
				t.Fatal(err)
			}
			if err := mgr.AddReadyzCheck("serving", func(*http.Request) error {
				if !ready.Load() {
					return errors.New("not yet")
				}
				return nil
			}); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- mgr.Start(ctx) }()
			defer func() {
				cancel()
				if err := <-done; err != nil {
					t.Errorf("manager stopped with %v", err)
				}
			}()
			// The probe server starts with the manager: wait until it answers at all (failing rather than hanging if
			// it never does), then ask.
			giveUp := time.After(2 * time.Minute)
			for {
				if resp, err := http.Get("http://" + addr + "/healthz"); err == nil {
					resp.Body.Close()
					break
				}
				select {
				case err := <-done:
					t.Fatalf("the manager stopped before serving probes: %v", err)
				case <-giveUp:
					t.Fatal("nothing answers on the probe address")
				case <-time.After(50 * time.Millisecond):
				}
			}
			for _, probe := range []struct {
				path  string
				ready bool
				want  int
			}{{"/healthz", false, http.StatusOK}, {"/readyz", false, http.StatusInternalServerError}, {"/readyz", true, http.StatusOK}} {
				ready.Store(probe.ready)
				resp, err := http.Get("http://" + addr + probe.path)
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				if resp.StatusCode != probe.want {
					t.Errorf("%s with the serving check %v: %d, want %d", probe.path, probe.ready, resp.StatusCode, probe.want)
				}
			}
		})
	}
}

// freeAddress is a loopback address no listener holds right now.
func freeAddress(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}
