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

// The status is written by an update conditioned on the version read, which the apiserver serves with less work than
// a merge patch of a custom resource's status; a patch follows only an update the apiserver refused with a conflict
// (the cache lagging), so no stale status wins either way. Bindings of both API versions, a controller of its own
// recording each status write and its answer.
func TestStatusIsUpdatedAndPatchedOnlyAfterAConflict(t *testing.T) {
	g := NewWithT(t)
	const shardLabel, shard = "acrpull.test/shard", "status-writes"
	writes := &statusWriteLog{refuseFirstUpdateOf: "/acrpullbindings/status-0/status"}
	cfg := rest.CopyConfig(env.Config)
	cfg.WrapTransport = func(rt http.RoundTripper) http.RoundTripper { writes.next = rt; return writes }
	stop := startShardController(t, cfg, labels.SelectorFromSet(labels.Set{shardLabel: shard}))
	defer stop()

	ns := newNamespace(t)
	serviceAccount(t, ns, "default", "")
	for i := range 3 {
		b := managedIdentityBinding(ns, fmt.Sprintf("status-%d", i), "default", "repository:alice:pull")
		b.Labels = map[string]string{pausedLabel: "true", shardLabel: shard}
		create(t, b)
		deleteAtEnd(t, b)
		eventuallyReady(t, b, metav1.ConditionTrue, acrv1beta2.ReasonTokenMinted)
	}
	old := &acrv1beta1.AcrPullBinding{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "status-v1beta1", Labels: map[string]string{pausedLabel: "true", shardLabel: shard}},
		Spec:       acrv1beta1.AcrPullBindingSpec{AcrServer: registryHost, Scope: "repository:alice:pull", ManagedIdentityClientID: pullerClientID},
	}
	create(t, old)
	deleteAtEnd(t, old)
	eventuallyReadyV1beta1(t, client.ObjectKeyFromObject(old), metav1.ConditionTrue, acrv1beta2.ReasonTokenMinted)

	log := writes.snapshot()
	t.Logf("status writes: %v", log)
	// Per binding, in order: a patch only right after a refused update; every binding's status written by an update
	// but status-0's, whose first update is refused: the same pass then writes it by patch, not a later pass.
	byPath := map[string][]statusWrite{}
	for _, w := range log {
		byPath[w.path] = append(byPath[w.path], w)
	}
	g.Expect(byPath).To(HaveLen(4), "one status path per binding")
	for path, ws := range byPath {
		updated := 0
		for i, w := range ws {
			switch {
			case w.method == http.MethodPut && w.code == http.StatusOK:
				updated++
			case w.method == http.MethodPut && w.code == http.StatusConflict:
			case w.method == http.MethodPatch:
				g.Expect(i).To(BeNumerically(">", 0), "%s: a patch first", path)
				g.Expect(ws[i-1]).To(Equal(statusWrite{path: path, method: http.MethodPut, code: http.StatusConflict}),
					"%s: a patch not after a refused update", path)
			default:
				t.Errorf("%s: status write %s answered %d", path, w.method, w.code)
			}
		}
		if !strings.HasSuffix(path, writes.refuseFirstUpdateOf) {
			g.Expect(updated).To(BeNumerically(">=", 1), "%s: status never written by an update", path)
			continue
		}
		g.Expect(len(ws)).To(BeNumerically(">=", 2), "%s: refused update not followed", path)
		g.Expect(ws[:2]).To(Equal([]statusWrite{
			{path: path, method: http.MethodPut, code: http.StatusConflict},
			{path: path, method: http.MethodPatch, code: http.StatusOK},
		}), "%s: the refused update's pass patches", path)
	}
}

// statusWrite is one write to a binding's status subresource and the apiserver's answer.
type statusWrite struct {
	path   string
	method string
	code   int
}

// statusWriteLog records the status writes passing through it, and answers the first update of the status path ending
// in refuseFirstUpdateOf with 409 Conflict, as the apiserver does when the cache the update came from lags.
type statusWriteLog struct {
	next                http.RoundTripper
	refuseFirstUpdateOf string
	mu                  sync.Mutex
	refused             bool
	log                 []statusWrite
}

func (l *statusWriteLog) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Method == http.MethodGet || !strings.HasSuffix(req.URL.Path, "/status") {
		return l.next.RoundTrip(req)
	}
	l.mu.Lock()
	refuse := req.Method == http.MethodPut && strings.HasSuffix(req.URL.Path, l.refuseFirstUpdateOf) && !l.refused
	l.refused = l.refused || refuse
	l.mu.Unlock()
	var resp *http.Response
	if refuse {
		resp = conflictAnswer(req)
	} else if r, err := l.next.RoundTrip(req); err != nil {
		return r, err
	} else {
		resp = r
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.log = append(l.log, statusWrite{path: req.URL.Path, method: req.Method, code: resp.StatusCode})
	return resp, nil
}

func (l *statusWriteLog) snapshot() []statusWrite {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]statusWrite(nil), l.log...)
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
	return conflictAnswer(req), nil
}

// conflictAnswer is the apiserver's 409 Conflict to req, which is not passed on.
func conflictAnswer(req *http.Request) *http.Response {
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
	}
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
