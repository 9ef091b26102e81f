/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

package acrpullbinding_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	"github.com/prometheus/client_golang/prometheus"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/events"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
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

// The apiserver answers the first write to every object with 409 Conflict, as it does when another writer got there
// first: every binding still becomes Ready, with a working secret listed once on its target, and nothing else is
// lost. A controller of its own serves these bindings, through a transport that injects the conflicts; the suite's
// controller leaves them alone (they carry the paused label).
func TestAConflictOnEveryFirstWriteIsRetried(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	const shardLabel, shard = "acrpull.test/shard", "conflicts"
	conflicts := &firstWriteConflicts{seen: map[string]bool{}}
	cfg := rest.CopyConfig(env.Config)
	cfg.WrapTransport = func(rt http.RoundTripper) http.RoundTripper { conflicts.next = rt; return conflicts }
	stop := startShardController(t, cfg, labels.SelectorFromSet(labels.Set{shardLabel: shard}))
	defer stop()

	ns := newNamespace(t)
	serviceAccount(t, ns, "default", "", "theirs")
	serviceAccount(t, ns, "federated", pullerClientID)
	var bindings []*acrv1beta2.AcrPullBinding
	for i := range 4 {
		b := managedIdentityBinding(ns, fmt.Sprintf("conflicted-%d", i), "default", "repository:alice:pull")
		if i == 3 {
			b = workloadIdentityBinding(ns, "conflicted-3", "federated", "default", "repository:alice:pull")
		}
		b.Labels = map[string]string{pausedLabel: "true", shardLabel: shard}
		create(t, b)
		deleteAtEnd(t, b)
		bindings = append(bindings, b)
	}
	for _, b := range bindings {
		eventuallyReady(t, b, metav1.ConditionTrue, acrv1beta2.ReasonTokenMinted)
		g.Expect(pull(ns, "acr-pull-"+b.Name, "alice")).To(Succeed())
	}
	g.Expect(pullSecretNames(g, ns, "default")).To(ConsistOf("theirs",
		"acr-pull-conflicted-0", "acr-pull-conflicted-1", "acr-pull-conflicted-2", "acr-pull-conflicted-3"))

	// Deleting goes through the same conflicts: references and secrets still go, and the finalizer with them.
	g.Expect(k8s.Delete(ctx, bindings[0])).To(Succeed())
	g.Eventually(func(g Gomega) {
		g.Expect(pullSecretNames(g, ns, "default")).To(ConsistOf("theirs",
			"acr-pull-conflicted-1", "acr-pull-conflicted-2", "acr-pull-conflicted-3"))
		err := k8s.Get(ctx, client.ObjectKeyFromObject(bindings[0]), &acrv1beta2.AcrPullBinding{})
		g.Expect(err).To(MatchError(ContainSubstring("not found")))
	}).WithTimeout(30 * time.Second).Should(Succeed())

	injected := conflicts.injected()
	t.Logf("%d conflicts injected", len(injected))
	g.Expect(injected).To(ContainElement(MatchRegexp(`PATCH .*/acrpullbindings/conflicted-\d$`)), "binding metadata (finalizer)")
	g.Expect(injected).To(ContainElement(MatchRegexp(`PATCH .*/acrpullbindings/conflicted-\d/status$`)), "binding status")
	g.Expect(injected).To(ContainElement(MatchRegexp(`PATCH .*/serviceaccounts/default$`)), "service account")
	g.Expect(injected).To(ContainElement(MatchRegexp(`POST .*/secrets$`)), "secret creation")
	g.Expect(injected).To(ContainElement(MatchRegexp(`POST .*/serviceaccounts/federated/token$`)), "token request")
}

// firstWriteConflicts answers the first PUT, PATCH or POST to each URL path with 409 Conflict, without passing it on.
type firstWriteConflicts struct {
	next http.RoundTripper
	mu   sync.Mutex
	seen map[string]bool
	log  []string
}

func (f *firstWriteConflicts) RoundTrip(req *http.Request) (*http.Response, error) {
	switch req.Method {
	case http.MethodPut, http.MethodPatch, http.MethodPost:
	default:
		return f.next.RoundTrip(req)
	}
	key := req.Method + " " + req.URL.Path
	f.mu.Lock()
	first := !f.seen[key]
	f.seen[key] = true
	if first {
		f.log = append(f.log, key)
	}
	f.mu.Unlock()
	if !first || strings.Contains(req.URL.Path, "/events") {
		return f.next.RoundTrip(req)
	}
	if req.Body != nil {
		_ = req.Body.Close()
	}
	body := `{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","reason":"Conflict","code":409,` +
		`"message":"Operation cannot be fulfilled: injected conflict, please apply your changes to the latest version and try again"}`
	return &http.Response{
		StatusCode: http.StatusConflict, Status: "409 Conflict", Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header:        http.Header{"Content-Type": []string{"application/json"}},
		Body:          io.NopCloser(bytes.NewBufferString(body)),
		ContentLength: int64(len(body)), Request: req,
	}, nil
}

func (f *firstWriteConflicts) injected() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for _, k := range f.log {
		if !strings.Contains(k, "/events") {
			out = append(out, k)
		}
	}
	return out
}

// startShardController runs a second controller, configured like the suite's (then changed by configure), for the
// bindings selector matches. It is built from the reconcilers directly because controller names must be unique in a process unless told
// otherwise, which manager.New does not offer.
func startShardController(t *testing.T, cfg *rest.Config, selector labels.Selector, configure ...func(*acrpullbinding.Config)) (stop func()) {
	t.Helper()
	return startShardControllerWith(t, cfg, selector, cloud.HTTPClient(), configure...)
}

// startShardControllerWith is startShardController reaching Azure through azureClient, with its configuration
// changed by configure.
func startShardControllerWith(t *testing.T, cfg *rest.Config, selector labels.Selector, azureClient *http.Client,
	configure ...func(*acrpullbinding.Config)) (stop func()) {
	t.Helper()
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:     scheme.New(),
		Metrics:    metricsserver.Options{BindAddress: "0"},
		Controller: config.Controller{SkipNameValidation: ptrTo(true)},
		Cache: cache.Options{ByObject: map[client.Object]cache.ByObject{
			&acrv1beta2.AcrPullBinding{}: {Label: selector},
			&acrv1beta1.AcrPullBinding{}: {Label: selector},
		}},
	})
	if err != nil {
		t.Fatal(err)
	}
	m := metrics.New(prometheus.NewRegistry())
	minter := mint.New(azauth.NewClient(azauth.Options{HTTPClient: azureClient, Clock: clock.RealClock{}, CallTimeout: 3 * time.Second}),
		tokencache.New(clock.RealClock{}, m), clock.RealClock{})
	config := acrpullbinding.Config{
		ServiceAccountTokenAudience: "api://AzureCRTokenExchange",
		ACRAudience:                 "https://containerregistry.azure.net",
		TTLRotationFraction:         0.5,
		AllowedServerSuffixes:       []string{allowedSuffix},
		LabelSelector:               selector,
	}
	for _, c := range configure {
		c(&config)
	}
	err = acrpullbinding.SetupWithManager(mgr, acrpullbinding.Deps{
		Minter: minter, Metrics: m, Clock: clock.RealClock{}, Workers: 2,
		Recorder: func(name string) events.EventRecorder { return mgr.GetEventRecorder(name) },
		Config:   config,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()
	return func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}
}
