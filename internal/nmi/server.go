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
// possibly stale cache, and a pod being deleted gets nothing; /host/token requires a service-account token of the pod
// it asks for; hostNetwork pods are never identified by address; paths are decided on in the one spelling IMDS would
// route the same way (internal/imdspath), and only documented IMDS endpoints are passed on, never its identity
// endpoints; each pod's requests in flight are bounded; Secrets are read one by one, never listed; and tokens are
// cached and shared.
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
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/events"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"

	aadv1 "github.com/acrpull/acrpull/api/aadpodidentity/v1"
	"github.com/acrpull/acrpull/internal/azauth"
	"github.com/acrpull/acrpull/internal/imdspath"
	"github.com/acrpull/acrpull/internal/podidentity"
)

// Config is the agent's behaviour, mostly upstream NMI's flags.
type Config struct {
	// MetadataHeaderRequired refuses token requests without "Metadata: true" (upstream's default since 1.8.4): a
	// server-side request forgery cannot set it.
	MetadataHeaderRequired bool
	// BlockInstanceMetadata answers /metadata/instance (and /metadata/attested/document, the same data signed) with
	// 403 instead of passing it to the node's IMDS.
	BlockInstanceMetadata bool
	// RetryAfterOnNoIdentity answers 503 with Retry-After instead of 404 when the pod has no identity yet.
	RetryAfterOnNoIdentity bool
	// ForceNamespaced makes every identity namespaced.
	ForceNamespaced bool
	// MaxConcurrentRequestsPerPod bounds the requests one source address (a pod; node-local callers share the
	// loopback address) may have in flight; more are answered 429 with Retry-After. 0 sets no bound.
	MaxConcurrentRequestsPerPod int
	// HostTokenAudiences are the audiences a /host/token caller's service-account token may carry; empty accepts
	// the apiserver's own audiences.
	HostTokenAudiences []string
	// MICNamespace (upstream's --MICNamespace) lets upstream's MIC, running beside this agent during a migration,
	// keep reaching the node's IMDS as upstream's NMI let it: pods of this namespace whose controller is a ReplicaSet
	// named mic-* (upstream's Deployment "mic") get the node's tokens without a binding. Empty (the default here;
	// upstream's was "default") lets no pod through this way. Whoever may create pods in this namespace gets every
	// identity on the node, so it must be a namespace only cluster administrators write.
	MICNamespace string
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

// Limits of a request. Token requests are GETs without a body; only requests passed to IMDS (scheduled events'
// acknowledgements) carry one, and a small one.
const (
	maxRequestBody = 16 << 10
	// DefaultMaxConcurrentRequestsPerPod bounds the requests one source address has in flight: a pod waiting on its
	// identity may hold a request for up to the assignment wait (100 s), and SDKs ask a few at a time.
	DefaultMaxConcurrentRequestsPerPod = 16
)

// Handler routes requests by their canonical path (internal/imdspath): the agent answers the token endpoint and
// /host/token, passes a short list of documented endpoints to the node's IMDS, and refuses everything else. Every
// request first takes one of its source address's places (Config.MaxConcurrentRequestsPerPod).
func (s *Server) Handler() http.Handler {
	proxy := &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			// The path IMDS receives is the one the decision was made on: it was canonical, so r.In's path is it,
			// spelt the same; the query passes as sent (it cannot change where IIS routes the path).
			r.Out.URL = &url.URL{Scheme: s.IMDS.Scheme, Host: s.IMDS.Host, Path: r.In.URL.Path, RawQuery: r.In.URL.RawQuery}
			r.Out.Host = s.IMDS.Host
		},
		Transport: s.IMDSTransport,
	}
	route := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		raw := imdspath.RequestPath(r.URL)
		canonical, err := imdspath.Canonical(raw)
		if err != nil {
			writeError(w, http.StatusBadRequest, "invalid_request", "Invalid request path: "+strings.TrimPrefix(err.Error(), imdspath.ErrNotCanonical.Error()+": "))
			s.Log.Info("refused", "op", "path", "status", http.StatusBadRequest, "remote", r.RemoteAddr, "path", truncate(raw, 256), "reason", err.Error())
			return
		}
		// Downstream handlers read r.URL.Path: make it the canonical path, which is also what IMDS would see.
		r.URL.Path, r.URL.RawPath = canonical, ""
		switch endpoint := imdspath.Classify(canonical); endpoint {
		case imdspath.Token:
			s.instrument("token", w, r, s.serveToken)
		case imdspath.MalformedToken:
			writeError(w, http.StatusBadRequest, "invalid_request", "Invalid request")
		case imdspath.HostToken:
			s.instrument("host_token", w, r, s.serveHostToken)
		case imdspath.Instance, imdspath.Attested, imdspath.Forwarded:
			if endpoint != imdspath.Forwarded && s.Config.BlockInstanceMetadata {
				http.Error(w, "Request blocked by AAD Pod Identity NMI", http.StatusForbidden)
				return
			}
			// IMDS itself requires the header, so requiring it here costs no client anything, whatever
			// MetadataHeaderRequired says about the token endpoint.
			if !hasMetadataHeader(r) {
				writeError(w, http.StatusBadRequest, "invalid_request", "Required metadata header not specified")
				return
			}
			if !forwardableMethod(canonical, r.Method) {
				w.Header().Set("Allow", "GET, HEAD")
				writeError(w, http.StatusMethodNotAllowed, "invalid_request", "Method not allowed")
				return
			}
			proxy.ServeHTTP(w, r)
		default:
			writeError(w, http.StatusNotFound, "not_found", "The node agent neither serves nor forwards this path")
		}
	})
	return s.limited(route)
}

// forwardableMethod: IMDS is read with GET; the one write it takes is a POST acknowledging scheduled events.
func forwardableMethod(canonical, method string) bool {
	switch method {
	case http.MethodGet, http.MethodHead:
		return true
	case http.MethodPost:
		return strings.EqualFold(strings.TrimSuffix(canonical, "/"), "/metadata/scheduledevents")
	}
	return false
}

// limited bounds the body of every request and the requests each source address has in flight. A request over the
// bound is answered 429 at once, never queued: one pod asking much (or waiting long) cannot take the agent from the
// others.
func (s *Server) limited(next http.Handler) http.Handler {
	perSource := &sourceLimiter{max: s.Config.MaxConcurrentRequestsPerPod, inFlight: map[string]int{}}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ContentLength > maxRequestBody {
			writeError(w, http.StatusRequestEntityTooLarge, "invalid_request", "Request body too large")
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, maxRequestBody)
		source, _, err := net.SplitHostPort(r.RemoteAddr)
		if err != nil {
			source = r.RemoteAddr
		}
		if !perSource.acquire(source) {
			w.Header().Set("Retry-After", "1")
			writeError(w, http.StatusTooManyRequests, "too_many_requests",
				fmt.Sprintf("Too many requests in flight from %s (at most %d)", source, perSource.max))
			return
		}
		defer perSource.release(source)
		next.ServeHTTP(w, r)
	})
}

// sourceLimiter counts the requests in flight per source address; addresses with none are forgotten, so it holds
// no more entries than there are requests in flight.
type sourceLimiter struct {
	max      int
	mu       sync.Mutex
	inFlight map[string]int
}

func (l *sourceLimiter) acquire(source string) bool {
	if l.max <= 0 {
		return true
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.inFlight[source] >= l.max {
		return false
	}
	l.inFlight[source]++
	return true
}

func (l *sourceLimiter) release(source string) {
	if l.max <= 0 {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.inFlight[source]--; l.inFlight[source] <= 0 {
		delete(l.inFlight, source)
	}
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
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
	match, err := podidentity.Select(pod, matches, clientID, resourceID)
	if err == nil {
		return match, nil
	}
	if errors.Is(err, podidentity.ErrAmbiguous) {
		// The namespaces stay out of the answer: the pod's owner need not learn which other teams exist.
		s.Log.Info("refused an ambiguous match", "pod", client.ObjectKeyFromObject(pod), "namespaces", bindingNamespaces(matches))
		return podidentity.Match{}, refuse(http.StatusForbidden, "identities bound in several other namespaces match pod %s/%s (label %s=%q): "+
			"name one with client_id or msi_res_id, or bind the identity in the pod's namespace", pod.Namespace, pod.Name, aadv1.PodLabel, pod.Labels[aadv1.PodLabel])
	}
	herr := refuse(http.StatusNotFound, "no AzureIdentity matches pod %s/%s (label %s=%q, client_id %q, msi_res_id %q)%s",
		pod.Namespace, pod.Name, aadv1.PodLabel, pod.Labels[aadv1.PodLabel], clientID, resourceID, s.micHint(pod))
	if s.Config.RetryAfterOnNoIdentity {
		herr.status, herr.retryAfter = http.StatusServiceUnavailable, 20*time.Second
	}
	return podidentity.Match{}, herr
}

// micHint tells a pod that looks like upstream's MIC, refused because --MICNamespace does not name its namespace,
// which flag lets it through.
func (s *Server) micHint(pod *corev1.Pod) string {
	if !isUpstreamMIC(pod) || pod.Namespace == s.Config.MICNamespace {
		return ""
	}
	return fmt.Sprintf("; if this is upstream's MIC, start the agent with --MICNamespace=%s (chart value podIdentity.micNamespace)", pod.Namespace)
}

func bindingNamespaces(matches []podidentity.Match) []string {
	var out []string
	for _, m := range matches {
		if !slices.Contains(out, m.Binding.Namespace) {
			out = append(out, m.Binding.Namespace)
		}
	}
	return out
}

func (s *Server) excepted(ctx context.Context, pod *corev1.Pod) (bool, error) {
	if s.Config.MICNamespace != "" && pod.Namespace == s.Config.MICNamespace && isUpstreamMIC(pod) {
		return true, nil
	}
	var exceptions aadv1.AzurePodIdentityExceptionList
	if err := s.Objects.List(ctx, &exceptions, client.InNamespace(pod.Namespace)); err != nil {
		return false, fmt.Errorf("listing exceptions: %w", err)
	}
	return podidentity.Excepted(pod, exceptions.Items), nil
}

// isUpstreamMIC: a ReplicaSet named mic-* controls pod, as upstream's manifests' Deployment "mic" makes its pods.
// Upstream matched any ReplicaSet owner reference whose name began with "mic"; the controller reference of
// apps/v1 and the dash are what its manifests produce.
func isUpstreamMIC(pod *corev1.Pod) bool {
	owner := metav1.GetControllerOf(pod)
	return owner != nil && owner.APIVersion == "apps/v1" && owner.Kind == "ReplicaSet" && strings.HasPrefix(owner.Name, "mic-")
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
