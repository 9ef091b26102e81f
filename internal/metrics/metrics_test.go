/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

package metrics

import (
	"net/http"
	"net/http/httptest"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// The bindings gauge counts bindings per (ready, reason): a binding moves between counts when its condition changes,
// a repeated report changes nothing, a deletion takes it away, and a count that reaches zero leaves no series behind.
func TestBindingReadinessCounts(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := New(reg)
	expect := func(step, want string) {
		t.Helper()
		header := "# HELP acrpull_bindings " + bindingsHelp + "\n# TYPE acrpull_bindings gauge\n"
		if want == "" {
			header = ""
		}
		if err := testutil.GatherAndCompare(reg, strings.NewReader(header+want), "acrpull_bindings"); err != nil {
			t.Errorf("%s: %v", step, err)
		}
	}

	m.BindingReadiness("AcrPullBinding", "a", "one", "False", "AzureUnavailable")
	m.BindingReadiness("AcrPullBinding", "a", "two", "False", "AzureUnavailable")
	m.BindingReadiness("AcrPullBinding", "b", "one", "True", "TokenMinted")
	m.BindingReadiness("AcrPullBinding", "a", "one", "False", "AzureUnavailable") // unchanged: counted once
	expect("three bindings", `
acrpull_bindings{controller="AcrPullBinding",ready="False",reason="AzureUnavailable"} 2
acrpull_bindings{controller="AcrPullBinding",ready="True",reason="TokenMinted"} 1
`)

	m.BindingReadiness("AcrPullBinding", "a", "one", "True", "TokenMinted")
	expect("one recovers", `
acrpull_bindings{controller="AcrPullBinding",ready="False",reason="AzureUnavailable"} 1
acrpull_bindings{controller="AcrPullBinding",ready="True",reason="TokenMinted"} 2
`)

	m.ForgetBinding("AcrPullBinding", "a", "two")
	m.ForgetBinding("AcrPullBinding", "a", "two") // a second deletion pass must not count it away twice
	m.ForgetBinding("AcrPullBinding", "c", "never-reported")
	expect("the failing one is deleted", `
acrpull_bindings{controller="AcrPullBinding",ready="True",reason="TokenMinted"} 2
`)

	m.BindingReadiness("AcrPullBinding", "d", "new", "False", "AzureUnavailable")
	expect("a new failing binding after the deletions", `
acrpull_bindings{controller="AcrPullBinding",ready="False",reason="AzureUnavailable"} 1
acrpull_bindings{controller="AcrPullBinding",ready="True",reason="TokenMinted"} 2
`)

	m.ForgetBinding("AcrPullBinding", "a", "one")
	m.ForgetBinding("AcrPullBinding", "b", "one")
	m.ForgetBinding("AcrPullBinding", "d", "new")
	expect("all deleted", "")
}

// The verification gauge counts like the readiness one, and a binding whose Verified condition goes away (pull
// verification turned off) leaves it, as a deleted binding does.
func TestBindingVerificationCounts(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := New(reg)
	expect := func(step, want string) {
		t.Helper()
		header := "# HELP acrpull_bindings_verified " + verifiedHelp + "\n# TYPE acrpull_bindings_verified gauge\n"
		if want == "" {
			header = ""
		}
		if err := testutil.GatherAndCompare(reg, strings.NewReader(header+want), "acrpull_bindings_verified"); err != nil {
			t.Errorf("%s: %v", step, err)
		}
	}
	m.BindingVerification("c", "a", "one", "True", "PullVerified")
	m.BindingVerification("c", "a", "two", "False", "ScopeDenied")
	m.BindingVerification("c", "a", "three", "False", "ScopeDenied")
	expect("three bindings", `
acrpull_bindings_verified{controller="c",reason="PullVerified",verified="True"} 1
acrpull_bindings_verified{controller="c",reason="ScopeDenied",verified="False"} 2
`)
	m.BindingVerification("c", "a", "two", "", "")
	m.ForgetBinding("c", "a", "three")
	expect("one loses its condition, one is deleted", `
acrpull_bindings_verified{controller="c",reason="PullVerified",verified="True"} 1
`)
	m.BindingVerification("c", "a", "one", "", "")
	expect("none left", "")
}

// The expiry gauge has one series per binding with a token, written when scraped from the binding's record: a new
// expiry replaces the old, a deletion takes the series away, and a binding's other states do not make one.
func TestTokenExpiryPerBinding(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := New(reg)
	const header = "# HELP acrpull_token_expiry_timestamp_seconds When the token in a binding's pull secret expires (Unix seconds). Alert on expiry - time() < 15m.\n" +
		"# TYPE acrpull_token_expiry_timestamp_seconds gauge\n"
	expect := func(step, want string) {
		t.Helper()
		if want != "" {
			want = header + want
		}
		if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "acrpull_token_expiry_timestamp_seconds"); err != nil {
			t.Errorf("%s: %v", step, err)
		}
	}
	m.BindingReadiness("c", "a", "failing", "False", "AzureUnavailable")
	m.BindingVerification("c", "a", "failing", "False", "ScopeDenied")
	expect("no token yet", "")

	m.TokenExpiry("c", "a", "one", time.Unix(1000, 0))
	m.TokenExpiry("c", "b", "one", time.Unix(2000, 0))
	m.TokenExpiry("c", "a", "one", time.Unix(3000, 0))
	m.BindingReadiness("c", "a", "one", "True", "TokenMinted")
	expect("two bindings, one refreshed", `
acrpull_token_expiry_timestamp_seconds{binding="one",controller="c",namespace="a"} 3000
acrpull_token_expiry_timestamp_seconds{binding="one",controller="c",namespace="b"} 2000
`)

	// A scrape shares one label pair among the series of a namespace or a controller: each series keeps its own.
	m.TokenExpiry("c", "a", "two", time.Unix(4000, 0))
	m.TokenExpiry("d", "a", "one", time.Unix(5000, 0))
	expect("a namespace and a controller shared", `
acrpull_token_expiry_timestamp_seconds{binding="one",controller="c",namespace="a"} 3000
acrpull_token_expiry_timestamp_seconds{binding="one",controller="c",namespace="b"} 2000
acrpull_token_expiry_timestamp_seconds{binding="one",controller="d",namespace="a"} 5000
acrpull_token_expiry_timestamp_seconds{binding="two",controller="c",namespace="a"} 4000
`)
	m.ForgetBinding("c", "a", "two")
	m.ForgetBinding("d", "a", "one")

	m.ForgetBinding("c", "a", "one")
	expect("one deleted", `
acrpull_token_expiry_timestamp_seconds{binding="one",controller="c",namespace="b"} 2000
`)
	m.ForgetBinding("c", "b", "one")
	m.ForgetBinding("c", "a", "failing")
	expect("all deleted", "")
	if n := len(m.bindings.records); n != 0 {
		t.Errorf("%d records left after every binding was deleted", n)
	}
}

// BenchmarkHeldPerBinding reports the heap the per-binding metrics hold for 100,000 bindings with a token, Ready
// and Verified (bytes/binding; the binding names exist beforehand, as they do in the controller's cache):
// go test -run '^$' -bench HeldPerBinding ./internal/metrics/
func BenchmarkHeldPerBinding(b *testing.B) {
	const n = 100_000
	namespaces, names := make([]string, n), make([]string, n)
	for i := range n {
		namespaces[i], names[i] = "namespace-"+strconv.Itoa(i/10), "binding-"+strconv.Itoa(i)
	}
	expires := time.Now().Add(time.Hour)
	var held float64
	for b.Loop() {
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		m := New(prometheus.NewRegistry())
		for i := range n {
			m.TokenExpiry("AcrPullBinding", namespaces[i], names[i], expires)
			m.BindingReadiness("AcrPullBinding", namespaces[i], names[i], "True", "TokenMinted")
			m.BindingVerification("AcrPullBinding", namespaces[i], names[i], "True", "PullVerified")
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		held = float64(after.HeapAlloc-before.HeapAlloc) / n
		runtime.KeepAlive(m)
	}
	b.ReportMetric(held, "bytes/binding")
}

// BenchmarkScrape reports what one Prometheus scrape of 100,000 bindings' expiry series allocates (B/op), through
// the same promhttp handler and Accept header Prometheus sends, gzip included:
// go test -run '^$' -bench Scrape -benchtime 5x ./internal/metrics/
func BenchmarkScrape(b *testing.B) {
	const n = 100_000
	reg := prometheus.NewRegistry()
	m := New(reg)
	expires := time.Now().Add(time.Hour)
	for i := range n {
		namespace, name := "namespace-"+strconv.Itoa(i/10), "binding-"+strconv.Itoa(i)
		m.TokenExpiry("AcrPullBinding", namespace, name, expires)
		m.BindingReadiness("AcrPullBinding", namespace, name, "True", "TokenMinted")
	}
	handler := promhttp.HandlerFor(reg, promhttp.HandlerOpts{})
	b.ReportAllocs()
	for b.Loop() {
		req := httptest.NewRequest(http.MethodGet, "/metrics", nil)
		req.Header.Set("Accept", "application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.6,"+
			"application/openmetrics-text;version=0.0.1;q=0.5,text/plain;version=1.0.0;escaping=allow-utf-8;q=0.4,"+
			"text/plain;version=0.0.4;q=0.3,*/*;q=0.2")
		req.Header.Set("Accept-Encoding", "gzip")
		rec := httptest.NewRecorder()
		handler.ServeHTTP(rec, req)
		if rec.Code != http.StatusOK || rec.Body.Len() == 0 {
			b.Fatalf("scrape answered %d with %d bytes", rec.Code, rec.Body.Len())
		}
	}
}
