/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

package acrpullbinding_test

// This file sorts last, so its tests run after every other test of the suite has made the controller log, emit
// Events and write statuses for successes and every kind of failure.

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	acrv1beta1 "github.com/acrpull/acrpull/api/v1beta1"
	acrv1beta2 "github.com/acrpull/acrpull/api/v1beta2"
	"github.com/acrpull/acrpull/internal/dockerconfig"
)

// A workload-identity binding names a service account of its own namespace only: a federated account of the same
// name elsewhere is never used, and no token is requested for it.
func TestBindingsCannotReachIntoOtherNamespaces(t *testing.T) {
	theirs := newNamespace(t)
	serviceAccount(t, theirs, "puller", pullerClientID)
	ours := newNamespace(t)
	serviceAccount(t, ours, "default", "")
	b := workloadIdentityBinding(ours, "reach", "puller", "default", "repository:alice:pull")
	create(t, b)
	eventuallyReady(t, b, metav1.ConditionFalse, acrv1beta2.ReasonServiceAccountNotFound)
	g := NewWithT(t)
	g.Expect(pullSecretNames(g, theirs, "puller")).To(BeEmpty())
	g.Expect(k8s.Get(context.Background(), client.ObjectKey{Namespace: ours, Name: "acr-pull-reach"}, &corev1.Secret{})).
		To(MatchError(ContainSubstring("not found")))
}

// No token the controller handled appears in its logs, in Events or in any binding's status.
func TestTokensNeverAppearInLogsEventsOrStatus(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	secrets := &corev1.SecretList{}
	g.Expect(k8s.List(ctx, secrets, client.HasLabels{"acr.microsoft.com/binding"})).To(Succeed())
	var tokens []string
	for _, s := range secrets.Items {
		for server := range registriesIn(s.Data[corev1.DockerConfigJsonKey]) {
			if e, err := dockerconfig.Lookup(s.Data[corev1.DockerConfigJsonKey], server); err == nil && e.Password != "" {
				tokens = append(tokens, e.Password)
			}
		}
	}
	g.Expect(len(tokens)).To(BeNumerically(">", 20), "the suite minted tokens for many bindings")

	var published []string
	published = append(published, controllerLog.String())
	events := &eventsv1.EventList{}
	g.Expect(k8s.List(ctx, events)).To(Succeed())
	for _, e := range events.Items {
		published = append(published, e.Note, e.Reason)
	}
	v2 := &acrv1beta2.AcrPullBindingList{}
	g.Expect(k8s.List(ctx, v2)).To(Succeed())
	for _, b := range v2.Items {
		raw, _ := json.Marshal(b.Status)
		published = append(published, string(raw))
	}
	v1 := &acrv1beta1.AcrPullBindingList{}
	g.Expect(k8s.List(ctx, v1)).To(Succeed())
	for _, b := range v1.Items {
		raw, _ := json.Marshal(b.Status)
		published = append(published, string(raw))
	}
	all := strings.Join(published, "\n")
	g.Expect(len(controllerLog.String())).To(BeNumerically(">", 1000), "the controller logged")
	for _, tok := range tokens {
		// Any 40-character piece of a token is as good as a leak.
		for _, piece := range []string{tok, tok[len(tok)-40:], tok[len(tok)/2 : len(tok)/2+40]} {
			if strings.Contains(all, piece) {
				t.Fatalf("a token (or part of one) was published")
			}
		}
	}
}

func registriesIn(payload []byte) map[string]struct{} {
	var cfg struct {
		Auths map[string]struct{} `json:"auths"`
	}
	_ = json.Unmarshal(payload, &cfg)
	return cfg.Auths
}
