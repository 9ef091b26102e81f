/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

package azauth

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// ErrAuthorityHostNotAllowed marks an Entra ID authority that credentials must not be sent to: malformed, or not in
// the allow-list.
var ErrAuthorityHostNotAllowed = errors.New("authority host not allowed")

// KnownAuthorityHosts are the Entra ID authorities of the Azure clouds acrpull has tables for; they are always allowed.
func KnownAuthorityHosts() []string {
	var out []string
	for _, c := range knownClouds {
		out = append(out, c.AuthorityHost)
	}
	return out
}

// AuthorityHosts is the set of Entra ID authorities a client secret, a certificate assertion or a service-account
// token may be sent to. Objects written by tenants (AzureIdentity spec.adEndpoint, AcrPullBinding
// spec.acr.cloudConfig.entraAuthorityHost) name an authority; everything sent there (and Entra ID accepts a pod-bound
// service-account token from anyone holding it) would go to a host the tenant chose unless it is on this list.
//
// Authorities are compared in canonical form (see CanonicalAuthority): scheme https, lower-case host, port only when
// not 443, path ending in "/". The path matters because the SDK appends the tenant to it: a path other than the
// allowed one would make Entra ID, or whoever serves that host, see a different route.
type AuthorityHosts struct {
	allowed []string
}

// NewAuthorityHosts allows the known clouds' authorities and extra ones. Each extra entry is an https URL
// ("https://login.example/", "https://adfs.example:8443/adfs/") or a host name with an optional port
// ("login.example", "login.example:8443"), which stands for https://<host>/.
func NewAuthorityHosts(extra ...string) (*AuthorityHosts, error) {
	a := &AuthorityHosts{}
	for _, entry := range append(KnownAuthorityHosts(), extra...) {
		entry = strings.TrimSpace(entry)
		if entry == "" {
			continue
		}
		raw := entry
		if !strings.Contains(raw, "://") {
			raw = "https://" + raw
		}
		canonical, err := CanonicalAuthority(raw)
		if err != nil {
			return nil, fmt.Errorf("allowed authority host %q: %w", entry, err)
		}
		if !slices.Contains(a.allowed, canonical) {
			a.allowed = append(a.allowed, canonical)
		}
	}
	return a, nil
}

// SplitAuthorityHostList splits a comma-separated --allowed-authority-hosts value.
func SplitAuthorityHostList(v string) []string {
	var out []string
	for _, part := range strings.Split(v, ",") {
		if part = strings.TrimSpace(part); part != "" {
			out = append(out, part)
		}
	}
	return out
}

// Allowed lists the allowed authorities, canonical, for messages.
func (a *AuthorityHosts) Allowed() []string {
	return slices.Clone(a.allowed)
}

// Check returns the canonical form of authority if it is allowed, and otherwise an error wrapping
// ErrAuthorityHostNotAllowed that names the host (never the raw value, which could carry anything) and how to allow
// it. A nil AuthorityHosts allows the known clouds only.
func (a *AuthorityHosts) Check(authority string) (string, error) {
	if a == nil {
		a, _ = NewAuthorityHosts()
	}
	canonical, err := CanonicalAuthority(authority)
	if err != nil {
		return "", fmt.Errorf("%w: %v", ErrAuthorityHostNotAllowed, err)
	}
	if slices.Contains(a.allowed, canonical) {
		return canonical, nil
	}
	return "", fmt.Errorf("%w: %s is not an Azure cloud's Entra ID authority nor one the administrator allowed "+
		"(allowed: %s); an administrator can add it with --allowed-authority-hosts (chart value allowedAuthorityHosts)",
		ErrAuthorityHostNotAllowed, canonical, strings.Join(a.allowed, ", "))
}

var (
	// dnsName is a host name of letter-digit-hyphen labels, without a trailing dot: the name resolvers and TLS see.
	dnsName = regexp.MustCompile(`^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)*[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)
	// pathSegment is an unreserved-character segment: nothing a server could decode or normalise into another path.
	pathSegment = regexp.MustCompile(`^[A-Za-z0-9._~-]+$`)
)

// CanonicalAuthority parses an authority URL and returns it as "https://<lower-case host>[:<port other than 443>]
// <path ending in />". It refuses what could make the request go elsewhere than the host it shows, or that has no
// place in an authority: another scheme, user information, a query or fragment, percent-encoding, a host that is
// neither a DNS name nor an IP address, and "." or ".." path segments.
func CanonicalAuthority(raw string) (string, error) {
	if strings.ContainsAny(raw, "%?#\\ \t\r\n") {
		return "", errors.New("an authority URL may not contain percent-encoding, a query, a fragment, backslashes or spaces")
	}
	u, err := url.Parse(raw)
	if err != nil {
		return "", errors.New("the authority is not a URL")
	}
	if u.Scheme != "https" || u.Opaque != "" {
		return "", errors.New("the authority must be an https URL")
	}
	if u.User != nil || strings.Contains(u.Host, "@") {
		return "", errors.New("the authority may not carry user information")
	}
	host := strings.ToLower(u.Hostname())
	ip := net.ParseIP(host)
	isIPv6Literal := strings.HasPrefix(u.Host, "[")
	switch {
	case host == "":
		return "", errors.New("the authority has no host")
	case isIPv6Literal && (ip == nil || ip.To4() != nil):
		return "", errors.New("the authority's bracketed host is not an IPv6 address")
	case !isIPv6Literal && ip == nil && !dnsName.MatchString(host):
		return "", errors.New("the authority's host is not a DNS name or IP address")
	}
	hostport := host
	if isIPv6Literal {
		hostport = "[" + ip.String() + "]"
	} else if ip != nil {
		hostport = ip.String()
	}
	if port := u.Port(); port != "" || strings.HasSuffix(u.Host, ":") {
		n, err := strconv.Atoi(port)
		if err != nil || n < 1 || n > 65535 || strconv.Itoa(n) != port {
			return "", errors.New("the authority's port is not a number from 1 to 65535")
		}
		if n != 443 {
			hostport += ":" + port
		}
	}
	path := strings.TrimSuffix(u.Path, "/")
	if path != "" {
		for _, seg := range strings.Split(strings.TrimPrefix(path, "/"), "/") {
			if !pathSegment.MatchString(seg) || seg == "." || seg == ".." {
				return "", errors.New("the authority's path must be plain segments (no empty, . or .. segments)")
			}
		}
	}
	return "https://" + hostport + path + "/", nil
}
