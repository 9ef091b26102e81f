/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

// Package imdspath decides what an instance metadata request's path means: the one spelling of it the node agent
// accepts, and which endpoint that is.
//
// The node's IMDS runs on IIS, which decodes percent-encoding, takes `\` for `/`, removes `.` and `..` segments and
// ignores case before it routes. A proxy that decides on the raw path and forwards it unchanged therefore forwards
// /metadata/instance/../identity/oauth2/token to the token endpoint of the node's own identities. So a path is
// accepted only when it is already in the form IIS would route it by: segments of letters, digits, `-` and `_`,
// separated by single slashes; no percent-encoding at all, no dots, no backslashes, no empty segments (a single
// trailing slash aside). Such a path reads the same before and after any decoding or cleaning, so what the agent
// decides on is what IMDS sees. No path the instance metadata API documents needs anything else.
package imdspath

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
)

// Endpoint is what a canonical path addresses.
type Endpoint int

const (
	// NotFound is any path the agent neither serves nor forwards.
	NotFound Endpoint = iota
	// Token is the managed identity token endpoint, which the agent serves itself.
	Token
	// MalformedToken looks like a misspelt token path: upstream NMI answered it 400, so the agent does too.
	MalformedToken
	// HostToken is the agent's /host/token for node-local callers.
	HostToken
	// Instance is /metadata/instance and below, forwarded unless instance metadata is blocked.
	Instance
	// Attested is the signed form of the instance metadata, forwarded unless instance metadata is blocked.
	Attested
	// Forwarded are the other documented IMDS endpoints, forwarded as they are: the load balancer's metadata, the
	// scheduled events and the API versions.
	Forwarded
)

// ErrNotCanonical is the cause of every refused path.
var ErrNotCanonical = errors.New("the path is not in canonical form")

// Canonical returns raw, the path of a request target exactly as the client sent it (before any decoding: a
// url.URL's RawPath, or its EscapedPath when RawPath is empty), when it is canonical, and an error saying why not
// otherwise. The canonical form is raw itself: a path that would change under decoding or cleaning is refused, never
// repaired, so that no two spellings reach one endpoint.
func Canonical(raw string) (string, error) {
	if !strings.HasPrefix(raw, "/") {
		return "", fmt.Errorf("%w: it does not start with /", ErrNotCanonical)
	}
	segments := strings.Split(raw[1:], "/")
	for i, seg := range segments {
		if seg == "" {
			// "/" itself and one trailing slash are canonical; an empty segment anywhere else is not.
			if i == len(segments)-1 {
				continue
			}
			return "", fmt.Errorf("%w: empty segment", ErrNotCanonical)
		}
		for j := 0; j < len(seg); j++ {
			if c := seg[j]; !segmentByte(c) {
				return "", fmt.Errorf("%w: %s", ErrNotCanonical, describe(c))
			}
		}
	}
	return raw, nil
}

// segmentByte is the allow-list of a segment's bytes: what the documented IMDS paths use.
func segmentByte(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_'
}

func describe(c byte) string {
	switch c {
	case '%':
		return "percent-encoding is not accepted"
	case '.':
		return "dots (dot segments) are not accepted"
	case '\\':
		return "backslashes are not accepted"
	}
	if c < 0x20 || c >= 0x7f {
		return fmt.Sprintf("byte 0x%02x is not accepted", c)
	}
	return fmt.Sprintf("character %q is not accepted", c)
}

// RequestPath is the path of u as the client spelt it.
func RequestPath(u *url.URL) string {
	if u.RawPath != "" {
		return u.RawPath
	}
	return u.EscapedPath()
}

// Classify says which endpoint a canonical path addresses. Routing ignores case, as IIS does.
//
// Only the endpoints listed are forwarded. /metadata/identity and everything under it belong to the agent: its token
// endpoint, and nothing else. In particular /metadata/identity/info is not forwarded: it describes the node's
// identities, not the calling pod's, and a pod has no use for it.
func Classify(canonical string) Endpoint {
	p := strings.ToLower(canonical)
	if len(p) > 1 {
		p = strings.TrimSuffix(p, "/")
	}
	switch {
	case p == "/metadata/identity/oauth2/token":
		return Token
	case p == "/host/token":
		return HostToken
	case strings.HasPrefix(p, "/metadata/identity"):
		if malformedToken(p) {
			return MalformedToken
		}
		return NotFound
	case p == "/metadata/instance" || strings.HasPrefix(p, "/metadata/instance/"):
		return Instance
	case p == "/metadata/attested/document":
		return Attested
	case p == "/metadata/loadbalancer", p == "/metadata/scheduledevents", p == "/metadata/versions":
		return Forwarded
	}
	return NotFound
}

// malformedToken is upstream's /metadata/identity(.*?)oauth2(.*?)token, on a lower-cased path.
func malformedToken(p string) bool {
	rest, ok := strings.CutPrefix(p, "/metadata/identity")
	if !ok {
		return false
	}
	i := strings.Index(rest, "oauth2")
	return i >= 0 && strings.Contains(rest[i+len("oauth2"):], "token")
}

// MayForward says whether the agent passes requests for e to the node's IMDS.
func (e Endpoint) MayForward() bool {
	return e == Instance || e == Attested || e == Forwarded
}
