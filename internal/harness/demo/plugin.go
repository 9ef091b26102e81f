/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

package demo

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"sigs.k8s.io/controller-runtime/pkg/client"

	acrv1beta2 "github.com/acrpull/acrpull/api/v1beta2"
	"github.com/acrpull/acrpull/internal/pulldiagnosis"
)

// askPlugin makes one healthy pod and one that lost the classic race (created before the controller attached its
// account's secret), and asks `kubectl acrpull` about each, through the same entry point the binary runs.
func (d *demo) askPlugin(ctx context.Context) error {
	pod := func(name, account string) *corev1.Pod {
		return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: appNamespace, Name: name}, Spec: corev1.PodSpec{
			ServiceAccountName: account, Containers: []corev1.Container{{Name: "app", Image: registryHost + "/" + permittedRepo + ":" + imageTag}}}}
	}
	if err := d.env.Client.Create(ctx, pod("healthy", "app")); err != nil {
		return err
	}
	// The race: a new account and its pod first, the binding for that account after.
	if err := d.env.Client.Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: appNamespace, Name: "late"}}); err != nil {
		return err
	}
	if err := d.env.Client.Create(ctx, pod("early", "late")); err != nil {
		return err
	}
	binding := &acrv1beta2.AcrPullBinding{ObjectMeta: metav1.ObjectMeta{Namespace: appNamespace, Name: "late-pull"},
		Spec: acrv1beta2.AcrPullBindingSpec{
			ACR:                acrv1beta2.AcrConfiguration{Server: registryHost, Scope: "repository:" + permittedRepo + ":pull", Environment: "PublicCloud"},
			Auth:               acrv1beta2.AuthenticationMethod{ManagedIdentity: &acrv1beta2.ManagedIdentityAuth{ResourceID: identityResource}},
			ServiceAccountName: "late"}}
	if err := d.env.Client.Create(ctx, binding); err != nil {
		return err
	}
	err := d.poll(ctx, time.Minute, func() error {
		sa := &corev1.ServiceAccount{}
		if err := d.env.Client.Get(ctx, client.ObjectKey{Namespace: appNamespace, Name: "late"}, sa); err != nil {
			return err
		}
		if !slices.Contains(sa.ImagePullSecrets, corev1.LocalObjectReference{Name: "acr-pull-late-pull"}) {
			return fmt.Errorf("service account late does not list acr-pull-late-pull yet")
		}
		return nil
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(d.out, "      pod healthy (account app) and pod early (account late, created before binding late-pull attached its secret)\n")
	for _, ask := range []struct{ pod, want string }{{"healthy", "Reason:  " + pulldiagnosis.ReasonHealthy}, {"early", "Reason:  " + pulldiagnosis.ReasonPodCreatedBeforeSecret}} {
		answer, err := d.plugin(ctx, "why", ask.pod, "-n", appNamespace)
		if err != nil {
			return err
		}
		if !strings.Contains(answer, ask.want) {
			return fmt.Errorf("kubectl acrpull why %s answered without %q", ask.pod, ask.want)
		}
	}
	_, err = d.plugin(ctx, "status", "-n", appNamespace)
	return err
}

// plugin runs `kubectl acrpull ARGS` with the demo's kubeconfig and prints the command and its answer.
func (d *demo) plugin(ctx context.Context, args ...string) (string, error) {
	var out bytes.Buffer
	err := pulldiagnosis.Run(ctx, append([]string{"--kubeconfig", d.env.KubeconfigPath}, args...),
		genericiooptions.IOStreams{In: &bytes.Buffer{}, Out: &out, ErrOut: &out})
	fmt.Fprintf(d.out, "      $ kubectl acrpull %s\n%s", strings.Join(args, " "), indent(out.String()))
	if err != nil {
		return out.String(), fmt.Errorf("kubectl acrpull %s: %w", strings.Join(args, " "), err)
	}
	return out.String(), nil
}
