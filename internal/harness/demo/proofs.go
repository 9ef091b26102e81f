/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

package demo

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	acrv1beta1 "github.com/acrpull/acrpull/api/v1beta1"
	acrv1beta2 "github.com/acrpull/acrpull/api/v1beta2"
)

// examples are the seed READMEs' manifests, filled in with the demo's values and otherwise unchanged.
const examples = `
apiVersion: v1
kind: Namespace
metadata:
  name: application
---
apiVersion: v1
kind: ServiceAccount
metadata:
  name: puller
  namespace: application
  annotations:
    azure.workload.identity/client-id: ` + identityClientID + `
    azure.workload.identity/tenant-id: ` + tenantID + `
---
apiVersion: v1
kind: ServiceAccount
metadata:
  name: app
  namespace: application
---
apiVersion: v1
kind: ServiceAccount
metadata:
  name: default
  namespace: application
---
apiVersion: acrpull.microsoft.com/v1beta2
kind: AcrPullBinding
metadata:
  name: pull-binding
  namespace: application
spec:
  acr:
    environment: PublicCloud
    scope: repository:` + permittedRepo + `:pull
    server: ` + registryHost + `
  auth:
    workloadIdentity:
      serviceAccountRef: puller
  serviceAccountName: app
---
apiVersion: acrpull.microsoft.com/v1beta2
kind: AcrPullBinding
metadata:
  name: pull-binding-mi
  namespace: application
spec:
  acr:
    environment: PublicCloud
    scope: repository:` + permittedRepo + `:pull
    server: ` + registryHost + `
  auth:
    managedIdentity:
      resourceID: ` + identityResource + `
  serviceAccountName: app
---
apiVersion: msi-acrpull.microsoft.com/v1beta1
kind: AcrPullBinding
metadata:
  name: acrpulltest
  namespace: application
spec:
  acrServer: ` + registryHost + `
  managedIdentityResourceID: ` + identityResource + `
`

// secrets the examples produce, by binding.
var secrets = []struct{ binding, secret, serviceAccount string }{
	{"pull-binding", "acr-pull-pull-binding", "app"},
	{"pull-binding-mi", "acr-pull-pull-binding-mi", "app"},
	{"acrpulltest", "acrpulltest-msi-acrpull-secret", "default"},
}

func (d *demo) applyExamples(ctx context.Context) error {
	path := filepath.Join(d.opts.WorkDir, "examples.yaml")
	if err := os.WriteFile(path, []byte(examples), 0o644); err != nil {
		return err
	}
	out, err := d.kubectl(ctx, "apply", "-f", path)
	fmt.Fprint(d.out, indent(out))
	return err
}

// poll runs check until it succeeds, the controller dies, or the timeout passes.
func (d *demo) poll(ctx context.Context, timeout time.Duration, check func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := check()
		if err == nil {
			return nil
		}
		if dead := d.controllerAlive(); dead != nil {
			return dead
		}
		if time.Now().After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
}

func (d *demo) waitReady(ctx context.Context) error {
	return d.poll(ctx, 2*time.Minute, func() error {
		var states []readiness
		v2 := &acrv1beta2.AcrPullBindingList{}
		if err := d.env.Client.List(ctx, v2, client.InNamespace(appNamespace)); err != nil {
			return err
		}
		for _, b := range v2.Items {
			states = append(states, readinessOf(b.Name, b.Status.Conditions))
			// The registry proved each scoped credential pulls its repository (kubectl get apb's VERIFIED column).
			if v := meta.FindStatusCondition(b.Status.Conditions, acrv1beta2.ConditionVerified); v == nil || v.Status != metav1.ConditionTrue {
				return fmt.Errorf("binding %s not Verified yet", b.Name)
			}
		}
		v1 := &acrv1beta1.AcrPullBindingList{}
		if err := d.env.Client.List(ctx, v1, client.InNamespace(appNamespace)); err != nil {
			return err
		}
		for _, b := range v1.Items {
			states = append(states, readinessOf(b.Name, b.Status.Conditions))
		}
		if len(states) != len(secrets) {
			return fmt.Errorf("%d bindings, want %d", len(states), len(secrets))
		}
		for _, st := range states {
			if st.status != metav1.ConditionTrue {
				return fmt.Errorf("binding %s not Ready: %s", st.name, st.message)
			}
		}
		return nil
	})
}

// readiness is a binding's Ready condition, summarized.
type readiness struct {
	name    string
	status  metav1.ConditionStatus
	message string
}

func readinessOf(name string, conds []metav1.Condition) readiness {
	c := meta.FindStatusCondition(conds, acrv1beta2.ConditionReady)
	if c == nil {
		return readiness{name, metav1.ConditionUnknown, "no Ready condition yet"}
	}
	return readiness{name, c.Status, c.Reason + ": " + c.Message}
}

func (d *demo) show(ctx context.Context) error {
	for _, args := range [][]string{
		{"get", "apb", "-n", appNamespace, "-o", "wide"},
		{"get", "acrpullbindings.msi-acrpull.microsoft.com", "-n", appNamespace},
		{"get", "secrets", "-n", appNamespace, "-l", "acr.microsoft.com/binding", "-L", "acr.microsoft.com/binding"},
		{"get", "serviceaccounts", "-n", appNamespace, "-o", "custom-columns=SERVICEACCOUNT:.metadata.name,IMAGEPULLSECRETS:.imagePullSecrets[*].name"},
	} {
		out, err := d.kubectl(ctx, args...)
		if err != nil {
			return err
		}
		fmt.Fprintf(d.out, "      $ kubectl %s\n%s", strings.Join(args, " "), indent(out))
	}
	return nil
}

func (d *demo) pull(ctx context.Context, secret, repo string) error {
	s := &corev1.Secret{}
	if err := d.env.Client.Get(ctx, client.ObjectKey{Namespace: appNamespace, Name: secret}, s); err != nil {
		return err
	}
	return d.registry.Pull(ctx, repo, imageTag, s.Data[corev1.DockerConfigJsonKey])
}

func (d *demo) provePulls(ctx context.Context) error {
	for _, s := range secrets {
		ok := d.pull(ctx, s.secret, permittedRepo)
		denied := d.pull(ctx, s.secret, forbiddenRepo)
		fmt.Fprintf(d.out, "      %-32s pull %s/%s:%s -> %s\n", s.secret, registryHost, permittedRepo, imageTag, verdict(ok))
		fmt.Fprintf(d.out, "      %-32s pull %s/%s:%s -> %s\n", "", registryHost, forbiddenRepo, imageTag, verdict(denied))
		if ok != nil {
			return fmt.Errorf("%s cannot pull %s: %w", s.secret, permittedRepo, ok)
		}
		if denied == nil {
			return fmt.Errorf("%s pulled %s, which its identity may not", s.secret, forbiddenRepo)
		}
	}
	// And the path pods take: ServiceAccount admission copies the secrets into a new pod.
	pod := &corev1.Pod{}
	pod.Namespace, pod.GenerateName = appNamespace, "app-"
	pod.Spec.ServiceAccountName = "app"
	pod.Spec.Containers = []corev1.Container{{Name: "app", Image: registryHost + "/" + permittedRepo + ":" + imageTag}}
	if err := d.env.Client.Create(ctx, pod); err != nil {
		return err
	}
	var names []string
	for _, r := range pod.Spec.ImagePullSecrets {
		names = append(names, r.Name)
	}
	fmt.Fprintf(d.out, "      a new pod with service account app gets imagePullSecrets %v\n", names)
	if len(names) != 2 {
		return fmt.Errorf("pod got imagePullSecrets %v, want the two v1beta2 secrets", names)
	}
	return nil
}

func verdict(err error) string {
	if err == nil {
		return "pulled"
	}
	msg := err.Error()
	if len(msg) > 110 {
		msg = msg[:110] + "..."
	}
	return "denied: " + msg
}

func (d *demo) proveRefresh(ctx context.Context) error {
	key := client.ObjectKey{Namespace: appNamespace, Name: "acr-pull-pull-binding"}
	before := &corev1.Secret{}
	if err := d.env.Client.Get(ctx, key, before); err != nil {
		return err
	}
	fmt.Fprintf(d.out, "      %s: uid %s, token expires %s (access tokens live %s in this demo)\n",
		key.Name, before.UID, before.Annotations["acr.microsoft.com/token.expiry"], d.opts.AccessTokenLifetime)
	after := &corev1.Secret{}
	err := d.poll(ctx, 2*d.opts.AccessTokenLifetime, func() error {
		if err := d.env.Client.Get(ctx, key, after); err != nil {
			return err
		}
		if after.Annotations["acr.microsoft.com/token.expiry"] == before.Annotations["acr.microsoft.com/token.expiry"] {
			return fmt.Errorf("%s not refreshed yet", key.Name)
		}
		return nil
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(d.out, "      %s: uid %s, token expires %s (refreshed in place)\n",
		key.Name, after.UID, after.Annotations["acr.microsoft.com/token.expiry"])
	if after.UID != before.UID {
		return fmt.Errorf("the secret was recreated (uid %s -> %s)", before.UID, after.UID)
	}
	if err := d.pull(ctx, key.Name, permittedRepo); err != nil {
		return fmt.Errorf("the refreshed secret does not pull: %w", err)
	}
	fmt.Fprintf(d.out, "      the refreshed secret pulls %s\n", permittedRepo)
	return nil
}

func (d *demo) proveDelete(ctx context.Context) error {
	out, err := d.kubectl(ctx, "delete", "acrpullbinding.acrpull.microsoft.com", "pull-binding", "-n", appNamespace, "--wait=true", "--timeout=60s")
	fmt.Fprint(d.out, indent(out))
	if err != nil {
		return err
	}
	return d.poll(ctx, time.Minute, func() error {
		err := d.env.Client.Get(ctx, client.ObjectKey{Namespace: appNamespace, Name: "acr-pull-pull-binding"}, &corev1.Secret{})
		if !apierrors.IsNotFound(err) {
			return fmt.Errorf("secret acr-pull-pull-binding still exists")
		}
		sa := &corev1.ServiceAccount{}
		if err := d.env.Client.Get(ctx, client.ObjectKey{Namespace: appNamespace, Name: "app"}, sa); err != nil {
			return err
		}
		for _, r := range sa.ImagePullSecrets {
			if r.Name == "acr-pull-pull-binding" {
				return fmt.Errorf("service account app still references the deleted secret")
			}
		}
		fmt.Fprintf(d.out, "      secret acr-pull-pull-binding deleted and unreferenced; app keeps %v\n", sa.ImagePullSecrets)
		return nil
	})
}

func indent(s string) string {
	if s == "" {
		return ""
	}
	return "      " + strings.ReplaceAll(strings.TrimRight(s, "\n"), "\n", "\n      ") + "\n"
}
