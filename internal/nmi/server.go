/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

// Package nmi is acrpull's node agent for the AAD Pod Identity API: an instance-metadata-compatible token endpoint
// that pods reach at 169.254.169.254 (redirected to it by internal/imdsredirect), which finds the calling pod by its
// source address and hands it tokens for the identities its aadpodidbinding label binds it to.
//
// It answers as upstream's NMI does (paths, parameters, JSON fields, status codes), so Azure SDKs and existing
// tooling work unchanged, and closes upstream's holes: the calling pod is confirmed against the apiserver, not a
// possibly stale cache; /host/token requires a service-account token of the pod it asks for; hostNetwork pods are
// never identified by address; Secrets are read one by one, never listed; and tokens are cached and shared.
package nmi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/tools/events"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"

	aadv1 "github.com/acrpull/acrpull/api/aadpodidentity/v1"
	"github.com/acrpull/acrpull/internal/azauth"
	"github.com/acrpull/acrpull/internal/podidentity"
)

// Config is the agent's behaviour, mostly upstream NMI's flags.
type Config struct {
	// MetadataHeaderRequired refuses token requests without "Metadata: true" (upstream's default since 1.8.4): a
	// server-side request forgery cannot set it.
	MetadataHeaderRequired bool
	// BlockInstanceMetadata answers /metadata/instance with 403 instead of passing it to the node's IMDS.
	BlockInstanceMetadata bool
	// RetryAfterOnNoIdentity answers 503 with Retry-After instead of 404 when the pod has no identity yet.
	RetryAfterOnNoIdentity bool
	// ForceNamespaced makes every identity namespaced.
	ForceNamespaced bool
	// HostTokenAudiences are the audiences a /host/token caller's service-account token may carry; empty accepts
	// the apiserver's own audiences.
	HostTokenAudiences []string
}

// Server answers the instance metadata API for pods.
type Server struct {
	Config Config
	Pods   *PodLocator
	// Objects reads AzureIdentities, bindings and exceptions (a cache).
	Objects client.Reader
	// Kube creates TokenReviews for /host/token.
	Kube     client.Client
	Issuer   *Issuer
	Metrics  *Metrics
	Recorder events.EventRecorder
	Log      logr.Logger
	Clock    clock.PassiveClock
	// IMDS is the node's own instance metadata service, for passthrough and exception pods.
	IMDS *url.URL
	// IMDSTransport carries passthrough requests (the Azure HTTP client's transport, for proxy and CA settings).
	IMDSTransport http.RoundTripper
}

var malformedTokenPath = regexp.MustCompile(`(?i)/metadata/identity(.*?)oauth2(.*?)token`)

// Handler routes requests in upstream's order.
func (s *Server) Handler() http.Handler {
	proxy := &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.SetURL(s.IMDS)
			r.Out.Host = s.IMDS.Host
		},
		Transport: s.IMDSTransport,
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		path := strings.ToLower(r.URL.Path)
		switch {
		case strings.HasPrefix(path, "/metadata/identity/oauth2/token"):
			s.instrument("token", w, r, s.serveToken)
		case malformedTokenPath.MatchString(r.URL.Path):
			writeError(w, http.StatusBadRequest, "invalid_request", "Invalid request")
		case path == "/host/token" || path == "/host/token/":
			s.instrument("host_token", w, r, s.serveHostToken)
		case strings.HasPrefix(path, "/metadata/instance") && s.Config.BlockInstanceMetadata:
			http.Error(w, "Request blocked by AAD Pod Identity NMI", http.StatusForbidden)
		default:
			if s.Config.MetadataHeaderRequired && !hasMetadataHeader(r) {
				writeError(w, http.StatusBadRequest, "invalid_request", "Required metadata header not specified")
				return
			}
			proxy.ServeHTTP(w, r)
		}
	})
}

// httpError is a refusal with the status upstream sends for it.
type httpError struct {
	status     int
	code       string
	message    string
	retryAfter time.Duration
}

func (e *httpError) Error() string { return e.message }

func refuse(status int, format string, args ...any) *httpError {
	return &httpError{status: status, message: fmt.Sprintf(format, args...)}
}

func (s *Server) instrument(op string, w http.ResponseWriter, r *http.Request, serve func(*http.Request) (any, string, *httpError)) {
	start := s.Clock.Now()
	body, namespace, herr := serve(r)
	// Only served resources become label values: refused requests could otherwise mint unbounded label sets.
	resource := r.URL.Query().Get("resource")
	status := http.StatusOK
	if herr != nil {
		resource = ""
		status = herr.status
		if herr.retryAfter > 0 {
			w.Header().Set("Retry-After", strconv.Itoa(int(herr.retryAfter.Round(time.Second)/time.Second)))
		}
		code := herr.code
		if code == "" {
			code = "invalid_request"
			if status >= 500 {
				code = "server_error"
			}
		}
		writeError(w, status, code, herr.message)
		s.Log.Info("refused", "op", op, "status", status, "remote", r.RemoteAddr, "reason", herr.message)
	} else {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(body)
	}
	s.Metrics.Operation(op, status, namespace, resource, s.Clock.Since(start))
}

func hasMetadataHeader(r *http.Request) bool {
	return strings.EqualFold(r.Header.Get("Metadata"), "true")
}

// serveToken is the instance metadata token endpoint for the pod at the request's source address.
func (s *Server) serveToken(r *http.Request) (any, string, *httpError) {
	if s.Config.MetadataHeaderRequired && !hasMetadataHeader(r) {
		return nil, "", refuse(http.StatusBadRequest, "Required metadata header not specified")
	}
	ip, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil || ip == "" {
		return nil, "", refuse(http.StatusInternalServerError, "request remote address is empty")
	}
	q := r.URL.Query()
	resource := q.Get("resource")
	if resource == "" {
		return nil, "", refuse(http.StatusBadRequest, "parameter resource cannot be empty")
	}
	clientID, resourceID := q.Get("client_id"), firstNonEmpty(q.Get("msi_res_id"), q.Get("mi_res_id"))

	pod, err := s.Pods.ByIP(r.Context(), ip)
	if err != nil {
		return nil, "", refuse(http.StatusInternalServerError, "failed to identify the calling pod: %v", err)
	}
	if excepted, err := s.excepted(r.Context(), pod); err != nil {
		return nil, pod.Namespace, refuse(http.StatusInternalServerError, "%v", err)
	} else if excepted {
		tok, err := s.Issuer.IMDSToken(r.Context(), clientID, resourceID, resource)
		if err != nil {
			return nil, pod.Namespace, tokenRefusal(err)
		}
		return tokenBody(tok, resource, s.Clock), pod.Namespace, nil
	}
	match, herr := s.identityFor(r.Context(), pod, clientID, resourceID)
	if herr != nil {
		return nil, pod.Namespace, herr
	}
	toks, err := s.Issuer.Tokens(r.Context(), pod, match.Identity, resource)
	if err != nil {
		s.Recorder.Eventf(match.Binding, pod, corev1.EventTypeWarning, "TokenFailed", "IssueToken",
			"pod %s/%s: %v", pod.Namespace, pod.Name, err)
		herr := tokenRefusal(err)
		if errors.Is(err, errNotAssigned) && s.Config.RetryAfterOnNoIdentity {
			herr.status, herr.retryAfter = http.StatusServiceUnavailable, 20*time.Second
		}
		return nil, pod.Namespace, herr
	}
	if len(toks) == 1 {
		return tokenBody(toks[0], resource, s.Clock), pod.Namespace, nil
	}
	bodies := make([]tokenResponse, 0, len(toks))
	for _, t := range toks {
		bodies = append(bodies, tokenBody(t, resource, s.Clock))
	}
	return bodies, pod.Namespace, nil
}

// identityFor picks the identity the pod asked for among those bound to it.
func (s *Server) identityFor(ctx context.Context, pod *corev1.Pod, clientID, resourceID string) (podidentity.Match, *httpError) {
	var bindings aadv1.AzureIdentityBindingList
	var identities aadv1.AzureIdentityList
	if err := s.Objects.List(ctx, &bindings); err != nil {
		return podidentity.Match{}, refuse(http.StatusInternalServerError, "listing bindings: %v", err)
	}
	if err := s.Objects.List(ctx, &identities); err != nil {
		return podidentity.Match{}, refuse(http.StatusInternalServerError, "listing identities: %v", err)
	}
	matches := podidentity.Matches(pod, bindings.Items, identities.Items, s.Config.ForceNamespaced)
	match, ok := podidentity.Select(matches, clientID, resourceID)
	if ok {
		return match, nil
	}
	herr := refuse(http.StatusNotFound, "no AzureIdentity matches pod %s/%s (label %s=%q, client_id %q, msi_res_id %q)",
		pod.Namespace, pod.Name, aadv1.PodLabel, pod.Labels[aadv1.PodLabel], clientID, resourceID)
	if s.Config.RetryAfterOnNoIdentity {
		herr.status, herr.retryAfter = http.StatusServiceUnavailable, 20*time.Second
	}
	return podidentity.Match{}, herr
}

func (s *Server) excepted(ctx context.Context, pod *corev1.Pod) (bool, error) {
	var exceptions aadv1.AzurePodIdentityExceptionList
	if err := s.Objects.List(ctx, &exceptions, client.InNamespace(pod.Namespace)); err != nil {
		return false, fmt.Errorf("listing exceptions: %w", err)
	}
	return podidentity.Excepted(pod, exceptions.Items), nil
}

// tokenRefusal maps a failed token fetch to upstream's statuses: 403 when Azure or the identity's configuration
// refused, 503 (with Retry-After when known) when Azure was unavailable or throttling.
func tokenRefusal(err error) *httpError {
	if errors.Is(err, errNotAssigned) {
		return refuse(http.StatusNotFound, "%v", err)
	}
	if errors.Is(err, errIdentityConfig) {
		return refuse(http.StatusForbidden, "%v", err)
	}
	if errors.Is(err, errNotThisNodesPod) {
		return refuse(http.StatusForbidden, "%v", err)
	}
	switch azauth.KindOf(err) {
	case azauth.IdentityNotFederated, azauth.IdentityNotFound, azauth.TokenInvalid:
		var azErr *azauth.Error
		if errors.As(err, &azErr) {
			return refuse(http.StatusForbidden, "failed to refresh token: %v", err)
		}
	}
	herr := refuse(http.StatusServiceUnavailable, "failed to get token: %v", err)
	herr.retryAfter = azauth.RetryAfterOf(err)
	return herr
}

// tokenResponse is the instance metadata service's token body: every field a string.
type tokenResponse struct {
	AccessToken  string `json:"access_token"`
	RefreshToken string `json:"refresh_token"`
	ExpiresIn    string `json:"expires_in"`
	ExpiresOn    string `json:"expires_on"`
	NotBefore    string `json:"not_before"`
	Resource     string `json:"resource"`
	TokenType    string `json:"token_type"`
}

func tokenBody(t azauth.Token, resource string, clk clock.PassiveClock) tokenResponse {
	notBefore := t.NotBefore
	if notBefore.IsZero() {
		notBefore = t.IssuedAt
	}
	return tokenResponse{
		AccessToken: t.Value,
		ExpiresIn:   strconv.FormatInt(int64(t.ExpiresAt.Sub(clk.Now())/time.Second), 10),
		ExpiresOn:   strconv.FormatInt(t.ExpiresAt.Unix(), 10),
		NotBefore:   strconv.FormatInt(notBefore.Unix(), 10),
		Resource:    resource,
		TokenType:   "Bearer",
	}
}

func writeError(w http.ResponseWriter, status int, code, description string) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": code, "error_description": description})
}

func firstNonEmpty(vs ...string) string {
	for _, v := range vs {
		if v != "" {
			return v
		}
	}
	return ""
}
