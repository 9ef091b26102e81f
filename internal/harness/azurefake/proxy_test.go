/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

package azurefake_test

import (
	"bufio"
	"crypto/tls"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/acrpull/acrpull/internal/harness/azurefake"
)

// Hosts the fake does not serve are refused at the proxy, tunnelled or not, so nothing leaves the machine; the
// refusal is counted per host.
func TestUnknownHostsAreRefused(t *testing.T) {
	before := fake.Counts()
	if _, err := fake.HTTPClient().Get("https://example.com/"); err == nil {
		t.Error("a tunnel to example.com was established")
	}
	if r := get(t, "http://example.com/", nil); r.status != http.StatusBadGateway {
		t.Errorf("plain HTTP to example.com: HTTP %d", r.status)
	}
	if n := fake.HostRequests("example.com"); n != 2 {
		t.Errorf("%d requests recorded for example.com, want 2", n)
	}
	if after := fake.Counts(); len(after) != len(before) {
		t.Errorf("an endpoint counted a refused host: %v → %v", before, after)
	}
}

// Each host gets its own certificate from the fake's CA, made once and reused.
func TestPerHostCertificates(t *testing.T) {
	serial := func(serverName string) string {
		conn := tunnel(t, serverName)
		defer conn.Close()
		tlsConn := tls.Client(conn, &tls.Config{ServerName: serverName, RootCAs: fake.CertPool()})
		if err := tlsConn.Handshake(); err != nil {
			t.Fatalf("%s: %v", serverName, err)
		}
		leaf := tlsConn.ConnectionState().PeerCertificates[0]
		if len(leaf.DNSNames) != 1 || leaf.DNSNames[0] != serverName {
			t.Errorf("%s: certificate for %v", serverName, leaf.DNSNames)
		}
		return leaf.SerialNumber.String()
	}
	first := serial(host)
	if again := serial(host); again != first {
		t.Error("the certificate was made again for the same host")
	}
	if other := serial("login.microsoftonline.com"); other == first {
		t.Error("two hosts share a certificate")
	}
}

// tunnel opens a CONNECT tunnel through the proxy by hand, as any HTTPS_PROXY client does.
func tunnel(t *testing.T, serverName string) net.Conn {
	t.Helper()
	conn, err := net.DialTimeout("tcp", fake.ProxyURL().Host, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = conn.Write([]byte("CONNECT " + serverName + ":443 HTTP/1.1\r\nHost: " + serverName + ":443\r\n\r\n"))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("CONNECT %s: %v %v", serverName, resp, err)
	}
	return conn
}

// The proxy port is not a web server: requests in origin form are refused.
func TestProxyWantsProxyRequests(t *testing.T) {
	resp, err := http.Get(fake.ProxyURL().String() + "/metadata/identity/oauth2/token")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("HTTP %d", resp.StatusCode)
	}
	if !strings.HasPrefix(fake.ProxyURL().Host, "127.0.0.1:") {
		t.Errorf("the proxy listens on %s, not loopback", fake.ProxyURL().Host)
	}
}

// A registry host without a real registry behind it serves its token endpoints but has no /v2/.
func TestRegistryWithoutUpstream(t *testing.T) {
	fake.AddRegistry(azurefake.Registry{Host: "tokens-only.azurecr.io"})
	if r := get(t, "https://tokens-only.azurecr.io/v2/", nil); r.status != http.StatusNotFound {
		t.Errorf("/v2/: HTTP %d", r.status)
	}
	if r := get(t, "https://tokens-only.azurecr.io/oauth2/token?service=tokens-only.azurecr.io", nil); r.status != http.StatusUnauthorized {
		t.Errorf("token endpoint: HTTP %d", r.status)
	}
}

// Before Start, the fake's client fails rather than reaching the real hosts directly.
func TestClientOfAnUnstartedFakeGoesNowhere(t *testing.T) {
	unstarted, err := azurefake.New(azurefake.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := unstarted.HTTPClient().Get("http://169.254.169.254/metadata/identity/oauth2/token"); err == nil {
		t.Fatal("a request went out without the proxy")
	}
}
