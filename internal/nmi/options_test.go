/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

package nmi

import (
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/utils/clock"
	clocktesting "k8s.io/utils/clock/testing"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

	aadv1 "github.com/acrpull/acrpull/api/aadpodidentity/v1"
	"github.com/acrpull/acrpull/internal/azauth"
	"github.com/acrpull/acrpull/internal/tokencache"
)

func TestWithDefaults(t *testing.T) {
	d := Options{}.withDefaults()
	if _, real := d.Clock.(clock.RealClock); !real || d.MetricsRegistry != ctrlmetrics.Registry ||
		d.AzureHTTPClient == nil || d.AzureHTTPClient.Transport != http.DefaultTransport {
		t.Errorf("clock %T, controller-runtime's registry %v, Azure client %+v; want the real clock, its registry, the default transport",
			d.Clock, d.MetricsRegistry == ctrlmetrics.Registry, d.AzureHTTPClient)
	}
	d.Clock, d.MetricsRegistry, d.AzureHTTPClient = nil, nil, nil
	want := Options{Type0Source: SourceAuto, AssignmentCreatedWait: 80 * time.Second, AssignmentTotalWait: 100 * time.Second,
		AssignmentGrace: 10 * time.Second, ServiceAccountAudience: "api://AzureADTokenExchange", Cloud: azauth.PublicCloud,
		IMDSEndpoint: "http://169.254.169.254", PodLookupAttempts: 4, PodLookupInterval: 300 * time.Millisecond}
	if !reflect.DeepEqual(d, want) {
		t.Errorf("defaults\n%+v\nwant\n%+v", d, want)
	}
	fake, registry, hc := clocktesting.NewFakeClock(time.Unix(0, 0)), prometheus.NewRegistry(), &http.Client{}
	set := Options{Clock: fake, MetricsRegistry: registry, Type0Source: SourceIMDS, AssignmentCreatedWait: time.Second,
		AssignmentTotalWait: 2 * time.Second, AssignmentGrace: 3 * time.Second, ServiceAccountAudience: "aud",
		Cloud: azauth.ChinaCloud, IMDSEndpoint: "http://127.0.0.1:1", PodLookupAttempts: 1, PodLookupInterval: time.Second,
		AzureHTTPClient: hc}
	if got := set.withDefaults(); !reflect.DeepEqual(got, set) || got.Clock != fake || got.MetricsRegistry != registry || got.AzureHTTPClient != hc {
		t.Errorf("set options replaced: clock %v registry %v client %v, %s %s", got.Clock == fake, got.MetricsRegistry == registry,
			got.AzureHTTPClient == hc, got.Type0Source, got.Cloud.AuthorityHost)
	}
}

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		opts Options
		want string // in the error; empty: valid
	}{
		{Options{NodeName: "n"}, ""},
		{Options{}, "--node"},
		{Options{NodeName: "n", Type0Source: "cloud"}, `unknown token source "cloud"`},
		{Options{NodeName: "n", Config: Config{MaxConcurrentRequestsPerPod: -1}}, "--max-concurrent-requests-per-pod"},
	} {
		err := tc.opts.withDefaults().validate()
		if (err == nil) != (tc.want == "") || (err != nil && !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("%+v: %v, want %q", tc.opts, err, tc.want)
		}
	}
}

// The agent's process: no leader election, upstream's /healthz, only this node's pods and records cached, Secrets
// read by name, the token cache swept every minute.
func TestProcessOptions(t *testing.T) {
	tokens := tokencache.New(clock.RealClock{}, nil)
	p := Options{NodeName: "node-1", MetricsAddr: ":8888", ProbeAddr: ":8085"}.withDefaults().processOptions(tokens)
	if p.MetricsAddr != ":8888" || p.ProbeAddr != ":8085" || p.ProbeHandler == nil || p.LeaderElection.Enabled {
		t.Errorf("serving %+v", p)
	}
	if p.Healthz["ping"] == nil || len(p.Readyz) != 0 {
		t.Errorf("checks %v %v, want ping and no readiness check before New adds serving", p.Healthz, p.Readyz)
	}
	if p.TokenCache != tokens || p.SweepEvery != time.Minute {
		t.Errorf("sweeping the token cache %v every %s", p.TokenCache == tokens, p.SweepEvery)
	}
	var pods, records bool
	for obj, by := range p.Cache.ByObject {
		switch obj.(type) {
		case *corev1.Pod:
			pods = by.Field.Matches(fields.Set{"spec.nodeName": "node-1"}) && !by.Field.Matches(fields.Set{"spec.nodeName": "node-2"})
		case *aadv1.AzureAssignedIdentity:
			records = by.Label.Matches(labels.Set{aadv1.NodeNameLabel: "node-1"}) && !by.Label.Matches(labels.Set{aadv1.NodeNameLabel: "node-2"})
		}
	}
	if !pods || !records || len(p.Cache.ByObject) != 2 {
		t.Errorf("cache %+v: this node's pods %v, records %v", p.Cache, pods, records)
	}
	if c := p.Client.Cache; c == nil || len(c.DisableFor) != 1 {
		t.Errorf("client cache %+v, want Secrets uncached", c)
	} else if _, ok := c.DisableFor[0].(*corev1.Secret); !ok {
		t.Errorf("uncached %T, want Secrets", c.DisableFor[0])
	}
}
