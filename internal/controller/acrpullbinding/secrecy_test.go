/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

package acrpullbinding_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	acrv1beta1 "github.com/acrpull/acrpull/api/v1beta1"
	acrv1beta2 "github.com/acrpull/acrpull/api/v1beta2"
	"github.com/acrpull/acrpull/internal/controller/acrpullbinding"
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

// tokensPublished fails when a token the controller handled appears in its log, in an Event or in a binding's status.
// TestMain runs it after the whole suite, so every success and every kind of failure has been logged, evented and
// written by then; a run of only some tests (-run) skips it, since it could prove nothing.
func tokensPublished(ctx context.Context) error {
	secrets := &corev1.SecretList{}
	if err := k8s.List(ctx, secrets, client.HasLabels{"acr.microsoft.com/binding"}); err != nil {
		return err
	}
	var tokens []string
	for _, s := range secrets.Items {
		for server := range registriesIn(s.Data[corev1.DockerConfigJsonKey]) {
			if e, err := dockerconfig.Lookup(s.Data[corev1.DockerConfigJsonKey], server); err == nil && e.Password != "" {
				tokens = append(tokens, e.Password)
			}
		}
	}
	if len(tokens) <= 20 {
		return fmt.Errorf("the suite minted %d tokens; the scan needs many to prove anything", len(tokens))
	}
	published := []string{controllerLog.String()}
	events := &eventsv1.EventList{}
	if err := k8s.List(ctx, events); err != nil {
		return err
	}
	for _, e := range events.Items {
		published = append(published, e.Note, e.Reason)
	}
	v2 := &acrv1beta2.AcrPullBindingList{}
	if err := k8s.List(ctx, v2); err != nil {
		return err
	}
	for _, b := range v2.Items {
		raw, _ := json.Marshal(b.Status)
		published = append(published, string(raw))
	}
	v1 := &acrv1beta1.AcrPullBindingList{}
	if err := k8s.List(ctx, v1); err != nil {
		return err
	}
	for _, b := range v1.Items {
		raw, _ := json.Marshal(b.Status)
		published = append(published, string(raw))
	}
	if len(controllerLog.String()) <= 1000 {
		return errors.New("the controller logged almost nothing; the scan would prove nothing")
	}
	all := strings.Join(published, "\n")
	credentials, err := servicePrincipalCredentials(ctx)
	if err != nil {
		return err
	}
	for _, c := range credentials {
		if strings.Contains(all, c) {
			return errors.New("a service principal's credential (or part of one) was published in the log, an Event or a status")
		}
	}
	for _, tok := range tokens {
		// Any 40-character piece of a token is as good as a leak.
		for _, piece := range []string{tok, tok[len(tok)-40:], tok[len(tok)/2 : len(tok)/2+40]} {
			if strings.Contains(all, piece) {
				return errors.New("a token (or part of one) was published in the log, an Event or a status")
			}
		}
	}
	return nil
}

// deletedCredentials are client secrets the service-principal tests put in Secrets they later change or delete.
var deletedCredentials = []string{"first~secret.value", "not~the.secret"}

// servicePrincipalCredentials are the credentials (client secrets, passwords, and pieces of keys and PKCS#12
// bundles) of every service-principal Secret the suite left, and of those it changed or deleted.
func servicePrincipalCredentials(ctx context.Context) ([]string, error) {
	secrets := &corev1.SecretList{}
	if err := k8s.List(ctx, secrets, client.HasLabels{acrpullbinding.ServicePrincipalLabel}); err != nil {
		return nil, err
	}
	out := slices.Clone(deletedCredentials)
	for _, s := range secrets.Items {
		for key, value := range s.Data {
			switch {
			case key == corev1.TLSCertKey:
				// The certificate is public.
			case len(value) > 200:
				// Any 40 characters from inside a key or bundle (base64 of it, as a log would quote bytes).
				encoded := base64.StdEncoding.EncodeToString(value)
				out = append(out, string(value[len(value)/2:len(value)/2+40]), encoded[len(encoded)/2:len(encoded)/2+40])
			default:
				out = append(out, string(value))
			}
		}
	}
	if len(out) < 6 {
		return nil, fmt.Errorf("the suite left %d service-principal credentials; the scan needs some to prove anything", len(out))
	}
	return out, nil
}

func registriesIn(payload []byte) map[string]struct{} {
	var cfg struct {
		Auths map[string]struct{} `json:"auths"`
	}
	_ = json.Unmarshal(payload, &cfg)
	return cfg.Auths
}
