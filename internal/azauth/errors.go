/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

package azauth

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"strconv"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	"golang.org/x/crypto/pkcs12"
)

// FailureKind says what went wrong in terms a user can act on. The values are the binding condition reasons.
type FailureKind string

// The kinds of failure an Azure call can end in.
const (
	IdentityNotFederated FailureKind = "IdentityNotFederated"
	IdentityNotFound     FailureKind = "IdentityNotFound"
	RegistryDenied       FailureKind = "RegistryDenied"
	Throttled            FailureKind = "AzureThrottled"
	Unavailable          FailureKind = "AzureUnavailable"
	TokenInvalid         FailureKind = "TokenInvalid"
)

// Error is a classified Azure failure. Its message is built by acrpull from the status and error codes only, never
// from response bodies or tokens, so it is safe for logs, Events and conditions.
type Error struct {
	Kind FailureKind
	// Endpoint is the kind of Azure endpoint that failed: entra, imds, acr-exchange, acr-token.
	Endpoint string
	// StatusCode is the HTTP status, 0 when no response arrived.
	StatusCode int
	// Code is Azure's error code, e.g. AADSTS70021 or UNAUTHORIZED.
	Code string
	// RetryAfter is how long Azure asked callers to wait, 0 if it did not say.
	RetryAfter time.Duration
	// Detail is a short, token-free explanation.
	Detail string
	// Denied are the identities Resource Manager refused to assign (AssignDenied), lowercased.
	Denied []string
	// Gated says the request was never sent: the endpoint's gate held it back until RetryAfter.
	Gated bool
}

// Is makes errors.Is(err, errGated) true for errors the gate made.
func (e *Error) Is(target error) bool { return target == errGated && e.Gated }

func (e *Error) Error() string {
	msg := fmt.Sprintf("%s: %s", e.Endpoint, e.Detail)
	if e.StatusCode != 0 {
		msg += fmt.Sprintf(" (HTTP %d", e.StatusCode)
		if e.Code != "" {
			msg += ", " + e.Code
		}
		msg += ")"
	}
	if e.RetryAfter > 0 {
		msg += fmt.Sprintf(", retry after %s", e.RetryAfter)
	}
	return msg
}

// KindOf returns the failure kind of err, Unavailable for errors acrpull did not classify.
func KindOf(err error) FailureKind {
	var e *Error
	if errors.As(err, &e) {
		return e.Kind
	}
	return Unavailable
}

// RetryAfterOf returns the wait Azure asked for, or 0.
func RetryAfterOf(err error) time.Duration {
	var e *Error
	if errors.As(err, &e) {
		return e.RetryAfter
	}
	return 0
}

// maxRetryAfter bounds how long a Retry-After can make acrpull wait.
const (
	maxRetryAfter        = time.Hour
	maxRetryAfterSeconds = 3600
)

var aadstsCode = regexp.MustCompile(`AADSTS\d+`)

// AADSTS codes that mean the identity or its federation is wrong, not that Entra ID is unwell.
var federationCodes = map[string]FailureKind{
	"AADSTS70021":   IdentityNotFederated, // no federated credential matches issuer, subject and audience
	"AADSTS700211":  IdentityNotFederated, // no federated credential for this issuer
	"AADSTS700212":  IdentityNotFederated, // no federated credential for this audience
	"AADSTS700213":  IdentityNotFederated, // no federated credential for this subject
	"AADSTS700024":  IdentityNotFederated, // assertion outside its valid time range
	"AADSTS50013":   IdentityNotFederated, // assertion signature invalid
	"AADSTS50027":   IdentityNotFederated, // invalid JWT
	"AADSTS700016":  IdentityNotFound,     // application (client ID) not found in the tenant
	"AADSTS90002":   IdentityNotFound,     // tenant not found
	"AADSTS7000215": IdentityNotFound,     // invalid client secret
	"AADSTS7000222": IdentityNotFound,     // client secret expired
	"AADSTS700027":  IdentityNotFound,     // certificate not registered on the application, expired, or bad signature
	"AADSTS700021":  IdentityNotFound,     // certificate assertion's iss or sub is not the client ID
	"AADSTS700023":  IdentityNotFound,     // certificate assertion's audience is not the tenant's token endpoint
}

// entraDetails say what the codes most often met with service principals mean, so that a message tells which
// tenant-side setting to fix; other refusals read "Entra ID refused the identity".
var entraDetails = map[string]string{
	"AADSTS700016":  "application not found in the tenant (not provisioned or consented there)",
	"AADSTS90002":   "tenant not found",
	"AADSTS7000215": "invalid client secret",
	"AADSTS7000222": "client secret expired",
	"AADSTS700027":  "client certificate not registered on the application, expired, or not matching its key",
	"AADSTS700021":  "client certificate assertion does not name the client ID",
	"AADSTS700023":  "client certificate assertion is not for this tenant's token endpoint",
}

// classifyEntra turns an azidentity failure into an Error.
func classifyEntra(endpoint string, err error) error {
	if err == nil {
		return nil
	}
	out := &Error{Kind: Unavailable, Endpoint: endpoint, Detail: "token request failed"}
	var authErr *azidentity.AuthenticationFailedError
	if errors.As(err, &authErr) && authErr.RawResponse != nil {
		out.StatusCode = authErr.RawResponse.StatusCode
		out.RetryAfter = retryAfter(authErr.RawResponse)
	}
	// The SDK's message quotes Entra's description, which carries the AADSTS code but never the assertion.
	if code := aadstsCode.FindString(err.Error()); code != "" {
		out.Code = code
	}
	switch {
	case federationCodes[out.Code] != "":
		out.Kind = federationCodes[out.Code]
		out.Detail = "Entra ID refused the identity"
		if d := entraDetails[out.Code]; d != "" {
			out.Detail += ": " + d
		}
	case out.StatusCode == http.StatusTooManyRequests:
		out.Kind, out.Detail = Throttled, "throttled"
	case endpoint == EndpointIMDS && out.StatusCode == http.StatusBadRequest:
		// IMDS answers 400 "Identity not found" for identities not assigned to this VM.
		out.Kind, out.Detail = IdentityNotFound, "identity not found or not assigned to this node"
	case out.StatusCode == http.StatusBadRequest || out.StatusCode == http.StatusUnauthorized:
		out.Kind, out.Detail = IdentityNotFound, "Entra ID refused the request"
	case errors.Is(err, context.DeadlineExceeded):
		out.Detail = "timed out"
	case out.StatusCode == 0:
		out.Detail = noResponse(err)
	}
	return out
}

// SignInError classifies a failure to sign in to Entra ID (or IMDS) that a subpackage's SDK client met before its
// own service answered, as the token calls here classify theirs.
func SignInError(err error) error { return classifyEntra(EndpointEntra, err) }

// classifyACR turns an azcontainerregistry failure into an Error.
func classifyACR(endpoint string, err error) error {
	if err == nil {
		return nil
	}
	out := &Error{Kind: Unavailable, Endpoint: endpoint, Detail: "registry request failed"}
	var respErr *azcore.ResponseError
	if errors.As(err, &respErr) {
		out.StatusCode = respErr.StatusCode
		out.Code = respErr.ErrorCode
		out.RetryAfter = retryAfter(respErr.RawResponse)
	}
	switch {
	case out.StatusCode == http.StatusUnauthorized || out.StatusCode == http.StatusForbidden:
		out.Kind, out.Detail = RegistryDenied, "registry refused the identity"
	case out.StatusCode == http.StatusBadRequest:
		out.Kind, out.Detail = RegistryDenied, "registry refused the request"
	case out.StatusCode == http.StatusTooManyRequests:
		out.Kind, out.Detail = Throttled, "throttled"
	case errors.Is(err, context.DeadlineExceeded):
		out.Detail = "timed out"
	case out.StatusCode == 0:
		out.Detail = noResponse(err)
	}
	return out
}

// unreadableCertificate classifies a certificate bundle that does not decode, telling a wrong password from data
// that is no PKCS#12 (or PEM) at all, without repeating either. Like a wrong client secret it is IdentityNotFound:
// the identity's credential is wrong, and retrying will not fix it.
func unreadableCertificate(err error) error {
	detail := "client certificate unreadable: not a PKCS#12 bundle, nor PEM with a certificate and its key"
	if errors.Is(err, pkcs12.ErrIncorrectPassword) {
		detail = "client certificate unreadable: wrong password for the PKCS#12 bundle"
	}
	return &Error{Kind: IdentityNotFound, Endpoint: EndpointEntra, Detail: detail}
}

// unconstructed classifies the SDK refusing to build a credential: that happens before any request, for nothing but
// the inputs (causes names the ones it checks). The SDK's message is not kept, since it could quote an input.
func unconstructed(causes string) error {
	return &Error{Kind: IdentityNotFound, Endpoint: EndpointEntra, Detail: "credential not usable: " + causes}
}

func invalidToken(endpoint string, err error) error {
	return &Error{Kind: TokenInvalid, Endpoint: endpoint, Detail: "unusable token: " + err.Error()}
}

// RetryAfterOfResponse is how long resp's Retry-After asks callers to wait, bounded as for every Azure call; 0 if
// it asks for nothing. For azauth's subpackages, which classify their own services' answers.
func RetryAfterOfResponse(resp *http.Response) time.Duration { return retryAfter(resp) }

// retryAfter reads Retry-After in seconds or as an HTTP date; Azure uses seconds.
func retryAfter(resp *http.Response) time.Duration {
	if resp == nil {
		return 0
	}
	v := resp.Header.Get("Retry-After")
	if v == "" {
		return 0
	}
	if secs, err := strconv.Atoi(v); err == nil && secs > 0 {
		// An absurd value must not overflow into a negative wait, nor park a binding for days.
		return min(time.Duration(min(secs, maxRetryAfterSeconds))*time.Second, maxRetryAfter)
	}
	if t, err := http.ParseTime(v); err == nil {
		if d := time.Until(t); d > 0 {
			return min(d, maxRetryAfter)
		}
	}
	return 0
}
