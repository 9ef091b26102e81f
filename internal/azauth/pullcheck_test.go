/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

package azauth

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// What a registry's answer to a tag-list request says about the credential, status by status.
func TestJudgePull(t *testing.T) {
	for _, tc := range []struct {
		status int
		code   string
		want   PullOutcome
	}{
		{http.StatusOK, "", PullVerified},
		{http.StatusNotFound, "NAME_UNKNOWN", RepositoryNotFound},
		// A 404 that is not the registry's "no such repository" says nothing about the repository: a path that is no
		// registry API (a proxy, a registry without storage behind it).
		{http.StatusNotFound, "NOT_FOUND", RegistryUnreachable},
		{http.StatusNotFound, "", RegistryUnreachable},
		{http.StatusUnauthorized, "UNAUTHORIZED", ScopeDenied},
		{http.StatusUnauthorized, "", ScopeDenied},
		{http.StatusForbidden, "DENIED", ScopeDenied},
		{http.StatusTemporaryRedirect, "", RegistryUnreachable},
		{http.StatusMovedPermanently, "", RegistryUnreachable},
		{http.StatusTooManyRequests, "TOOMANYREQUESTS", RegistryUnreachable},
		{http.StatusInternalServerError, "", RegistryUnreachable},
		{http.StatusBadGateway, "UNAVAILABLE", RegistryUnreachable},
		{http.StatusServiceUnavailable, "", RegistryUnreachable},
		{http.StatusBadRequest, "", RegistryUnreachable},
	} {
		got := JudgePull(tc.status, tc.code)
		if got.Outcome != tc.want {
			t.Errorf("HTTP %d %q: %s (%s), want %s", tc.status, tc.code, got.Outcome, got.Detail, tc.want)
		}
		if tc.status != http.StatusOK && !strings.Contains(got.Detail, "HTTP ") {
			t.Errorf("HTTP %d %q: the detail %q does not say what the registry answered", tc.status, tc.code, got.Detail)
		}
	}
}

const checkToken = "header.payload.signature-of-the-check"

// registryStub is a TLS registry on loopback answering the tag list with answer, recording what it was sent.
func registryStub(t *testing.T, answer http.HandlerFunc, timeout ...time.Duration) (server string, client *Client, requests *[]*http.Request) {
	t.Helper()
	var seen []*http.Request
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen = append(seen, r)
		answer(w, r)
	}))
	srv.Config.ErrorLog = discardLog()
	t.Cleanup(srv.Close)
	callTimeout := 5 * time.Second
	if len(timeout) > 0 {
		callTimeout = timeout[0]
	}
	return srv.Listener.Addr().String(), NewClient(Options{HTTPClient: srv.Client(), CallTimeout: callTimeout}), &seen
}

// The check asks exactly GET /v2/<repository>/tags/list?n=1 of the registry host, with the token as a bearer token,
// and reads the registry's error code.
func TestCheckPullAsksTheTagListOfTheRepository(t *testing.T) {
	server, c, seen := registryStub(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v2/team/app/tags/list" {
			_, _ = w.Write([]byte(`{"name":"team/app","tags":["v1"]}`))
			return
		}
		w.WriteHeader(http.StatusNotFound)
		_, _ = w.Write([]byte(`{"errors":[{"code":"NAME_UNKNOWN","message":"repository name not known to registry"}]}`))
	})
	got := c.CheckPull(context.Background(), server, "team/app", Token{Value: checkToken})
	if got.Outcome != PullVerified {
		t.Fatalf("existing repository: %+v", got)
	}
	r := (*seen)[0]
	if r.Method != http.MethodGet || r.URL.RawQuery != "n=1" || r.Header.Get("Authorization") != "Bearer "+checkToken {
		t.Errorf("request: %s %s, authorization as expected: %t", r.Method, r.URL, r.Header.Get("Authorization") == "Bearer "+checkToken)
	}
	if got := c.CheckPull(context.Background(), server, "team/missing", Token{Value: checkToken}); got.Outcome != RepositoryNotFound {
		t.Errorf("missing repository: %+v", got)
	}
}

// A registry that redirects does not get the token sent on: the redirect is not followed, whatever host it names.
func TestCheckPullFollowsNoRedirect(t *testing.T) {
	var elsewhere atomic.Int64
	other := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		elsewhere.Add(1)
		_, _ = w.Write([]byte(`{"tags":["v1"]}`))
	}))
	defer other.Close()
	for _, location := range []string{other.URL + "/v2/app/tags/list?n=1", "/v2/elsewhere/tags/list?n=1"} {
		server, c, seen := registryStub(t, func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/v2/elsewhere/tags/list" {
				_, _ = w.Write([]byte(`{"tags":["v1"]}`))
				return
			}
			http.Redirect(w, r, location, http.StatusTemporaryRedirect)
		})
		got := c.CheckPull(context.Background(), server, "app", Token{Value: checkToken})
		if got.Outcome != RegistryUnreachable || len(*seen) != 1 || elsewhere.Load() != 0 {
			t.Errorf("redirect to %s: %+v after %d requests to the registry and %d elsewhere; want RegistryUnreachable after one",
				location, got, len(*seen), elsewhere.Load())
		}
	}
}

// Only the first 64 KiB of an answer are read: an error code past them is not seen, so an endless or huge body costs
// no more than that.
func TestCheckPullReadsABoundedBody(t *testing.T) {
	body := strings.Repeat(" ", maxPullCheckBody) + `{"errors":[{"code":"NAME_UNKNOWN"}]}`
	server, c, _ := registryStub(t, func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusNotFound)
		_, _ = w.Write([]byte(body))
	})
	if got := c.CheckPull(context.Background(), server, "app", Token{Value: checkToken}); got.Outcome != RegistryUnreachable {
		t.Errorf("an error code beyond the read bound was read: %+v", got)
	}
}

// A registry that does not answer within the call timeout is unreachable; the check does not wait for it.
func TestCheckPullTimesOut(t *testing.T) {
	release := make(chan struct{})
	server, c, _ := registryStub(t, func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}, 100*time.Millisecond)
	defer close(release)
	got := c.CheckPull(context.Background(), server, "app", Token{Value: checkToken})
	if got.Outcome != RegistryUnreachable || !strings.Contains(got.Detail, "timed out") {
		t.Errorf("a registry that never answers: %+v", got)
	}
}

// The server must be a plain host and the repository a repository name: nothing in a binding steers the token to
// another host or path, and nothing is sent when they are not.
func TestCheckPullRefusesOtherTargets(t *testing.T) {
	server, c, seen := registryStub(t, func(w http.ResponseWriter, r *http.Request) {})
	for _, tc := range []struct{ server, repository string }{
		{server + "/path", "app"},
		{"user@" + server, "app"},
		{server + "?x=1", "app"},
		{server, "../../oauth2/token"},
		{server, "app/tags/list?n=1#"},
		{server, "App"},
		{server, ""},
	} {
		got := c.CheckPull(context.Background(), tc.server, tc.repository, Token{Value: checkToken})
		if got.Outcome != RegistryUnreachable || strings.Contains(got.Detail, checkToken) {
			t.Errorf("server %q repository %q: %+v", tc.server, tc.repository, got)
		}
	}
	if len(*seen) != 0 {
		t.Errorf("%d requests sent for refused targets", len(*seen))
	}
}
