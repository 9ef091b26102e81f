/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

package chart_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/clock"

	aadv1 "github.com/acrpull/acrpull/api/aadpodidentity/v1"
	"github.com/acrpull/acrpull/internal/azauth"
	"github.com/acrpull/acrpull/internal/harness/testenv"
	"github.com/acrpull/acrpull/internal/nmi"
	"github.com/acrpull/acrpull/internal/tokencache"
)

// The policy messages, as the chart words them for podIdentityValues' audience.
const (
	msgNMIAudience = "the node agent may only request service-account tokens with exactly one audience, api://CustomExchange"
	msgNMIBound    = "the node agent may only request service-account tokens bound to a pod"
	msgNMIExpiry   = "the node agent may only request service-account tokens that expire within 600 seconds"
)

// assertingAzure stands in for Entra ID: it asks the issuer for the pod-bound service-account token, as the real
// client does when it trades it, and reports what it got.
type assertingAzure struct {
	nmi.AzureClient
	assertions []string
}

func (a *assertingAzure) WorkloadIdentityToken(ctx context.Context, _ azauth.Cloud, id azauth.WorkloadIdentity, _ string) (azauth.Token, error) {
	assertion, err := id.Assertion(ctx)
	if err != nil {
		return azauth.Token{}, err
	}
	a.assertions = append(a.assertions, assertion)
	return azauth.Token{Value: "entra-token", IssuedAt: time.Now(), ExpiresAt: time.Now().Add(time.Hour)}, nil
}

// The node agent may create tokens for every service account. With the chart's policy, a request made with the
// agent's own service-account token is refused unless it is what federation needs: exactly the configured audience,
// bound to a pod, expiring within 600 s. So root on a node, holding the agent's token, cannot mint an apiserver token
// of a privileged account. The agent's own issuer, making its real request through that token, is allowed.
func TestNodeAgentTokenRequestPolicy(t *testing.T) {
	ctx := context.Background()
	w := installPodIdentity(t)
	g := NewWithT(t)

	// A privileged account somewhere, with a pod running as it: what an attacker would want a token of.
	for _, sa := range []string{"app", "cluster-admin-sa"} {
		g.Expect(env.Client.Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: w.apps, Name: sa}})).To(Succeed())
	}
	pods := map[string]*corev1.Pod{}
	for _, sa := range []string{"app", "cluster-admin-sa"} {
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: w.apps, Name: sa + "-pod"},
			Spec: corev1.PodSpec{ServiceAccountName: sa, NodeName: "node-a", Containers: []corev1.Container{{Name: "c", Image: "c"}}}}
		g.Expect(env.Client.Create(ctx, p)).To(Succeed())
		pods[sa] = p
	}
	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: w.apps, Name: "anchor"}}
	g.Expect(env.Client.Create(ctx, secret)).To(Succeed())

	podRef := func(p *corev1.Pod) *authenticationv1.BoundObjectReference {
		return &authenticationv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: p.Name, UID: p.UID}
	}
	request := func(sa string, spec authenticationv1.TokenRequestSpec) error {
		tr := &authenticationv1.TokenRequest{Spec: spec}
		return w.agent.SubResource("token").Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: w.apps, Name: sa}}, tr)
	}
	// The policy takes effect a moment after it is created: an apiserver-audience request until one is refused (each
	// probe that slips through mints a short token of an account in this test's namespace only).
	g.Eventually(func() error {
		return request("cluster-admin-sa", authenticationv1.TokenRequestSpec{Audiences: []string{testenv.Issuer},
			ExpirationSeconds: ptrTo(int64(600)), BoundObjectRef: podRef(pods["cluster-admin-sa"])})
	}).WithTimeout(activationWindow).Should(MatchError(ContainSubstring(msgNMIAudience)))

	for name, tc := range map[string]struct {
		sa   string
		spec authenticationv1.TokenRequestSpec
		want string
	}{
		"(a) an apiserver-audience token of another account": {sa: "cluster-admin-sa", want: msgNMIAudience,
			spec: authenticationv1.TokenRequestSpec{Audiences: []string{testenv.Issuer}, ExpirationSeconds: ptrTo(int64(600)),
				BoundObjectRef: podRef(pods["cluster-admin-sa"])}},
		"no audience (the apiserver's, by default)": {sa: "cluster-admin-sa", want: msgNMIAudience,
			spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptrTo(int64(600)), BoundObjectRef: podRef(pods["cluster-admin-sa"])}},
		"(b) no boundObjectRef": {sa: "app", want: msgNMIBound,
			spec: authenticationv1.TokenRequestSpec{Audiences: []string{"api://CustomExchange"}, ExpirationSeconds: ptrTo(int64(600))}},
		"(c) bound to a Secret": {sa: "app", want: msgNMIBound,
			spec: authenticationv1.TokenRequestSpec{Audiences: []string{"api://CustomExchange"}, ExpirationSeconds: ptrTo(int64(600)),
				BoundObjectRef: &authenticationv1.BoundObjectReference{Kind: "Secret", APIVersion: "v1", Name: secret.Name, UID: secret.UID}}},
		"bound to a pod by name only (no UID)": {sa: "app", want: msgNMIBound,
			spec: authenticationv1.TokenRequestSpec{Audiences: []string{"api://CustomExchange"}, ExpirationSeconds: ptrTo(int64(600)),
				BoundObjectRef: &authenticationv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: pods["app"].Name}}},
		"(d) a one-day expiry": {sa: "app", want: msgNMIExpiry,
			spec: authenticationv1.TokenRequestSpec{Audiences: []string{"api://CustomExchange"}, ExpirationSeconds: ptrTo(int64(86400)),
				BoundObjectRef: podRef(pods["app"])}},
		"no expiry (the apiserver's default, an hour)": {sa: "app", want: msgNMIExpiry,
			spec: authenticationv1.TokenRequestSpec{Audiences: []string{"api://CustomExchange"}, BoundObjectRef: podRef(pods["app"])}},
		"(e) two audiences": {sa: "app", want: msgNMIAudience,
			spec: authenticationv1.TokenRequestSpec{Audiences: []string{"api://CustomExchange", testenv.Issuer},
				ExpirationSeconds: ptrTo(int64(600)), BoundObjectRef: podRef(pods["app"])}},
	} {
		t.Run(name, func(t *testing.T) {
			g := NewWithT(t)
			err := request(tc.sa, tc.spec)
			g.Expect(err).To(MatchError(ContainSubstring(tc.want)))
		})
	}

	t.Run("an admin is not affected", func(t *testing.T) {
		g := NewWithT(t)
		tr := &authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{Audiences: []string{testenv.Issuer}}}
		g.Expect(env.Client.SubResource("token").Create(ctx,
			&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: w.apps, Name: "app"}}, tr)).To(Succeed())
	})

	// The agent's real request: its issuer, with the agent's token as its client, trading a token of the pod's account
	// bound to the pod.
	t.Run("the agent's own federation request", func(t *testing.T) {
		g := NewWithT(t)
		azure := &assertingAzure{}
		issuer := &nmi.Issuer{Azure: azure, Cache: tokencache.New(clock.RealClock{}, nil), Clock: clock.RealClock{},
			Kube: w.agent, Type0Source: nmi.SourceFederation, Audience: "api://CustomExchange", DefaultTenantID: tenantID,
			Cloud: azauth.PublicCloud, NodeName: "node-a"}
		id := &aadv1.AzureIdentity{ObjectMeta: metav1.ObjectMeta{Namespace: w.apps, Name: "web"},
			Spec: aadv1.AzureIdentitySpec{Type: aadv1.UserAssignedMSI, ClientID: federationID}}
		toks, err := issuer.Tokens(ctx, pods["app"], id, "https://vault.azure.net")
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(toks).To(HaveLen(1))
		g.Expect(azure.assertions).To(HaveLen(1))
		review := &authenticationv1.TokenReview{Spec: authenticationv1.TokenReviewSpec{Token: azure.assertions[0],
			Audiences: []string{"api://CustomExchange"}}}
		g.Expect(env.Client.Create(ctx, review)).To(Succeed())
		g.Expect(review.Status.Authenticated).To(BeTrue(), "%+v", review.Status)
		g.Expect(review.Status.User.Username).To(Equal(fmt.Sprintf("system:serviceaccount:%s:app", w.apps)))
	})
}
