/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

package nmi

import (
	"net"
	"net/http"
	"strings"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
)

// Extra keys the apiserver puts on pod-bound service-account tokens.
const (
	podNameExtra = "authentication.kubernetes.io/pod-name"
	podUIDExtra  = "authentication.kubernetes.io/pod-uid"
)

// hostTokenResponse is upstream's /host/token body.
type hostTokenResponse struct {
	Token    tokenResponse `json:"token"`
	ClientID string        `json:"clientid"`
}

// serveHostToken serves node-local callers (CSI drivers) that ask on behalf of a pod named in the podns and podname
// headers. Upstream trusted those headers from any process on the node; here the caller must also present, as a
// bearer token, a service-account token the apiserver confirms was issued for that pod's account and bound to that
// pod (kubelet and CSI token requests issue exactly such tokens).
func (s *Server) serveHostToken(r *http.Request) (any, string, *httpError) {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil || !net.ParseIP(host).IsLoopback() {
		return nil, "", refuse(http.StatusInternalServerError, "/host/token is served to node-local callers only")
	}
	podNS, podName := r.Header.Get("podns"), r.Header.Get("podname")
	if podNS == "" || podName == "" {
		return nil, "", refuse(http.StatusBadRequest, "missing podname and podns headers")
	}
	resource := r.URL.Query().Get("resource")
	if resource == "" {
		return nil, podNS, refuse(http.StatusBadRequest, "parameter resource cannot be empty")
	}
	bearer, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok || bearer == "" {
		herr := refuse(http.StatusUnauthorized, "a service-account token of pod %s/%s is required as a bearer token", podNS, podName)
		herr.code = "invalid_client"
		return nil, podNS, herr
	}
	pod := &corev1.Pod{}
	if err := s.Kube.Get(r.Context(), types.NamespacedName{Namespace: podNS, Name: podName}, pod); err != nil {
		return nil, podNS, refuse(http.StatusNotFound, "pod %s/%s: %v", podNS, podName, err)
	}
	if herr := s.reviewPodToken(r, bearer, pod); herr != nil {
		return nil, podNS, herr
	}
	match, herr := s.identityFor(r.Context(), pod, r.URL.Query().Get("client_id"), "")
	if herr != nil {
		return nil, podNS, herr
	}
	toks, err := s.Issuer.Tokens(r.Context(), pod, match.Identity, resource)
	if err != nil {
		return nil, podNS, tokenRefusal(err)
	}
	return hostTokenResponse{Token: tokenBody(toks[0], resource, s.Clock), ClientID: match.Identity.Spec.ClientID}, podNS, nil
}

// reviewPodToken asks the apiserver whether bearer is a live token of pod's service account bound to pod itself.
func (s *Server) reviewPodToken(r *http.Request, bearer string, pod *corev1.Pod) *httpError {
	review := &authenticationv1.TokenReview{Spec: authenticationv1.TokenReviewSpec{Token: bearer, Audiences: s.Config.HostTokenAudiences}}
	if err := s.Kube.Create(r.Context(), review); err != nil {
		return refuse(http.StatusInternalServerError, "reviewing the caller's token: %v", err)
	}
	sa := pod.Spec.ServiceAccountName
	if sa == "" {
		sa = "default"
	}
	st := review.Status
	denied := func(why string) *httpError {
		herr := refuse(http.StatusForbidden, "caller is not pod %s/%s: %s", pod.Namespace, pod.Name, why)
		herr.code = "invalid_client"
		return herr
	}
	switch {
	case !st.Authenticated:
		herr := refuse(http.StatusUnauthorized, "the bearer token was not accepted by the apiserver")
		herr.code = "invalid_client"
		return herr
	case st.User.Username != "system:serviceaccount:"+pod.Namespace+":"+sa:
		return denied("the token belongs to another account")
	case !extraIs(st.User.Extra, podNameExtra, pod.Name) || !extraIs(st.User.Extra, podUIDExtra, string(pod.UID)):
		return denied("the token is not bound to this pod")
	}
	return nil
}

func extraIs(extra map[string]authenticationv1.ExtraValue, key, want string) bool {
	v := extra[key]
	return len(v) == 1 && v[0] == want
}
