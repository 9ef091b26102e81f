/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

package acrpullbinding_test

import (
	"fmt"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	acrv1beta2 "github.com/acrpull/acrpull/api/v1beta2"
	"github.com/acrpull/acrpull/internal/harness/azurefake"
)

// Every way an Azure endpoint can fail, for longer than a refresh window: the secret written before the fault is
// never deleted or overwritten, the condition names the cause, retries stay few, and the binding recovers promptly
// once the fault clears.
func TestEveryKindOfAzureFaultKeepsTheSecretAndRecovers(t *testing.T) {
	cloud.SetLifetimes(azurefake.Lifetimes{Entra: time.Hour, ACRRefresh: 3 * time.Hour, ACRAccess: 10 * time.Second})
	defer cloud.SetLifetimes(azurefake.Lifetimes{})
	ns := newNamespace(t)
	serviceAccount(t, ns, "default", "")
	cases := []struct {
		name   string
		fault  azurefake.Fault
		reason string
	}{
		{"server error", azurefake.Fault{Status: 503}, acrv1beta2.ReasonAzureUnavailable},
		{"throttled", azurefake.Fault{Status: 429, RetryAfter: 2 * time.Second}, acrv1beta2.ReasonAzureThrottled},
		{"timeout", azurefake.Fault{Latency: 5 * time.Second}, acrv1beta2.ReasonAzureUnavailable},
		{"malformed JSON", azurefake.Fault{Malformed: true}, acrv1beta2.ReasonAzureUnavailable},
		{"token without exp", azurefake.Fault{NoExp: true}, acrv1beta2.ReasonTokenInvalid},
		{"TLS errors", azurefake.Fault{TLS: true}, acrv1beta2.ReasonAzureUnavailable},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			name := fmt.Sprintf("fault-%d", i)
			b := managedIdentityBinding(ns, name, "default", fmt.Sprintf("repository:alice:pull repository:%s:pull", name))
			create(t, b)
			deleteAtEnd(t, b)
			eventuallyReady(t, b, metav1.ConditionTrue, acrv1beta2.ReasonTokenMinted)
			before := getSecret(g, ns, "acr-pull-"+name)

			cloud.ResetCounts()
			cloud.SetFault(azurefake.ACRToken, tc.fault)
			eventuallyReady(t, b, metav1.ConditionFalse, tc.reason)
			time.Sleep(6 * time.Second) // past the old token's expiry: the outage outlasts the refresh window
			after := getSecret(g, ns, "acr-pull-"+name)
			g.Expect(after.UID).To(Equal(before.UID))
			g.Expect(after.Data).To(Equal(before.Data), "the last good secret stays as it was, never garbage")
			g.Expect(cloud.Count(azurefake.ACRToken)).To(BeNumerically("<=", 10), "retries back off")
			g.Expect(readyCondition(g, b).Message).NotTo(ContainSubstring("eyJ"), "no token in the message")

			cloud.ClearFaults()
			recoveredBy := time.Now().Add(10 * time.Second)
			eventuallyReady(t, b, metav1.ConditionTrue, acrv1beta2.ReasonTokenMinted)
			g.Expect(time.Now()).To(BeTemporally("<", recoveredBy), "recovery within one backoff step")
			g.Expect(pull(ns, "acr-pull-"+name, "alice")).To(Succeed())
		})
	}
}
