/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

package azauth

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/golang-jwt/jwt/v5"
)

var t0 = time.Date(2026, 11, 25, 8, 0, 0, 0, time.UTC)

func unsignedJWT(claims jwt.MapClaims) string {
	s, _ := jwt.NewWithClaims(jwt.SigningMethodNone, claims).SignedString(jwt.UnsafeAllowNoneSignatureType)
	return s
}

func TestParseJWTTimes(t *testing.T) {
	tok, err := ParseJWTTimes(unsignedJWT(jwt.MapClaims{"iat": t0.Unix(), "exp": t0.Add(time.Hour).Unix()}), t0.Add(time.Second))
	if err != nil || !tok.IssuedAt.Equal(t0) || tok.Lifetime() != time.Hour {
		t.Fatalf("got %v, %v", tok, err)
	}
	// No iat: the time it was received.
	tok, err = ParseJWTTimes(unsignedJWT(jwt.MapClaims{"exp": t0.Add(time.Hour).Unix()}), t0)
	if err != nil || !tok.IssuedAt.Equal(t0) {
		t.Fatalf("got %v, %v", tok, err)
	}
	if _, err := ParseJWTTimes(unsignedJWT(jwt.MapClaims{"iat": t0.Unix()}), t0); !errors.Is(err, ErrNoExpiry) {
		t.Fatalf("a token without exp must be refused, got %v", err)
	}
	if _, err := ParseJWTTimes(unsignedJWT(jwt.MapClaims{"iat": t0.Unix(), "exp": t0.Unix()}), t0); err == nil {
		t.Fatal("a token expiring on issue must be refused")
	}
}

func TestParseJWTTimesNotBefore(t *testing.T) {
	tok, err := ParseJWTTimes(unsignedJWT(jwt.MapClaims{"iat": t0.Unix(), "nbf": t0.Add(-time.Minute).Unix(), "exp": t0.Add(time.Hour).Unix()}), t0)
	if err != nil || !tok.NotBefore.Equal(t0.Add(-time.Minute)) {
		t.Fatalf("got nbf %s, %v", tok.NotBefore, err)
	}
	// nbf is informative: without one, or with one that is no number, the token is still usable.
	for _, claims := range []jwt.MapClaims{{"exp": t0.Add(time.Hour).Unix()}, {"exp": t0.Add(time.Hour).Unix(), "nbf": "soon"}} {
		if tok, err := ParseJWTTimes(unsignedJWT(claims), t0); err != nil || !tok.NotBefore.IsZero() {
			t.Errorf("%v: nbf %s, %v; want zero and no error", claims, tok.NotBefore, err)
		}
	}
	if _, err := ParseJWTTimes(unsignedJWT(jwt.MapClaims{"nbf": t0.Add(2 * time.Hour).Unix(), "exp": t0.Add(time.Hour).Unix()}), t0); err == nil {
		t.Error("a token whose nbf is not before its exp is never valid, and must be refused")
	}
}

// FuzzParseJWTTimes: no input panics, and no error repeats the input (it may be a token).
func FuzzParseJWTTimes(f *testing.F) {
	f.Add(unsignedJWT(jwt.MapClaims{"iat": t0.Unix(), "exp": t0.Add(time.Hour).Unix()}))
	f.Add(unsignedJWT(jwt.MapClaims{"exp": "soon"}))
	f.Add("eyJhbGciOiJub25lIn0.eyJleHAiOjF9.")
	f.Add("not.a.jwt")
	f.Add("")
	f.Add(unsignedJWT(jwt.MapClaims{"nbf": t0.Add(2 * time.Hour).Unix(), "exp": t0.Add(time.Hour).Unix()}))
	f.Fuzz(func(t *testing.T, raw string) {
		tok, err := ParseJWTTimes(raw, t0)
		if err != nil {
			if len(raw) > 8 && strings.Contains(err.Error(), raw) {
				t.Fatalf("error quotes the token: %v", err)
			}
			return
		}
		if !tok.ExpiresAt.After(tok.IssuedAt) {
			t.Fatalf("accepted token with expiry %s not after issue %s", tok.ExpiresAt, tok.IssuedAt)
		}
		if !tok.NotBefore.IsZero() && !tok.ExpiresAt.After(tok.NotBefore) {
			t.Fatalf("accepted token with expiry %s not after nbf %s", tok.ExpiresAt, tok.NotBefore)
		}
	})
}

func response(status int, body string, header http.Header) *http.Response {
	if header == nil {
		header = http.Header{}
	}
	return &http.Response{StatusCode: status, Header: header, Body: io.NopCloser(strings.NewReader(body)),
		Request: &http.Request{Method: http.MethodPost, URL: mustURL("https://example.azurecr.io/oauth2/exchange")}}
}

func TestACRErrorsAreClassifiedWithoutBodies(t *testing.T) {
	secretish := "eyJzZWNyZXQiOiJ0b2tlbiJ9"
	cases := []struct {
		status int
		header http.Header
		kind   FailureKind
		retry  time.Duration
	}{
		{401, nil, RegistryDenied, 0},
		{403, nil, RegistryDenied, 0},
		{429, http.Header{"Retry-After": []string{"17"}}, Throttled, 17 * time.Second},
		{503, nil, Unavailable, 0},
	}
	for _, tc := range cases {
		err := classifyACR(EndpointACRExchange, runtimeError(response(tc.status, `{"errors":[{"code":"UNAUTHORIZED","message":"`+secretish+`"}]}`, tc.header)))
		if KindOf(err) != tc.kind || RetryAfterOf(err) != tc.retry {
			t.Errorf("%d: kind %s retry %s, want %s %s", tc.status, KindOf(err), RetryAfterOf(err), tc.kind, tc.retry)
		}
		if strings.Contains(err.Error(), secretish) {
			t.Errorf("%d: message repeats the response body: %v", tc.status, err)
		}
	}
}

func TestEntraErrorsMapAADSTSCodes(t *testing.T) {
	for code, kind := range map[string]FailureKind{
		"AADSTS70021":  IdentityNotFederated,
		"AADSTS700024": IdentityNotFederated,
		"AADSTS700016": IdentityNotFound,
		"AADSTS700027": IdentityNotFound,
		"AADSTS700023": IdentityNotFound,
	} {
		err := classifyEntra(EndpointEntra, fmt.Errorf("ClientAssertionCredential: %s: something went wrong", code))
		var azErr *Error
		if !errors.As(err, &azErr) || azErr.Kind != kind || azErr.Code != code {
			t.Errorf("%s: got %v", code, err)
		}
	}
}

// runtimeError builds the error azcontainerregistry returns for a failed response.
func runtimeError(resp *http.Response) error {
	return &azcore.ResponseError{StatusCode: resp.StatusCode, ErrorCode: "UNAUTHORIZED", RawResponse: resp}
}

func mustURL(s string) *url.URL {
	u, err := url.Parse(s)
	if err != nil {
		panic(err)
	}
	return u
}

// FuzzErrorBodies: whatever an Azure endpoint answers, classification does not panic and never repeats the body.
func FuzzErrorBodies(f *testing.F) {
	f.Add(401, `{"errors":[{"code":"UNAUTHORIZED","message":"x"}]}`, "")
	f.Add(429, `{"error":"throttled"}`, "7")
	f.Add(400, `AADSTS70021: No matching federated identity record found`, "")
	f.Add(500, "\x00\xff<html>", "Wed, 21 Oct 2015 07:28:00 GMT")
	f.Fuzz(func(t *testing.T, status int, body, retry string) {
		if status < 100 || status > 999 {
			return
		}
		h := http.Header{}
		h.Set("Retry-After", retry)
		acr := classifyACR(EndpointACRToken, runtimeError(response(status, body, h)))
		entra := classifyEntra(EndpointEntra, fmt.Errorf("ClientAssertionCredential: %s", body))
		for _, err := range []error{acr, entra} {
			msg := err.Error()
			if len(body) >= 16 && strings.Contains(msg, body) {
				t.Fatalf("message repeats the body: %q", msg)
			}
			if RetryAfterOf(err) < 0 {
				t.Fatalf("negative Retry-After")
			}
		}
	})
}
