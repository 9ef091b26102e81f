/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

package azauth

import (
	"regexp"
	"strings"
)

// transportFailures name, in acrpull's words, why a request got no response. Each pattern captures host names and
// addresses only; the rest of the message is fixed text. The Azure SDKs' credential errors carry their cause only as
// text (azidentity flattens it), so the text is what is read, for typed errors as for flattened ones.
var transportFailures = []struct {
	pattern *regexp.Regexp
	detail  func(m []string) string
}{
	{regexp.MustCompile(`proxyconnect tcp: dial tcp (` + address + `): connect: connection refused`),
		func(m []string) string { return "proxy " + m[1] + " refused the connection" }},
	{regexp.MustCompile(`proxyconnect tcp: dial tcp (` + address + `): i/o timeout`),
		func(m []string) string { return "proxy " + m[1] + " did not answer (timeout)" }},
	{regexp.MustCompile(`proxyconnect tcp: dial tcp: lookup (` + address + `)(?: on \S+)?: no such host`),
		func(m []string) string { return "proxy " + m[1] + " not found (DNS: no such host)" }},
	{regexp.MustCompile(`proxyconnect tcp: `),
		func([]string) string { return "proxy connection failed" }},
	{regexp.MustCompile(`lookup (` + address + `)(?: on \S+)?: no such host`),
		func(m []string) string { return "DNS: no such host " + m[1] }},
	{regexp.MustCompile(`lookup (` + address + `)(?: on \S+)?: (?:server misbehaving|i/o timeout)`),
		func(m []string) string { return "DNS lookup of " + m[1] + " failed" }},
	{regexp.MustCompile(`x509: certificate signed by unknown authority`),
		func([]string) string {
			return "TLS: server certificate signed by an unknown authority (check SSL_CERT_FILE)"
		}},
	{regexp.MustCompile(`x509: certificate is valid for [^"]*?, not (` + address + `)`),
		func(m []string) string { return "TLS: server certificate is not valid for " + m[1] }},
	{regexp.MustCompile(`x509: certificate has expired or is not yet valid`),
		func([]string) string { return "TLS: server certificate expired or not yet valid" }},
	{regexp.MustCompile(`(?:tls|x509): `),
		func([]string) string { return "TLS handshake failed" }},
	{regexp.MustCompile(`dial tcp (` + address + `): connect: connection refused`),
		func(m []string) string { return m[1] + " refused the connection" }},
	{regexp.MustCompile(`dial tcp (` + address + `): i/o timeout`),
		func(m []string) string { return m[1] + " did not answer (timeout)" }},
	{regexp.MustCompile(`connection reset by peer`),
		func([]string) string { return "connection reset" }},
}

// address is a host name, an IPv4 address or a bracketed IPv6 address, with an optional port.
const address = `[A-Za-z0-9._-]+(?::\d+)?|\[[0-9A-Fa-f:.]+\](?::\d+)?`

// transportDetail says why a request got no response (a proxy, DNS or TLS failure, a refused connection), or "" when
// err shows no such cause.
func transportDetail(err error) string {
	if err == nil {
		return ""
	}
	msg := err.Error()
	for _, f := range transportFailures {
		if m := f.pattern.FindStringSubmatch(msg); m != nil {
			return strings.TrimSpace(f.detail(m))
		}
	}
	return ""
}

// noResponse is the detail of a request that got no response.
func noResponse(err error) string {
	if d := transportDetail(err); d != "" {
		return "no response: " + d
	}
	return "no response"
}
