/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

package nmi_test

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/client-go/rest"

	"github.com/acrpull/acrpull/internal/nmi"
)

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// Upstream's --custom-user-agent: every apiserver request of the agent ends its User-Agent with the suffix, so a
// cluster's operators can tell the agent's requests apart in audit logs. (Its Entra ID requests get it from
// azauth.Options.UserAgentSuffix, tested there.)
func TestUserAgentSuffixReachesTheAPIServer(t *testing.T) {
	var (
		mu   sync.Mutex
		seen []string
	)
	cfg := rest.CopyConfig(env.Config)
	cfg.Wrap(func(rt http.RoundTripper) http.RoundTripper {
		return roundTripFunc(func(r *http.Request) (*http.Response, error) {
			mu.Lock()
			seen = append(seen, r.Header.Get("User-Agent"))
			mu.Unlock()
			return rt.RoundTrip(r)
		})
	})
	opts := agentOptions()
	opts.UserAgentSuffix = "contoso-aks/1.0"
	opts.MetricsRegistry = prometheus.NewRegistry()
	a, err := nmi.New(cfg, opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Start(ctx) }()
	synced := a.GetCache().WaitForCacheSync(ctx)
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if !synced {
		t.Fatal("caches did not sync")
	}
	mu.Lock()
	defer mu.Unlock()
	if len(seen) == 0 {
		t.Fatal("no apiserver request seen")
	}
	for _, ua := range seen {
		if !strings.HasSuffix(ua, " contoso-aks/1.0") {
			t.Errorf("User-Agent %q does not end with the suffix", ua)
		}
	}
}
