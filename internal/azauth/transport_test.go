/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

package azauth

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"
)

// closedPort is a loopback address nothing listens on.
func closedPort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// A controller behind a proxy that refuses connections, or facing a server whose certificate it does not trust, must
// say so, not "no response": that is the first thing an operator needs. Every Azure call goes through the proxy
// (IMDS too, which is plain HTTP), so nothing here leaves the loopback.
func TestNoResponseSaysWhy(t *testing.T) {
	ctx := context.Background()
	proxy := closedPort(t)
	proxyURL, _ := url.Parse("http://" + proxy)
	viaProxy := NewClient(Options{HTTPClient: &http.Client{Transport: &http.Transport{Proxy: http.ProxyURL(proxyURL)}}, CallTimeout: 5 * time.Second})
	assertion := func(context.Context) (string, error) { return "header.payload.signature", nil }
	wantProxy := "proxy " + proxy + " refused the connection"
	for name, call := range map[string]func() error{
		"entra": func() error {
			_, err := viaProxy.WorkloadIdentityToken(ctx, Cloud{AuthorityHost: "https://login.microsoftonline.com/"},
				WorkloadIdentity{TenantID: "t", ClientID: "c", Assertion: assertion}, "https://management.azure.com/")
			return err
		},
		"imds": func() error {
			_, err := viaProxy.ManagedIdentityToken(ctx, ManagedIdentity{ClientID: "c"}, "https://management.azure.com/")
			return err
		},
		"acr": func() error {
			_, err := viaProxy.ExchangeForRefreshToken(ctx, "example.azurecr.io", Token{Value: "header.payload.signature"})
			return err
		},
	} {
		err := call()
		if err == nil || !strings.Contains(err.Error(), wantProxy) || KindOf(err) != Unavailable {
			t.Errorf("%s through a refusing proxy: %v (kind %s), want it to say %q", name, err, KindOf(err), wantProxy)
		}
	}

	untrusted := httptest.NewTLSServer(http.NotFoundHandler())
	defer untrusted.Close()
	untrusted.Config.ErrorLog = discardLog()
	direct := NewClient(Options{HTTPClient: &http.Client{Transport: &http.Transport{}}, CallTimeout: 5 * time.Second})
	_, err := direct.WorkloadIdentityToken(ctx, Cloud{AuthorityHost: untrusted.URL + "/"},
		WorkloadIdentity{TenantID: "t", ClientID: "c", Assertion: assertion}, "https://management.azure.com/")
	if err == nil || !strings.Contains(err.Error(), "unknown authority") {
		t.Errorf("an authority with an untrusted certificate: %v", err)
	}
	_, err = direct.ExchangeForRefreshToken(ctx, untrusted.Listener.Addr().String(), Token{Value: "header.payload.signature"})
	if err == nil || !strings.Contains(err.Error(), "unknown authority") {
		t.Errorf("a registry with an untrusted certificate: %v", err)
	}
}

func TestTransportDetail(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want string
	}{
		{errors.New(`Post "https://x/": proxyconnect tcp: dial tcp 10.0.0.1:3128: connect: connection refused`), "proxy 10.0.0.1:3128 refused the connection"},
		{errors.New(`Get "https://x/": proxyconnect tcp: dial tcp: lookup proxy.corp on 10.0.0.53:53: no such host`), "proxy proxy.corp not found (DNS: no such host)"},
		{errors.New(`Get "https://login.example/t/v2.0/.well-known/openid-configuration?": dial tcp: lookup login.example on 10.0.0.53:53: no such host`), "DNS: no such host login.example"},
		{errors.New(`tls: failed to verify certificate: x509: certificate signed by unknown authority`), "TLS: server certificate signed by an unknown authority (check SSL_CERT_FILE)"},
		{errors.New(`tls: failed to verify certificate: x509: certificate is valid for a.example, b.example, not login.example`), "TLS: server certificate is not valid for login.example"},
		{errors.New(`dial tcp [::1]:443: connect: connection refused`), "[::1]:443 refused the connection"},
		{fmt.Errorf("wrapped: %w", &net.OpError{Op: "dial", Net: "tcp", Err: errors.New("connect: connection refused"),
			Addr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 9}}), "127.0.0.1:9 refused the connection"},
		// Free text never passes: only fixed words and addresses are taken from the message.
		{errors.New(`lookup secret=hunter2 on 10.0.0.53:53: no such host`), ""},
		{errors.New(`Entra said: AADSTS50013 assertion eyJhbGciOi...`), ""},
	} {
		if got := transportDetail(tc.err); got != tc.want {
			t.Errorf("transportDetail(%q) = %q, want %q", tc.err, got, tc.want)
		}
	}
}

func discardLog() *log.Logger { return log.New(io.Discard, "", 0) }
