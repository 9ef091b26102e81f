/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

package pulldiagnosis

import (
	"fmt"
	"slices"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/duration"

	acrv1beta2 "github.com/acrpull/acrpull/api/v1beta2"
)

// Reasons a diagnosis gives: each names one situation with one action.
const (
	ReasonHealthy                = "Healthy"
	ReasonPodNotFound            = "PodNotFound"
	ReasonSecretsUnreadable      = "SecretsUnreadable"
	ReasonInvalidImage           = "InvalidImage"
	ReasonPodCreatedBeforeSecret = "PodCreatedBeforeSecret"
	ReasonPodListsOwnSecrets     = "PodListsOwnPullSecrets"
	ReasonBindingNotReady        = "BindingNotReady"
	ReasonSecretNotAttached      = "SecretNotAttached"
	ReasonTokenExpired           = "TokenExpired"
	ReasonNotVerified            = "NotVerified"
	ReasonScopeMissesRepository  = "ScopeMissesRepository"
	ReasonServiceAccountNotFound = "ServiceAccountNotFound"
	ReasonNoBinding              = "NoBinding"
	ReasonRegistryNotCovered     = "RegistryNotCovered"
)

// Diagnosis is the answer to "why can't this pod pull?": what was found, one reason and the one action to take.
type Diagnosis struct {
	// Lines describe the pod, its account, secrets, bindings and images, one fact a line.
	Lines []string
	// Reason names the situation (one of the Reason constants), Detail explains it with this pod's names.
	Reason, Detail string
	// Action is the one thing to do next.
	Action string
}

// String renders the diagnosis as the plugin prints it.
func (d Diagnosis) String() string {
	var b strings.Builder
	for _, l := range d.Lines {
		b.WriteString(l + "\n")
	}
	fmt.Fprintf(&b, "Reason:  %s: %s\n", d.Reason, d.Detail)
	fmt.Fprintf(&b, "Action:  %s\n", d.Action)
	return b.String()
}

// imageFinding is what the diagnosis knows about one image of the pod.
type imageFinding struct {
	ref imageRef
	err error
	// coveredBy are the pod's pull secrets whose credentials kubelet would send for the image.
	coveredBy []string
	// accountCovers are secrets of the service account, missing from the pod, that would cover it.
	accountCovers []string
	// servedBy are the account's bindings for the image's registry.
	servedBy []*bindingFacts
}

// problem is one reason with its detail and action; nil means no problem.
type problem struct{ reason, detail, action string }

// diagnose decides, from the facts alone, what stops the pod from pulling and what to do. now is the clock's time.
func diagnose(f podFacts, now time.Time) Diagnosis {
	if !f.Found {
		return Diagnosis{
			Lines:  []string{fmt.Sprintf("Pod:     %s/%s not found", f.Namespace, f.Name)},
			Reason: ReasonPodNotFound, Detail: fmt.Sprintf("no pod %q in namespace %q", f.Name, f.Namespace),
			Action: fmt.Sprintf("check the name and namespace: kubectl get pods -n %s", f.Namespace),
		}
	}
	d := Diagnosis{Lines: describe(f, now)}
	findings := make([]imageFinding, 0, len(f.Images))
	for _, image := range f.Images {
		findings = append(findings, findImage(f, image))
	}
	d.Lines = append(d.Lines, describeImages(findings)...)
	p := decide(f, findings, now)
	d.Reason, d.Detail, d.Action = p.reason, p.detail, p.action
	return d
}

func findImage(f podFacts, image string) imageFinding {
	ref, err := parseImage(image)
	fi := imageFinding{ref: ref, err: err}
	if err != nil {
		return fi
	}
	for _, name := range f.PodSecrets {
		if s := f.Secrets[name]; s != nil {
			if ok, _ := secretCovers(s, ref.Repository); ok {
				fi.coveredBy = append(fi.coveredBy, name)
			}
		}
	}
	for _, name := range f.ServiceAccountSecrets {
		if s := f.Secrets[name]; s != nil && !slices.Contains(f.PodSecrets, name) {
			if ok, _ := secretCovers(s, ref.Repository); ok {
				fi.accountCovers = append(fi.accountCovers, name)
			}
		}
	}
	for i := range f.Bindings {
		if bindingServes(&f.Bindings[i], ref) {
			fi.servedBy = append(fi.servedBy, &f.Bindings[i])
		}
	}
	return fi
}

// bindingServes reports whether a binding is meant for the image's registry: by its secret's keys under kubelet's
// rules when it has a secret, else by its server (a v1beta1 binding without a server relies on the controller's
// default, which only its secret shows).
func bindingServes(b *bindingFacts, ref imageRef) bool {
	if b.Secret != nil {
		ok, _ := secretCovers(b.Secret, ref.Repository)
		return ok
	}
	return b.Server != "" && strings.EqualFold(b.Server, ref.Registry)
}

// decide picks the one problem to act on. Problems with the account's bindings come before images from registries
// no binding serves, which may well be public.
func decide(f podFacts, findings []imageFinding, now time.Time) problem {
	if f.SecretsUnreadable {
		return problem{ReasonSecretsUnreadable,
			fmt.Sprintf("you may not read secrets in %s, so which registries the pod's pull secrets cover is unknown", f.Namespace),
			fmt.Sprintf("run as someone who may get and list secrets in %s (kubectl auth can-i get secrets -n %s)", f.Namespace, f.Namespace)}
	}
	var unserved *problem
	for _, fi := range findings {
		p := imageProblem(f, fi, now)
		switch {
		case p == nil:
		case p.reason == ReasonNoBinding || p.reason == ReasonRegistryNotCovered || p.reason == ReasonServiceAccountNotFound:
			if unserved == nil {
				unserved = p
			}
		default:
			return *p
		}
	}
	if unserved != nil {
		return *unserved
	}
	return problem{ReasonHealthy, "every image's registry is covered by a pull secret the pod carries, from a Ready binding where acrpull made it",
		fmt.Sprintf("none for the pull secrets; if the pod still cannot pull, read its events: kubectl describe pod %s -n %s", f.Name, f.Namespace)}
}

func imageProblem(f podFacts, fi imageFinding, now time.Time) *problem {
	if fi.err != nil {
		return &problem{ReasonInvalidImage, fi.err.Error(), "fix the image reference in the pod's spec"}
	}
	if len(fi.coveredBy) > 0 {
		return coveredImageProblem(f, fi, now)
	}
	if len(fi.accountCovers) > 0 {
		return missingFromPod(f, fi)
	}
	if len(fi.servedBy) > 0 {
		b := fi.servedBy[0]
		if p := bindingProblem(f, b, fi.ref, now); p != nil {
			return p
		}
		return &problem{ReasonSecretNotAttached,
			fmt.Sprintf("binding %s is Ready but its pull secret is not on service account %s", b.Name, f.ServiceAccount),
			"check the acrpull controller's log for why it did not attach the secret: kubectl logs -n <controller namespace> deploy/acrpull"}
	}
	if !f.ServiceAccountFound {
		return &problem{ReasonServiceAccountNotFound, fmt.Sprintf("service account %s/%s no longer exists", f.Namespace, f.ServiceAccount),
			fmt.Sprintf("create service account %s in %s, bind it with an AcrPullBinding, then recreate the pod", f.ServiceAccount, f.Namespace)}
	}
	if len(f.Bindings) == 0 {
		return &problem{ReasonNoBinding,
			fmt.Sprintf("no AcrPullBinding targets service account %s, and no pull secret of the pod covers %s", f.ServiceAccount, fi.ref.Registry),
			fmt.Sprintf("create an AcrPullBinding in %s with server %s and serviceAccountName %s (nothing to do if %s is public)",
				f.Namespace, fi.ref.Registry, f.ServiceAccount, fi.ref.Registry)}
	}
	return &problem{ReasonRegistryNotCovered,
		fmt.Sprintf("no pull secret of the pod covers registry %s, and no binding of service account %s is for it (they are for %s)",
			fi.ref.Registry, f.ServiceAccount, strings.Join(bindingServers(f.Bindings), ", ")),
		fmt.Sprintf("create an AcrPullBinding in %s with server %s and serviceAccountName %s (nothing to do if %s is public)",
			f.Namespace, fi.ref.Registry, f.ServiceAccount, fi.ref.Registry)}
}

// coveredImageProblem checks the bindings behind the secrets that cover an image: kubelet tries each matching
// credential, so one healthy binding (or a secret acrpull does not manage) is enough.
func coveredImageProblem(f podFacts, fi imageFinding, now time.Time) *problem {
	var first *problem
	for _, name := range fi.coveredBy {
		b := bindingOfSecret(f.Bindings, name)
		if b == nil {
			return nil
		}
		p := bindingProblem(f, b, fi.ref, now)
		if p == nil {
			return nil
		}
		if first == nil {
			first = p
		}
	}
	return first
}

// missingFromPod explains why a secret of the account is not on the pod: the account got it after the pod was
// created (the race), or the pod lists pull secrets of its own, which stops the admission plugin from adding the
// account's.
func missingFromPod(f podFacts, fi imageFinding) *problem {
	secret := fi.accountCovers[0]
	for _, name := range f.PodSecrets {
		if !slices.Contains(f.ServiceAccountSecrets, name) {
			return &problem{ReasonPodListsOwnSecrets,
				fmt.Sprintf("the pod lists its own imagePullSecrets (%s), so the service account's %s was not added to it",
					strings.Join(f.PodSecrets, ", "), secret),
				fmt.Sprintf("add %s to the imagePullSecrets of the pod's template (or drop the pod's own list), then recreate the pod", secret)}
		}
	}
	detail := fmt.Sprintf("the pod was created (%s) before service account %s listed %s", stamp(f.Created), f.ServiceAccount, secret)
	if s := f.Secrets[secret]; s != nil {
		detail += fmt.Sprintf(" (secret created %s)", stamp(s.CreationTimestamp.Time))
	}
	detail += "; an account's pull secrets are copied into a pod only when the pod is created"
	return &problem{ReasonPodCreatedBeforeSecret, detail,
		fmt.Sprintf("recreate the pod so it gets the secret: kubectl delete pod %s -n %s (its controller makes a new one), or kubectl rollout restart its workload", f.Name, f.Namespace)}
}

// bindingProblem is what is wrong with a binding for pulling ref, nil when nothing is.
func bindingProblem(f podFacts, b *bindingFacts, ref imageRef, now time.Time) *problem {
	if b.Ready == nil || b.Ready.Status != metav1.ConditionTrue {
		reason, message := "NotReported", "the controller has not reported on it"
		if b.Ready != nil {
			reason, message = b.Ready.Reason, b.Ready.Message
		}
		return &problem{ReasonBindingNotReady, fmt.Sprintf("binding %s is not Ready: %s: %s", b.Name, reason, message),
			readyAction(f, b, reason)}
	}
	if b.Expiry != nil && !b.Expiry.After(now) {
		return &problem{ReasonTokenExpired, fmt.Sprintf("binding %s's token expired %s", b.Name, stamp(*b.Expiry)),
			"check that the acrpull controller is running: it refreshes tokens well before they expire"}
	}
	if b.Verified != nil && b.Verified.Status == metav1.ConditionFalse {
		return &problem{ReasonNotVerified, fmt.Sprintf("binding %s's credential failed at the registry: %s: %s", b.Name, b.Verified.Reason, b.Verified.Message),
			verifiedAction(b)}
	}
	if !scopeAllowsPull(b.Scope, ref.Path) {
		return &problem{ReasonScopeMissesRepository,
			fmt.Sprintf("binding %s's scope %q does not allow pulling repository %s", b.Name, b.Scope, ref.Path),
			fmt.Sprintf("add repository:%s:pull to the scope of binding %s", ref.Path, b.Name)}
	}
	return nil
}

// readyAction is the action for a binding's Ready reason.
func readyAction(f podFacts, b *bindingFacts, reason string) string {
	switch reason {
	case acrv1beta2.ReasonServiceAccountNotFound:
		return fmt.Sprintf("create the service account the binding names (kubectl -n %s create serviceaccount ...)", f.Namespace)
	case acrv1beta2.ReasonIdentityNotFederated:
		return fmt.Sprintf("add a federated credential for subject system:serviceaccount:%s:<the binding's serviceAccountRef> to the identity", f.Namespace)
	case acrv1beta2.ReasonIdentityNotFound:
		return "fix the identity's client or resource ID, or assign the managed identity to the controller's node pools"
	case acrv1beta2.ReasonIdentityMissing:
		return fmt.Sprintf("name an identity in binding %s's spec", b.Name)
	case acrv1beta2.ReasonRegistryDenied:
		return "give the identity the AcrPull role on the registry (az role assignment create --role AcrPull ...)"
	case acrv1beta2.ReasonServerNotAllowed, acrv1beta2.ReasonAuthorityHostNotAllowed, acrv1beta2.ReasonIdentityNotAllowed:
		return "ask the cluster operator to allow it in the controller's settings, or use an allowed one"
	case acrv1beta2.ReasonSecretConflict:
		return fmt.Sprintf("rename or delete the secret in %s that holds the binding's secret name but is not the binding's", f.Namespace)
	case acrv1beta2.ReasonInvalidSpec:
		return fmt.Sprintf("fix binding %s's spec as its message says", b.Name)
	case acrv1beta2.ReasonAzureThrottled, acrv1beta2.ReasonAzureUnavailable, acrv1beta2.ReasonKubernetesAPIError:
		return "wait: the controller retries by itself; if it persists, read the controller's log"
	default:
		return fmt.Sprintf("read the binding's events and message: kubectl describe %s %s -n %s", b.API, b.Name, f.Namespace)
	}
}

// verifiedAction is the action for a binding whose credential the registry refused or could not be asked about.
func verifiedAction(b *bindingFacts) string {
	switch b.Verified.Reason {
	case "RepositoryNotFound":
		return fmt.Sprintf("fix the repository names in binding %s's scope, or push the image", b.Name)
	case "ScopeDenied":
		return fmt.Sprintf("give the identity pull on the repositories of binding %s's scope, or narrow the scope", b.Name)
	case "RegistryUnreachable":
		return "check that the controller can reach the registry (network, proxy, firewall)"
	default:
		return fmt.Sprintf("read the binding's events and message: kubectl describe %s %s -n %s", b.API, b.Name, b.Namespace)
	}
}

func bindingOfSecret(bindings []bindingFacts, secret string) *bindingFacts {
	for i := range bindings {
		if bindings[i].Secret != nil && bindings[i].Secret.Name == secret {
			return &bindings[i]
		}
	}
	return nil
}

func bindingServers(bindings []bindingFacts) []string {
	var out []string
	for _, b := range bindings {
		server := b.Server
		if server == "" {
			server = "the controller's default registry"
		}
		out = appendUnique(out, server)
	}
	return out
}

// describe renders the facts about the pod, its account and bindings.
func describe(f podFacts, now time.Time) []string {
	lines := []string{fmt.Sprintf("Pod:     %s/%s, created %s", f.Namespace, f.Name, stamp(f.Created))}
	account := "pull secrets " + listOrNone(f.ServiceAccountSecrets)
	if !f.ServiceAccountFound {
		account = "not found"
	}
	lines = append(lines, fmt.Sprintf("Account: %s (%s)", f.ServiceAccount, account))
	var secrets []string
	for _, name := range f.PodSecrets {
		if _, ok := f.Secrets[name]; !ok && !f.SecretsUnreadable {
			name += " (missing)"
		}
		secrets = append(secrets, name)
	}
	lines = append(lines, "Secrets: "+listOrNone(secrets)+" on the pod")
	if len(f.Bindings) == 0 {
		lines = append(lines, fmt.Sprintf("Binding: none targets service account %s", f.ServiceAccount))
	}
	for _, b := range f.Bindings {
		lines = append(lines, "Binding: "+describeBinding(b, now))
	}
	return lines
}

func describeBinding(b bindingFacts, now time.Time) string {
	parts := []string{fmt.Sprintf("%s %s for %s", b.API, b.Name, orDefault(b.Server, "the default registry")),
		"Ready=" + conditionSummary(b.Ready), "Verified=" + conditionSummary(b.Verified)}
	if b.Secret != nil {
		parts = append(parts, "secret "+b.Secret.Name)
	} else {
		parts = append(parts, "no secret")
	}
	if b.Expiry != nil {
		parts = append(parts, "expires "+relative(*b.Expiry, now))
	}
	return strings.Join(parts, ", ")
}

func describeImages(findings []imageFinding) []string {
	var lines []string
	for _, fi := range findings {
		switch {
		case fi.err != nil:
			lines = append(lines, fmt.Sprintf("Image:   %s: invalid reference", fi.ref.Image))
		case len(fi.coveredBy) > 0:
			lines = append(lines, fmt.Sprintf("Image:   %s needs %s: covered by %s", fi.ref.Image, fi.ref.Registry, strings.Join(fi.coveredBy, ", ")))
		case len(fi.accountCovers) > 0:
			lines = append(lines, fmt.Sprintf("Image:   %s needs %s: not covered on the pod (the account's %s would cover it)",
				fi.ref.Image, fi.ref.Registry, strings.Join(fi.accountCovers, ", ")))
		default:
			lines = append(lines, fmt.Sprintf("Image:   %s needs %s: no pull secret covers it (anonymous pull)", fi.ref.Image, fi.ref.Registry))
		}
	}
	return lines
}

func conditionSummary(c *metav1.Condition) string {
	if c == nil {
		return "unknown"
	}
	return fmt.Sprintf("%s (%s)", c.Status, c.Reason)
}

func listOrNone(list []string) string {
	if len(list) == 0 {
		return "none"
	}
	return strings.Join(list, ", ")
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func stamp(t time.Time) string { return t.UTC().Format(time.RFC3339) }

// relative says when t is as seen from now, in kubectl's AGE style ("in 179m", "12m ago"), with the timestamp.
func relative(t, now time.Time) string {
	if d := t.Sub(now); d >= 0 {
		return fmt.Sprintf("%s (in %s)", stamp(t), duration.HumanDuration(d))
	}
	return fmt.Sprintf("%s (%s ago, expired)", stamp(t), duration.HumanDuration(now.Sub(t)))
}
