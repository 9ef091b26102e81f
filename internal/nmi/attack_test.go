/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

package nmi_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/util/flowcontrol"
	"sigs.k8s.io/controller-runtime/pkg/client"

	aadv1 "github.com/acrpull/acrpull/api/aadpodidentity/v1"
	"github.com/acrpull/acrpull/internal/harness/azurefake"
	"github.com/acrpull/acrpull/internal/nmi"
)

// startAgent runs a second agent (its own node, options and apiserver client) for the test's lifetime.
func startAgent(t *testing.T, cfg *rest.Config, opts nmi.Options) *nmi.Agent {
	t.Helper()
	a, err := nmi.New(cfg, opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan error, 1)
	go func() { stopped <- a.Start(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-stopped; err != nil {
			t.Errorf("agent: %v", err)
		}
	})
	if !a.GetCache().WaitForCacheSync(ctx) {
		t.Fatal("caches did not sync")
	}
	return a
}

// askUntil sends req (built anew each time) to h until want says the answer is no longer the cache lagging, or 10 s.
func askUntil(t *testing.T, h http.Handler, newReq func() *http.Request, done func(response) bool) response {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, newReq())
		r := response{status: rec.Code, header: rec.Header(), body: rec.Body.Bytes()}
		if done(r) || time.Now().After(deadline) {
			return r
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// The node's IMDS runs on IIS, which decodes, cleans and lower-cases a path before routing it. Each spelling below
// routes to the token endpoint of the node's own identities there (the control sends it to the fake IMDS, which
// routes as IIS does, and gets the node identity's token). Through the agent, none may reach IMDS: each is refused
// with 400 and an IMDS-style error, except the one that is only a matter of case, which the agent's own token
// endpoint answers (and refuses: the pod has no identity).
func TestPathSpellingsNeverReachTheNodesTokenEndpoint(t *testing.T) {
	const nodeIdentity = "00000000-0000-0000-0000-0000000000d1"
	cloud.AddIdentity(azurefake.Identity{ClientID: nodeIdentity, TenantID: tenantID, AssignedToVM: true})
	opts := agentOptions()
	opts.NodeName, opts.Config.BlockInstanceMetadata = "paths-node", false // the chart's default
	pathAgent := startAgent(t, env.Config, opts)
	ns := newNamespace(t)
	runningPod(t, ns, "attacker", "default", "", "paths-node", "10.250.20.1")

	query := "?api-version=2018-02-01&resource=" + url.QueryEscape(vault) + "&client_id=" + nodeIdentity
	throughAgent := func(raw string) response {
		return askUntil(t, pathAgent.Handler, func() *http.Request { return httptestRequest("10.250.20.1:1", raw+query) },
			func(r response) bool { return r.status != http.StatusInternalServerError })
	}
	// straightToIMDS sends raw, byte for byte, to the fake IMDS, as a pod would without the agent.
	straightToIMDS := func(raw string) int {
		req := &http.Request{Method: http.MethodGet, Header: http.Header{"Metadata": {"true"}}, Host: "169.254.169.254",
			URL: &url.URL{Scheme: "http", Host: "169.254.169.254", Opaque: "//169.254.169.254" + raw, RawQuery: query[1:]}}
		resp, err := cloud.HTTPClient().Do(req)
		if err != nil {
			t.Fatalf("%s straight to IMDS: %v", raw, err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}

	for _, tc := range []struct {
		raw  string
		want int
	}{
		{`/metadata/instance/../identity/oauth2/token`, http.StatusBadRequest},
		{`/metadata/./identity/oauth2/token`, http.StatusBadRequest},
		{`/./metadata/identity/oauth2/token`, http.StatusBadRequest},
		{`/metadata/%2e/identity/oauth2/token`, http.StatusBadRequest},
		{`/metadata/instance/%2e%2e/identity/oauth2/token`, http.StatusBadRequest},
		{`/metadata/instance/%2E%2E/identity/oauth2/token`, http.StatusBadRequest},
		{`/metadata/instance/.%2e/identity/oauth2/token`, http.StatusBadRequest},
		{`/metadata/instance/..%2fidentity/oauth2/token`, http.StatusBadRequest},
		{`/metadata/instance/..%5cidentity/oauth2/token`, http.StatusBadRequest},
		{`/metadata/instance/..\identity/oauth2/token`, http.StatusBadRequest},
		{`/metadata//identity/oauth2/token`, http.StatusBadRequest},
		{`//metadata/identity/oauth2/token`, http.StatusBadRequest},
		{`/metadata\identity\oauth2\token`, http.StatusBadRequest},
		{`/metadata%5cidentity%5coauth2%5ctoken`, http.StatusBadRequest},
		{`/metadata%2fidentity%2foauth2%2ftoken`, http.StatusBadRequest},
		{`/metadata/identity%2Foauth2/token`, http.StatusBadRequest},
		{`/%6detadata/identity/oauth2/token`, http.StatusBadRequest},
		{`/metadata/identity/oauth2/%74oken`, http.StatusBadRequest},
		{`/metadata/identity/oauth2/token/.`, http.StatusBadRequest},
		{`/METADATA/INSTANCE/../IDENTITY/OAUTH2/TOKEN`, http.StatusBadRequest},
		{`/metadata/scheduledevents/../identity/oauth2/token`, http.StatusBadRequest},
		{`/metadata/versions/%2e%2e/identity/oauth2/token`, http.StatusBadRequest},
		{`/metadata/instance/compute/../../identity/oauth2/token`, http.StatusBadRequest},
		{`/host/../metadata/identity/oauth2/token`, http.StatusBadRequest},
		// Only case: the agent's own token endpoint, which finds no identity for the pod.
		{`/METADATA/Identity/OAuth2/Token`, http.StatusNotFound},
	} {
		t.Run(tc.raw, func(t *testing.T) {
			before := cloud.Count(azurefake.IMDSToken)
			if got := straightToIMDS(tc.raw); got != http.StatusOK {
				t.Fatalf("control: straight to the fake IMDS the spelling got %d, want the node identity's token", got)
			}
			if cloud.Count(azurefake.IMDSToken) != before+1 {
				t.Fatal("control: the fake IMDS did not count the token it issued")
			}
			before = cloud.Count(azurefake.IMDSToken)
			r := throughAgent(tc.raw)
			if n := cloud.Count(azurefake.IMDSToken) - before; n != 0 {
				t.Fatalf("through the agent the spelling reached the node's IMDS token endpoint (%d calls): status %d", n, r.status)
			}
			if r.status != tc.want || !strings.Contains(string(r.body), `"error_description"`) {
				t.Fatalf("status %d %s, want %d with an IMDS-style error", r.status, r.body, tc.want)
			}
			if strings.Contains(string(r.body), "access_token") || strings.Contains(string(r.body), "eyJ") {
				t.Fatalf("the refusal carries a token: %s", r.body)
			}
		})
	}

	// What is forwarded is a short list, with the Metadata header; the identity subtree is the agent's alone.
	for _, tc := range []struct {
		method, raw string
		header      bool
		want        int
	}{
		{http.MethodGet, "/metadata/instance?api-version=2021-02-01", true, http.StatusOK},
		{http.MethodGet, "/metadata/instance?api-version=2021-02-01", false, http.StatusBadRequest},
		{http.MethodDelete, "/metadata/instance?api-version=2021-02-01", true, http.StatusMethodNotAllowed},
		{http.MethodGet, "/metadata/identity/info?api-version=2018-02-01", true, http.StatusNotFound},
		{http.MethodGet, "/metadata/somethingnew?api-version=2018-02-01", true, http.StatusNotFound},
		{http.MethodGet, "/?api-version=2018-02-01", true, http.StatusNotFound},
	} {
		req := httptest.NewRequest(tc.method, tc.raw, nil)
		req.RemoteAddr = "10.250.20.1:1"
		if tc.header {
			req.Header.Set("Metadata", "true")
		}
		rec := httptest.NewRecorder()
		pathAgent.Handler.ServeHTTP(rec, req)
		if rec.Code != tc.want {
			t.Errorf("%s %s (Metadata header %v): %d %s, want %d", tc.method, tc.raw, tc.header, rec.Code, rec.Body, tc.want)
		}
		if tc.want == http.StatusOK && !strings.Contains(rec.Body.String(), `"vmId"`) {
			t.Errorf("%s: %s, want the node IMDS's answer", tc.raw, rec.Body)
		}
	}
}

// A deleted pod keeps its address in the apiserver while it terminates (here held by a finalizer, phase still
// Running), and the network may already have given the address to a new pod whose status does not show it yet. A
// request from that address must not get the leaving pod's token; once the new pod holds the address, it is the
// new pod that is answered.
func TestTerminatingPodsAddressGetsNoToken(t *testing.T) {
	ns := newNamespace(t)
	const clientID = "00000000-0000-0000-0000-0000000000d2"
	cloud.AddIdentity(azurefake.Identity{ClientID: clientID, TenantID: tenantID})
	federatedAccount(t, ns, "leaving-sa", clientID)
	createAndSync(t, azureIdentity(ns, "id", aadv1.AzureIdentitySpec{ClientID: clientID}), binding(ns, "b", "id", "leaving"))
	pod := runningPod(t, ns, "leaving", "leaving-sa", "leaving", nodeName, "10.250.21.1")
	pod.Finalizers = []string{"acrpull.test/hold"}
	if err := k8s.Update(context.Background(), pod); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		latest := &corev1.Pod{}
		if err := k8s.Get(context.Background(), client.ObjectKeyFromObject(pod), latest); err == nil {
			latest.Finalizers = nil
			_ = k8s.Update(context.Background(), latest)
		}
	})
	if r := get(t, "10.250.21.1:1", tokenPath(vault), nil); r.status != http.StatusOK {
		t.Fatalf("control: the running pod gets no token: %d %s", r.status, r.body)
	}
	live := &corev1.Pod{}
	if err := k8s.Get(context.Background(), client.ObjectKeyFromObject(pod), live); err != nil {
		t.Fatal(err)
	}
	beforeDelete := live.DeepCopy()

	if err := k8s.Delete(context.Background(), live); err != nil {
		t.Fatal(err)
	}
	if err := k8s.Get(context.Background(), client.ObjectKeyFromObject(pod), live); err != nil {
		t.Fatal(err)
	}
	if live.DeletionTimestamp == nil || live.Status.Phase != corev1.PodRunning {
		t.Fatalf("the pod is not terminating while running: deletionTimestamp %v phase %s", live.DeletionTimestamp, live.Status.Phase)
	}

	// Before the cache hears of the deletion: the live read must refuse it.
	locator := &nmi.PodLocator{Cache: staleCache{pods: []corev1.Pod{*beforeDelete}}, Live: k8s, Node: nodeName, Attempts: 1}
	if got, err := locator.ByIP(context.Background(), "10.250.21.1"); err == nil {
		t.Errorf("a stale cache entry resolved to the terminating pod %s", got.Name)
	}
	// Once the cache has it too: the agent refuses the address.
	waitForCache(t, live)
	if r := get(t, "10.250.21.1:1", tokenPath(vault), nil); r.status == http.StatusOK || strings.Contains(string(r.body), "access_token") {
		t.Fatalf("the terminating pod's address got a token: %d", r.status)
	}

	// The new holder of the address, unlabelled, is answered as itself: no identity.
	runningPod(t, ns, "arriving", "default", "", nodeName, "10.250.21.1")
	if r := get(t, "10.250.21.1:1", tokenPath(vault), nil); r.status != http.StatusNotFound {
		t.Fatalf("the address's new pod: %d %s, want 404 (its own, empty, identity set)", r.status, r.body)
	}
}

// A pod's status can lose an address (the apiserver is the truth; the cache may still list it there). The live read
// must find the address gone.
func TestPodWhoseAddressMovedGetsNoTokenFromTheOldAddress(t *testing.T) {
	ns := newNamespace(t)
	const clientID = "00000000-0000-0000-0000-0000000000d3"
	cloud.AddIdentity(azurefake.Identity{ClientID: clientID, TenantID: tenantID})
	federatedAccount(t, ns, "moved-sa", clientID)
	createAndSync(t, azureIdentity(ns, "id", aadv1.AzureIdentitySpec{ClientID: clientID}), binding(ns, "b", "id", "moved"))
	pod := runningPod(t, ns, "moved", "moved-sa", "moved", nodeName, "10.250.23.1")
	stale := pod.DeepCopy()
	if r := get(t, "10.250.23.1:1", tokenPath(vault), nil); r.status != http.StatusOK {
		t.Fatalf("control: %d %s", r.status, r.body)
	}
	pod.Status.PodIP, pod.Status.PodIPs = "10.250.23.2", []corev1.PodIP{{IP: "10.250.23.2"}}
	if err := k8s.Status().Update(context.Background(), pod); err != nil {
		t.Fatal(err)
	}
	locator := &nmi.PodLocator{Cache: staleCache{pods: []corev1.Pod{*stale}}, Live: k8s, Node: nodeName, Attempts: 1}
	if got, err := locator.ByIP(context.Background(), "10.250.23.1"); err == nil {
		t.Fatalf("the old address resolved to pod %s, which no longer holds it", got.Name)
	}
	waitForCache(t, pod)
	if r := get(t, "10.250.23.1:1", tokenPath(vault), nil); r.status == http.StatusOK {
		t.Fatal("the old address got a token")
	}
	if r := get(t, "10.250.23.2:1", tokenPath(vault), nil); r.status != http.StatusOK {
		t.Fatalf("control: the new address: %d %s", r.status, r.body)
	}
}

// One pod floods the agent with requests whose token fetch is blocked (its identity waits for an assignment that
// never comes), while another pod asks for tokens. Every request costs the agent a live read of the calling pod,
// and the apiserver serves the agent at a bounded rate: in a cluster, API Priority and Fairness queues all the
// agent's requests in one flow; here one client-side rate limiter shared by the agent's clients stands in for it.
// Without a bound per source, the flood's reads queue ahead of the other pod's; with it, the flooder holds at most
// its share and the rest of its requests are answered 429 at once.
func TestOnePodsFloodDoesNotStarveAnother(t *testing.T) {
	const perPod = 8
	cfg := rest.CopyConfig(env.Config)
	cfg.RateLimiter = flowcontrol.NewTokenBucketRateLimiter(20, 20)
	opts := agentOptions()
	opts.NodeName = "flood-node"
	opts.FollowAssignments = true
	opts.AssignmentCreatedWait, opts.AssignmentTotalWait = 2*time.Second, 2*time.Second
	opts.Config.MaxConcurrentRequestsPerPod = perPod
	floodAgent := startAgent(t, cfg, opts)

	ns := newNamespace(t)
	const victimID, flooderID = "00000000-0000-0000-0000-0000000000d4", "00000000-0000-0000-0000-0000000000d5"
	cloud.AddIdentity(azurefake.Identity{ClientID: victimID, TenantID: tenantID})
	federatedAccount(t, ns, "victim-sa", victimID)
	victimIdentity := azureIdentity(ns, "victim", aadv1.AzureIdentitySpec{ClientID: victimID})
	victimIdentity.Annotations = map[string]string{nmi.TokenSourceAnnotation: nmi.SourceFederation}
	flooderIdentity := azureIdentity(ns, "flooder", aadv1.AzureIdentitySpec{ClientID: flooderID})
	flooderIdentity.Annotations = map[string]string{nmi.TokenSourceAnnotation: nmi.SourceIMDS}
	createAndSync(t, victimIdentity, binding(ns, "victim", "victim", "victim"), flooderIdentity, binding(ns, "flooder", "flooder", "flooder"))
	runningPod(t, ns, "victim", "victim-sa", "victim", "flood-node", "10.250.22.1")
	runningPod(t, ns, "flooder", "default", "flooder", "flood-node", "10.250.22.2")
	ask := func(remote string) int {
		rec := httptest.NewRecorder()
		floodAgent.Handler.ServeHTTP(rec, httptestRequest(remote, tokenPath(vault)))
		return rec.Code
	}
	// The victim's token is cached before the flood: what is measured is the agent, not Entra ID.
	if r := askUntil(t, floodAgent.Handler, func() *http.Request { return httptestRequest("10.250.22.1:1", tokenPath(vault)) },
		func(r response) bool { return r.status == http.StatusOK }); r.status != http.StatusOK {
		t.Fatalf("control: the victim gets no token: %d %s", r.status, r.body)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	var flood, throttled atomic.Int64
	for range 48 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				status := ask("10.250.22.2:40000")
				flood.Add(1)
				if status == http.StatusTooManyRequests {
					throttled.Add(1)
				}
				// A bounded flood (the test's own CPU is shared with the agent's): each worker asks again at once
				// when answered slowly, and within 10 ms when refused.
				time.Sleep(10 * time.Millisecond)
			}
		}()
	}
	time.Sleep(300 * time.Millisecond) // the flood is under way
	var latencies []time.Duration
	for ctx.Err() == nil {
		start := time.Now()
		if status := ask("10.250.22.1:1"); status != http.StatusOK {
			t.Errorf("the victim got %d during the flood", status)
		}
		latencies = append(latencies, time.Since(start))
		time.Sleep(50 * time.Millisecond)
	}
	wg.Wait()

	slices.Sort(latencies)
	p99 := latencies[len(latencies)*99/100]
	t.Logf("flood: %d requests, %d answered 429; victim: %d requests, median %s, p99 %s, max %s",
		flood.Load(), throttled.Load(), len(latencies), latencies[len(latencies)/2], p99, latencies[len(latencies)-1])
	if limit := 500 * time.Millisecond; p99 > limit {
		t.Errorf("the victim's p99 latency during the flood is %s, want under %s", p99, limit)
	}
	if throttled.Load() == 0 {
		t.Error("the flooder was never answered 429")
	}
	if len(latencies) < 10 {
		t.Errorf("the victim got only %d answers in the flood's time", len(latencies))
	}
}
