/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

package main

import (
	"encoding/pem"
	"flag"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync"
	"testing"

	"k8s.io/client-go/rest"

	"github.com/acrpull/acrpull/internal/controller/acrpullbinding/acrserver"
)

func parseErr(args ...string) error {
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	_, _, err := parseFlags(fs, args, func(string) string { return "" })
	return err
}

func TestFlagsKeepMsiAcrpullDefaultsAndSpellings(t *testing.T) {
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	env := map[string]string{"ACR_SERVER": "myacr.azurecr.io", "MANAGED_IDENTITY_CLIENT_ID": "cid",
		"MANAGED_IDENTITY_RESOURCE_ID": "rid", "ARM_RESOURCE": "https://management.example/"}
	opts, kube, err := parseFlags(fs, []string{"--metrics-addr=127.0.0.1:8080", "--enable-leader-election",
		"--allowed-acr-server-suffixes= AzureCR.io. ,azurecr.us", "--allowed-acr-server-suffixes=azurecr.io"},
		func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	c := opts.Controller
	if opts.MetricsAddr != "127.0.0.1:8080" || !opts.LeaderElection {
		t.Errorf("legacy spellings ignored: metrics %q, leader %v", opts.MetricsAddr, opts.LeaderElection)
	}
	if c.ServiceAccountTokenAudience != "api://AzureCRTokenExchange" || c.TTLRotationFraction != 0.5 || !c.VerifyPull {
		t.Errorf("defaults: audience %q, fraction %v, pull verification %v", c.ServiceAccountTokenAudience, c.TTLRotationFraction, c.VerifyPull)
	}
	if !reflect.DeepEqual(c.AllowedServerSuffixes, []string{"azurecr.io", "azurecr.us"}) {
		t.Errorf("suffixes normalized to %q", c.AllowedServerSuffixes)
	}
	if d := c.V1beta1; d.ACRServer != "myacr.azurecr.io" || d.ClientID != "cid" || d.ResourceID != "rid" || d.ARMResource != "https://management.example/" {
		t.Errorf("env defaults: %+v", d)
	}
	if kube.qps < 100 {
		t.Errorf("client QPS %v would cap the controller far below the apiserver", kube.qps)
	}
}

// Without --allowed-acr-server-suffixes the controller sends tokens only to the Azure clouds' registries: a binding
// naming any other host is refused, where msi-acrpull did not check at all.
func TestNoSuffixFlagAllowsOnlyAzureRegistries(t *testing.T) {
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	opts, _, err := parseFlags(fs, nil, func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	got := opts.Controller.AllowedServerSuffixes
	if !reflect.DeepEqual(got, []string{"azurecr.io", "azurecr.us", "azurecr.cn"}) {
		t.Fatalf("default suffixes %q", got)
	}
	for _, server := range []string{"x.azurecr.io", "x.azurecr.us", "x.azurecr.cn"} {
		if err := acrserver.Allowed(server, got); err != nil {
			t.Errorf("the default suffixes refuse %q: %v", server, err)
		}
	}
	if acrserver.Allowed("registry.attacker.example", got) == nil {
		t.Fatal("default suffixes allow registry.attacker.example")
	}
}

func TestFlagsRejectNonsense(t *testing.T) {
	for _, args := range [][]string{
		{"--ttl-rotation-fraction=1.5"},
		{"--ttl-rotation-fraction=0"},
		{"--label-selector=a in (b"},
		{"--service-account-token-audience="},
		{"--allowed-authority-hosts=http://login.example/"},
		{"--allowed-authority-hosts=login.example/?tenant=x"},
		{"--managed-identity-allow-list=/nonexistent/allow-list"},
		{"--allowed-acr-server-suffixes="},
		{"--allowed-acr-server-suffixes= , ."},
	} {
		if err := parseErr(args...); err == nil {
			t.Errorf("%v accepted", args)
		}
	}
}

// AirgappedCloud bindings may name the known clouds' authorities and --allowed-authority-hosts' only.
func TestAllowedAuthorityHosts(t *testing.T) {
	for args, want := range map[string]map[string]bool{
		"": {"https://login.microsoftonline.com/": true, "https://login.airgap.example/": false},
		"--allowed-authority-hosts=Login.Airgap.example, https://adfs.example/adfs/": {
			"https://login.airgap.example/": true, "https://adfs.example/adfs/": true, "https://adfs.example/": false,
			"https://login.microsoftonline.us/": true, "https://evil.example/": false},
	} {
		fs := flag.NewFlagSet("test", flag.ContinueOnError)
		var argv []string
		if args != "" {
			argv = []string{args}
		}
		opts, _, err := parseFlags(fs, argv, func(string) string { return "" })
		if err != nil {
			t.Fatal(err)
		}
		for authority, allowed := range want {
			if _, err := opts.Controller.AuthorityHosts.Check(authority); (err == nil) != allowed {
				t.Errorf("%q: %s allowed %v, want %v", args, authority, err == nil, allowed)
			}
		}
	}
}

// Pull verification is on unless turned off.
func TestVerifyPullFlag(t *testing.T) {
	opts, _, err := parseFlags(flag.NewFlagSet("test", flag.ContinueOnError), []string{"--verify-pull=false"}, func(string) string { return "" })
	if err != nil || opts.Controller.VerifyPull {
		t.Errorf("--verify-pull=false: on %v, err %v", opts.Controller.VerifyPull, err)
	}
}

// The controller asks the apiserver for gzip only when told to: by default its requests carry no Accept-Encoding that
// would make the apiserver compress every response and watch event for it.
func TestKubeAPICompressionIsOffUnlessAsked(t *testing.T) {
	var mu sync.Mutex
	var seen []string
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = append(seen, r.Header.Get("Accept-Encoding"))
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"kind":"Status","apiVersion":"v1","status":"Success"}`)
	}))
	srv.EnableHTTP2 = true
	srv.StartTLS()
	defer srv.Close()
	ca := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})

	acceptEncoding := func(args ...string) string {
		t.Helper()
		fs := flag.NewFlagSet("test", flag.ContinueOnError)
		_, kube, err := parseFlags(fs, args, func(string) string { return "" })
		if err != nil {
			t.Fatal(err)
		}
		cfg := &rest.Config{Host: srv.URL, TLSClientConfig: rest.TLSClientConfig{CAData: ca}}
		kube.apply(cfg)
		c, err := rest.HTTPClientFor(cfg)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := c.Get(srv.URL + "/version")
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
		if resp.ProtoMajor != 2 {
			t.Errorf("the test server spoke HTTP/%d, not the HTTP/2 the apiserver speaks", resp.ProtoMajor)
		}
		mu.Lock()
		defer mu.Unlock()
		return seen[len(seen)-1]
	}
	if got := acceptEncoding(); got != "" {
		t.Errorf("by default the controller asked for Accept-Encoding %q", got)
	}
	if got := acceptEncoding("--kube-api-compression"); !strings.Contains(got, "gzip") {
		t.Errorf("--kube-api-compression asked for Accept-Encoding %q, not gzip", got)
	}
}
