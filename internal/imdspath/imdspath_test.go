/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

package imdspath_test

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/acrpull/acrpull/internal/harness/azurefake"
	"github.com/acrpull/acrpull/internal/imdspath"
	"github.com/acrpull/acrpull/internal/nmi"
)

// attackSpellings are paths IIS routes to the token endpoint of the node's identities (azurefake.IISPath), none
// of them spelt /metadata/identity/oauth2/token: what a proxy deciding on raw paths would forward.
var attackSpellings = []string{
	`/metadata/instance/../identity/oauth2/token`,
	`/metadata/./identity/oauth2/token`,
	`/./metadata/identity/oauth2/token`,
	`/metadata/%2e/identity/oauth2/token`,
	`/metadata/instance/%2e%2e/identity/oauth2/token`,
	`/metadata/instance/%2E%2E/identity/oauth2/token`,
	`/metadata/instance/.%2e/identity/oauth2/token`,
	`/metadata/instance/..%2fidentity/oauth2/token`,
	`/metadata/instance/..%5cidentity/oauth2/token`,
	`/metadata/instance/..\identity/oauth2/token`,
	`/metadata//identity/oauth2/token`,
	`//metadata/identity/oauth2/token`,
	`/metadata\identity\oauth2\token`,
	`/metadata%5cidentity%5coauth2%5ctoken`,
	`/metadata%5Cidentity/oauth2/token`,
	`/metadata%2fidentity%2foauth2%2ftoken`,
	`/metadata/identity%2Foauth2/token`,
	`/%6detadata/identity/oauth2/token`,
	`/metadata/identity/oauth2/%74oken`,
	`/metadata/identity/oauth2/token/.`,
	`/metadata/identity/oauth2/token/%2e`,
	`/METADATA/INSTANCE/../IDENTITY/OAUTH2/TOKEN`,
	`/metadata/scheduledevents/../identity/oauth2/token`,
	`/metadata/versions/%2e%2e/identity/oauth2/token`,
	`/metadata/instance/compute/../../identity/oauth2/token`,
	`/metadata/attested/document/../../identity/oauth2/token`,
	`/host/../metadata/identity/oauth2/token`,
}

func TestCanonical(t *testing.T) {
	for _, tc := range []struct {
		raw  string
		want string // "" for refused
	}{
		{"/metadata/identity/oauth2/token", "/metadata/identity/oauth2/token"},
		{"/metadata/identity/oauth2/token/", "/metadata/identity/oauth2/token/"},
		{"/METADATA/Identity/OAuth2/Token", "/METADATA/Identity/OAuth2/Token"},
		{"/metadata/instance/compute/tagsList/0/name", "/metadata/instance/compute/tagsList/0/name"},
		{"/metadata/instance/network/interface/0/ipv4/ipAddress/0/privateIpAddress", "/metadata/instance/network/interface/0/ipv4/ipAddress/0/privateIpAddress"},
		{"/host/token/", "/host/token/"},
		{"/", "/"},
		{"", ""},
		{"*", ""},
		{"metadata/instance", ""},
		{"/metadata/instance/", "/metadata/instance/"},
		{"/metadata/instance//", ""},
		{"/metadata/instance;x", ""},
		{"/metadata/instance:$DATA", ""},
		{"/metadata/instance%20", ""},
		{"/metadata/ins tance", ""},
		{"/metadata/instance\x00", ""},
		{"/metadata/instance~1", ""},
		{"/metadata/instance.", ""},
		{"/metadata/instance/\u2024\u2024/identity", ""},
		{"/metadata/\uff0e\uff0e/identity/oauth2/token", ""},
		{"/metadata/%c0%ae%c0%ae/identity/oauth2/token", ""},
		{"/metadata/%u002e%u002e/identity/oauth2/token", ""},
		{"/metadata/instance/%252e%252e/identity/oauth2/token", ""},
	} {
		got, err := imdspath.Canonical(tc.raw)
		if tc.want == "" {
			if err == nil {
				t.Errorf("Canonical(%q) = %q, want refused", tc.raw, got)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("Canonical(%q) = %q, %v; want %q", tc.raw, got, err, tc.want)
		}
	}
	for _, raw := range attackSpellings {
		if got, err := imdspath.Canonical(raw); err == nil {
			t.Errorf("attack spelling %q accepted as %q", raw, got)
		}
	}
}

func TestClassify(t *testing.T) {
	for _, tc := range []struct {
		path string
		want imdspath.Endpoint
	}{
		{"/metadata/identity/oauth2/token", imdspath.Token},
		{"/Metadata/Identity/OAuth2/Token/", imdspath.Token},
		{"/host/token", imdspath.HostToken},
		{"/host/token/", imdspath.HostToken},
		{"/metadata/identity/oauth2/token/x", imdspath.MalformedToken},
		{"/metadata/identity/foo/oauth2/bar/token", imdspath.MalformedToken},
		{"/metadata/identity/info", imdspath.NotFound},
		{"/metadata/identity", imdspath.NotFound},
		{"/metadata/identity/oauth2", imdspath.NotFound},
		{"/metadata/instance", imdspath.Instance},
		{"/metadata/instance/compute/vmId", imdspath.Instance},
		{"/metadata/instancex", imdspath.NotFound},
		{"/metadata/attested/document", imdspath.Attested},
		{"/metadata/attested", imdspath.NotFound},
		{"/metadata/loadbalancer", imdspath.Forwarded},
		{"/metadata/scheduledevents", imdspath.Forwarded},
		{"/metadata/versions", imdspath.Forwarded},
		{"/metadata/versions/x", imdspath.NotFound},
		{"/metadata", imdspath.NotFound},
		{"/", imdspath.NotFound},
		{"/host", imdspath.NotFound},
	} {
		if got := imdspath.Classify(tc.path); got != tc.want {
			t.Errorf("Classify(%q) = %d, want %d", tc.path, got, tc.want)
		}
	}
}

// The attack spellings through the agent's real handler, in front of a fake IMDS that routes as IIS does and hands
// its token to whatever reaches the token endpoint: every spelling gets 400 and IMDS sees none of them. (The envtest
// suite in internal/nmi does the same with a cluster behind the agent.)
func TestAttackSpellingsNeverReachIMDSThroughTheAgent(t *testing.T) {
	imds := &recordingIMDS{}
	server := httptest.NewServer(imds)
	defer server.Close()
	handler := agentWithoutCluster(t, server.URL).Handler()
	for _, raw := range attackSpellings {
		target := raw + "?api-version=2018-02-01&resource=https://vault.azure.net"
		// Control: sent straight to the fake IMDS, the spelling routes to its token endpoint.
		req := &http.Request{Method: http.MethodGet, Header: http.Header{"Metadata": {"true"}},
			URL: &url.URL{Scheme: "http", Host: server.Listener.Addr().String(), Opaque: "//" + server.Listener.Addr().String() + raw, RawQuery: "api-version=2018-02-01"}}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if got := imds.since(imds.count() - 1)[0].routed; !strings.EqualFold(got, "/metadata/identity/oauth2/token") {
			t.Fatalf("control: %q straight to IMDS routes to %q, not its token endpoint", raw, got)
		}

		before := imds.count()
		rec := httptest.NewRecorder()
		r := httptest.NewRequest(http.MethodGet, target, nil)
		r.RemoteAddr = "10.0.0.1:40000"
		r.Header.Set("Metadata", "true")
		handler.ServeHTTP(rec, r)
		if received := imds.since(before); len(received) > 0 {
			t.Errorf("%q through the agent reached IMDS as %v", raw, received)
		}
		if rec.Code != http.StatusBadRequest || !strings.Contains(rec.Body.String(), `"error":"invalid_request"`) {
			t.Errorf("%q through the agent: %d %s, want 400 with an IMDS-style error", raw, rec.Code, rec.Body)
		}
	}
}

// FuzzRequestPath drives the node agent's real handler (nmi.Server.Handler, no cluster needed for the paths it
// forwards or refuses) with any request path, in front of a fake IMDS that routes as IIS does. Whatever the path:
// either the agent refuses it and nothing reaches IMDS, or what reaches IMDS is spelt exactly as the canonical path
// and that path is on the forwarding allow-list; and no request IMDS receives routes to its identity endpoints.
func FuzzRequestPath(f *testing.F) {
	for _, p := range attackSpellings {
		f.Add(p)
	}
	for _, p := range []string{"/metadata/instance", "/metadata/instance/compute/vmId", "/metadata/identity/oauth2/token",
		"/metadata/identity/info", "/metadata/scheduledevents", "/host/token/", "/metadata/attested/document/", "/"} {
		f.Add(p)
	}
	imds := &recordingIMDS{}
	server := httptest.NewServer(imds)
	f.Cleanup(server.Close)
	handler := agentWithoutCluster(f, server.URL).Handler()

	f.Fuzz(func(t *testing.T, raw string) {
		req, err := http.ReadRequest(bufio.NewReader(strings.NewReader(
			"GET " + raw + "?api-version=2021-02-01 HTTP/1.1\r\nHost: 169.254.169.254\r\nMetadata: true\r\n\r\n")))
		if err != nil {
			return // net/http refuses it before any handler sees it
		}
		req.RemoteAddr = "10.0.0.1:40000"
		before := imds.count()
		rec := httptest.NewRecorder()
		handler.ServeHTTP(rec, req)
		received := imds.since(before)

		canonical, cerr := imdspath.Canonical(imdspath.RequestPath(req.URL))
		if cerr != nil {
			if rec.Code != http.StatusBadRequest || len(received) > 0 {
				t.Fatalf("%q is not canonical (%v) but got %d and reached IMDS %v", raw, cerr, rec.Code, received)
			}
			return
		}
		for _, got := range received {
			if got.raw != canonical {
				t.Fatalf("%q: IMDS received path %q, want the canonical %q", raw, got.raw, canonical)
			}
			if !imdspath.Classify(canonical).MayForward() {
				t.Fatalf("%q: forwarded %q, which is not on the allow-list", raw, canonical)
			}
			if strings.HasPrefix(strings.ToLower(got.routed), "/metadata/identity") {
				t.Fatalf("%q: IMDS routed the forwarded request to %q", raw, got.routed)
			}
		}
	})
}

// FuzzTokenQuery drives the node agent's real handler with any query on its token endpoint, from an address no pod
// has. Whatever the query: nothing reaches IMDS; the refusal follows the query's parsed resource parameter (400
// invalid_request without one, 500 server_error for the unknown caller with one) in IMDS's JSON error shape; and no
// metric series is labelled with the refused request's resource, which would let callers mint unbounded label sets.
func FuzzTokenQuery(f *testing.F) {
	for _, q := range []string{"api-version=2018-02-01&resource=https://vault.azure.net", "resource=", "resource=%zz&resource=x",
		"client_id=c&msi_res_id=/subscriptions/s&resource=https%3A%2F%2Fmanagement.azure.com%2F", "resource=a;resource=b",
		"mi_res_id=x&resource=" + strings.Repeat("r", 300), ""} {
		f.Add(q)
	}
	imds := &recordingIMDS{}
	server := httptest.NewServer(imds)
	f.Cleanup(server.Close)
	agent := agentWithoutCluster(f, server.URL)
	registry := prometheus.NewRegistry()
	agent.Metrics = nmi.NewMetrics(registry)
	handler := agent.Handler()

	f.Fuzz(func(t *testing.T, rawQuery string) {
		req, err := http.ReadRequest(bufio.NewReader(strings.NewReader(
			"GET /metadata/identity/oauth2/token?" + rawQuery + " HTTP/1.1\r\nHost: 169.254.169.254\r\nMetadata: true\r\n\r\n")))
		if err != nil {
			return // net/http refuses it before any handler sees it
		}
		req.RemoteAddr = "10.0.0.1:40000"
		before := imds.count()
		rec := httptest.NewRecorder()
		handler.ServeHTTP(rec, req)
		if received := imds.since(before); len(received) > 0 {
			t.Fatalf("query %q: the token request reached IMDS as %v", rawQuery, received)
		}
		wantStatus, wantCode := http.StatusInternalServerError, "server_error"
		if req.URL.Query().Get("resource") == "" {
			wantStatus, wantCode = http.StatusBadRequest, "invalid_request"
		}
		var body struct {
			Error       string `json:"error"`
			Description string `json:"error_description"`
		}
		if err := json.Unmarshal(rec.Body.Bytes(), &body); rec.Code != wantStatus || err != nil || body.Error != wantCode || body.Description == "" {
			t.Fatalf("query %q: %d %s, want %d with error %q", rawQuery, rec.Code, rec.Body, wantStatus, wantCode)
		}
		families, err := registry.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, family := range families {
			for _, m := range family.GetMetric() {
				for _, label := range m.GetLabel() {
					if label.GetName() == "resource" && label.GetValue() != "" {
						t.Fatalf("query %q: %s has a series for resource %q of a refused request", rawQuery, family.GetName(), label.GetValue())
					}
				}
			}
		}
	})
}

// recordingIMDS records the raw path of each request it receives and where IIS would route it.
type recordingIMDS struct {
	mu       sync.Mutex
	received []receivedPath
}

type receivedPath struct{ raw, routed string }

func (m *recordingIMDS) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	m.mu.Lock()
	m.received = append(m.received, receivedPath{raw: imdspath.RequestPath(r.URL), routed: azurefake.IISPath(r.URL)})
	m.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write([]byte(`{}`))
}

func (m *recordingIMDS) count() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.received)
}

func (m *recordingIMDS) since(n int) []receivedPath {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]receivedPath(nil), m.received[n:]...)
}

// agentWithoutCluster is the agent's server with no pods: token requests are refused (no pod has the caller's
// address), and everything else is decided on the path alone.
func agentWithoutCluster(tb testing.TB, imdsURL string) *nmi.Server {
	imds, err := url.Parse(imdsURL)
	if err != nil {
		tb.Fatal(err)
	}
	return &nmi.Server{
		Config:        nmi.Config{MetadataHeaderRequired: true},
		Pods:          &nmi.PodLocator{Cache: noPods{}, Live: noPods{}, Node: "node", Attempts: 1},
		Metrics:       nmi.NewMetrics(prometheus.NewRegistry()),
		Log:           logr.Discard(),
		Clock:         clock.RealClock{},
		IMDS:          imds,
		IMDSTransport: http.DefaultTransport,
	}
}

// noPods is a reader of an empty cluster.
type noPods struct{}

func (noPods) Get(context.Context, client.ObjectKey, client.Object, ...client.GetOption) error {
	return context.Canceled
}

func (noPods) List(_ context.Context, list client.ObjectList, _ ...client.ListOption) error {
	if pods, ok := list.(*corev1.PodList); ok {
		pods.Items = nil
	}
	return nil
}
