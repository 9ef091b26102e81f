/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

package pulldiagnosis_test

import (
	"bytes"
	"context"
	"fmt"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"sigs.k8s.io/controller-runtime/pkg/client"

	acrv1beta1 "github.com/acrpull/acrpull/api/v1beta1"
	acrv1beta2 "github.com/acrpull/acrpull/api/v1beta2"
	"github.com/acrpull/acrpull/internal/dockerconfig"
	"github.com/acrpull/acrpull/internal/harness/testenv"
	"github.com/acrpull/acrpull/internal/pulldiagnosis"
)

// The plugin reads a real kube-apiserver with the ServiceAccount admission plugin on, so pods get (or miss) their
// account's pull secrets exactly as in a cluster. No controller runs: each test writes the bindings, secrets and
// account references the controller would, in the order that makes the situation.
var env *testenv.Env

func TestMain(m *testing.M) { testenv.Main(m, &env) }

const registry = "demo.azurecr.io"

func newNamespace(t *testing.T) string {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "why-"}}
	if err := env.Client.Create(context.Background(), ns); err != nil {
		t.Fatal(err)
	}
	return ns.Name
}

// plugin runs `kubectl acrpull ARGS` against the test apiserver through the standard --kubeconfig flag.
func plugin(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var out, errOut bytes.Buffer
	err := pulldiagnosis.Run(context.Background(), append([]string{"--kubeconfig", env.KubeconfigPath}, args...),
		genericiooptions.IOStreams{In: &bytes.Buffer{}, Out: &out, ErrOut: &errOut})
	t.Logf("kubectl acrpull %v:\n%s%s", args, out.String(), errOut.String())
	return out.String(), err
}

func createAccount(t *testing.T, ns, name string) {
	t.Helper()
	if err := env.Client.Create(context.Background(), &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}); err != nil {
		t.Fatal(err)
	}
}

func createPod(t *testing.T, ns, name, account string, images ...string) *corev1.Pod {
	t.Helper()
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Spec: corev1.PodSpec{ServiceAccountName: account}}
	for i, image := range images {
		pod.Spec.Containers = append(pod.Spec.Containers, corev1.Container{Name: fmt.Sprintf("c%d", i), Image: image})
	}
	if err := env.Client.Create(context.Background(), pod); err != nil {
		t.Fatal(err)
	}
	return pod
}

// readyBinding creates a v1beta2 binding for account with the given Ready condition (and Verified, when not nil), as
// the controller reports it.
func createBinding(t *testing.T, ns, name, account, scope string, ready metav1.Condition, verified *metav1.Condition) *acrv1beta2.AcrPullBinding {
	t.Helper()
	ctx := context.Background()
	b := &acrv1beta2.AcrPullBinding{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Spec: acrv1beta2.AcrPullBindingSpec{
		ACR:                acrv1beta2.AcrConfiguration{Server: registry, Scope: scope, Environment: acrv1beta2.AzureEnvironmentType("PublicCloud")},
		Auth:               acrv1beta2.AuthenticationMethod{ManagedIdentity: &acrv1beta2.ManagedIdentityAuth{ClientID: "5a1e7c9e-4b8f-4f5e-9a61-0c9e5a3d2b11"}},
		ServiceAccountName: account,
	}}
	if err := env.Client.Create(ctx, b); err != nil {
		t.Fatal(err)
	}
	ready.Type, ready.LastTransitionTime = acrv1beta2.ConditionReady, metav1.Now()
	b.Status.Conditions = []metav1.Condition{ready}
	if verified != nil {
		verified.Type, verified.LastTransitionTime = acrv1beta2.ConditionVerified, metav1.Now()
		b.Status.Conditions = append(b.Status.Conditions, *verified)
	}
	if ready.Status == metav1.ConditionTrue {
		expiry := metav1.NewTime(time.Now().Add(3 * time.Hour).Truncate(time.Second))
		b.Status.TokenExpirationTime = &expiry
	}
	if err := env.Client.Status().Update(ctx, b); err != nil {
		t.Fatal(err)
	}
	return b
}

var minted = metav1.Condition{Status: metav1.ConditionTrue, Reason: acrv1beta2.ReasonTokenMinted, Message: "token minted"}

// attachSecret does the controller's writes: the binding's dockerconfigjson secret (labelled, owned by the binding),
// then the secret's name on the account.
func attachSecret(t *testing.T, owner client.Object, apiVersion, kind, secretName, account string) {
	t.Helper()
	ctx := context.Background()
	payload, err := dockerconfig.Render(registry, "not-a-real-token")
	if err != nil {
		t.Fatal(err)
	}
	s := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: owner.GetNamespace(), Name: secretName,
			Labels:          map[string]string{"acr.microsoft.com/binding": owner.GetName()},
			OwnerReferences: []metav1.OwnerReference{{APIVersion: apiVersion, Kind: kind, Name: owner.GetName(), UID: owner.GetUID()}}},
		Type: corev1.SecretTypeDockerConfigJson,
		Data: map[string][]byte{corev1.DockerConfigJsonKey: payload},
	}
	if err := env.Client.Create(ctx, s); err != nil {
		t.Fatal(err)
	}
	sa := &corev1.ServiceAccount{}
	if err := env.Client.Get(ctx, client.ObjectKey{Namespace: owner.GetNamespace(), Name: account}, sa); err != nil {
		t.Fatal(err)
	}
	sa.ImagePullSecrets = append(sa.ImagePullSecrets, corev1.LocalObjectReference{Name: secretName})
	if err := env.Client.Update(ctx, sa); err != nil {
		t.Fatal(err)
	}
}

func TestWhyHealthyPod(t *testing.T) {
	g := NewWithT(t)
	ns := newNamespace(t)
	createAccount(t, ns, "app")
	b := createBinding(t, ns, "app-pull", "app", "repository:hello:pull", minted, &metav1.Condition{Status: metav1.ConditionTrue, Reason: acrv1beta2.ReasonPullVerified})
	attachSecret(t, b, "acrpull.microsoft.com/v1beta2", "AcrPullBinding", "acr-pull-app-pull", "app")
	pod := createPod(t, ns, "web", "app", registry+"/hello:v1")
	g.Expect(pod.Spec.ImagePullSecrets).To(ConsistOf(corev1.LocalObjectReference{Name: "acr-pull-app-pull"}))

	out, err := plugin(t, "why", "web", "-n", ns)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(out).To(ContainSubstring("Account: app (pull secrets acr-pull-app-pull)"))
	g.Expect(out).To(ContainSubstring("Secrets: acr-pull-app-pull on the pod"))
	g.Expect(out).To(MatchRegexp(`Binding: acrpullbindings.acrpull.microsoft.com app-pull for demo.azurecr.io, Ready=True \(TokenMinted\), Verified=True \(PullVerified\), secret acr-pull-app-pull, expires \S+ \(in 17\dm\)`))
	g.Expect(out).To(ContainSubstring("Image:   " + registry + "/hello:v1 needs " + registry + ": covered by acr-pull-app-pull"))
	g.Expect(out).To(ContainSubstring("Reason:  Healthy: "))
	g.Expect(out).To(ContainSubstring("Action:  none for the pull secrets"))
}

// The classic race: the pod was created before the controller attached the secret to its account, so the admission
// plugin had nothing to copy, and the pod never gets it.
func TestWhyPodCreatedBeforeTheSecret(t *testing.T) {
	g := NewWithT(t)
	ns := newNamespace(t)
	createAccount(t, ns, "app")
	pod := createPod(t, ns, "early", "app", registry+"/hello:v1")
	g.Expect(pod.Spec.ImagePullSecrets).To(BeEmpty())
	b := createBinding(t, ns, "app-pull", "app", "repository:hello:pull", minted, nil)
	attachSecret(t, b, "acrpull.microsoft.com/v1beta2", "AcrPullBinding", "acr-pull-app-pull", "app")

	out, err := plugin(t, "why", "early", "-n", ns)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(out).To(ContainSubstring("Secrets: none on the pod"))
	g.Expect(out).To(ContainSubstring("Verified=unknown"))
	g.Expect(out).To(ContainSubstring("not covered on the pod (the account's acr-pull-app-pull would cover it)"))
	g.Expect(out).To(MatchRegexp(`Reason:  PodCreatedBeforeSecret: the pod was created \(\S+\) before service account app listed acr-pull-app-pull \(secret created \S+\)`))
	g.Expect(out).To(ContainSubstring("Action:  recreate the pod so it gets the secret: kubectl delete pod early -n " + ns))

	// A pod that lists pull secrets of its own is not given the account's: a different action.
	own := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "own"}, Spec: corev1.PodSpec{ServiceAccountName: "app",
		ImagePullSecrets: []corev1.LocalObjectReference{{Name: "team-secret"}},
		Containers:       []corev1.Container{{Name: "c", Image: registry + "/hello:v1"}}}}
	g.Expect(env.Client.Create(context.Background(), own)).To(Succeed())
	out, err = plugin(t, "why", "own", "-n", ns)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(out).To(ContainSubstring("Secrets: team-secret (missing) on the pod"))
	g.Expect(out).To(ContainSubstring("Reason:  PodListsOwnPullSecrets: "))
	g.Expect(out).To(ContainSubstring("Action:  add acr-pull-app-pull to the imagePullSecrets of the pod's template"))
}

// A binding that is not Ready (here a v1beta1 one, the other API group) is named with its reason and the action for it.
func TestWhyBindingNotReady(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	ns := newNamespace(t)
	createAccount(t, ns, "default")
	b := &acrv1beta1.AcrPullBinding{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "legacy"},
		Spec: acrv1beta1.AcrPullBindingSpec{AcrServer: registry, ManagedIdentityClientID: "5a1e7c9e-4b8f-4f5e-9a61-0c9e5a3d2b11"}}
	g.Expect(env.Client.Create(ctx, b)).To(Succeed())
	b.Status.Conditions = []metav1.Condition{{Type: acrv1beta2.ConditionReady, Status: metav1.ConditionFalse, LastTransitionTime: metav1.Now(),
		Reason: acrv1beta2.ReasonRegistryDenied, Message: "the registry refused the identity's token"}}
	g.Expect(env.Client.Status().Update(ctx, b)).To(Succeed())
	createPod(t, ns, "web", "", registry+"/hello:v1")

	out, err := plugin(t, "why", "web", "-n", ns)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(out).To(ContainSubstring("Binding: acrpullbindings.msi-acrpull.microsoft.com legacy for demo.azurecr.io, Ready=False (RegistryDenied), Verified=unknown, no secret"))
	g.Expect(out).To(ContainSubstring("Reason:  BindingNotReady: binding legacy is not Ready: RegistryDenied: the registry refused the identity's token"))
	g.Expect(out).To(ContainSubstring("Action:  give the identity the AcrPull role on the registry"))
}

// The secret covers its registry, but the registry said the credential cannot pull the scope's repository.
func TestWhyBindingNotVerified(t *testing.T) {
	g := NewWithT(t)
	ns := newNamespace(t)
	createAccount(t, ns, "app")
	b := createBinding(t, ns, "typo", "app", "repository:helo:pull", minted,
		&metav1.Condition{Status: metav1.ConditionFalse, Reason: "RepositoryNotFound", Message: "repository helo does not exist"})
	attachSecret(t, b, "acrpull.microsoft.com/v1beta2", "AcrPullBinding", "acr-pull-typo", "app")
	createPod(t, ns, "web", "app", registry+"/hello:v1")

	out, err := plugin(t, "why", "web", "-n", ns)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(out).To(ContainSubstring("Verified=False (RepositoryNotFound)"))
	g.Expect(out).To(ContainSubstring("Reason:  NotVerified: binding typo's credential failed at the registry: RepositoryNotFound"))
	g.Expect(out).To(ContainSubstring("Action:  fix the repository names in binding typo's scope"))
}

// The image comes from a registry that none of the pod's secrets covers, though the account has a binding for another.
func TestWhyRegistryNotCovered(t *testing.T) {
	g := NewWithT(t)
	ns := newNamespace(t)
	createAccount(t, ns, "app")
	b := createBinding(t, ns, "app-pull", "app", "repository:hello:pull", minted, nil)
	attachSecret(t, b, "acrpull.microsoft.com/v1beta2", "AcrPullBinding", "acr-pull-app-pull", "app")
	// Same host with a port, and another registry: kubelet's rules cover neither with a secret for demo.azurecr.io.
	createPod(t, ns, "web", "app", registry+"/hello:v1", registry+":5000/hello:v1", "other.azurecr.io/hello:v1")

	out, err := plugin(t, "why", "web", "-n", ns)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(out).To(ContainSubstring("Image:   " + registry + "/hello:v1 needs " + registry + ": covered by acr-pull-app-pull"))
	g.Expect(out).To(ContainSubstring("Image:   " + registry + ":5000/hello:v1 needs " + registry + ":5000: no pull secret covers it"))
	g.Expect(out).To(ContainSubstring("Image:   other.azurecr.io/hello:v1 needs other.azurecr.io: no pull secret covers it"))
	g.Expect(out).To(ContainSubstring("Reason:  RegistryNotCovered: no pull secret of the pod covers registry " + registry + ":5000"))
	g.Expect(out).To(ContainSubstring("Action:  create an AcrPullBinding in " + ns + " with server " + registry + ":5000 and serviceAccountName app"))
}

func TestWhyNoBindingForTheAccount(t *testing.T) {
	g := NewWithT(t)
	ns := newNamespace(t)
	createAccount(t, ns, "lonely")
	createPod(t, ns, "web", "lonely", registry+"/hello:v1")

	out, err := plugin(t, "why", "web", "-n", ns)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(out).To(ContainSubstring("Binding: none targets service account lonely"))
	g.Expect(out).To(ContainSubstring("Reason:  NoBinding: no AcrPullBinding targets service account lonely"))
	g.Expect(out).To(ContainSubstring("Action:  create an AcrPullBinding in " + ns + " with server " + registry + " and serviceAccountName lonely"))
}

func TestWhyPodNotFound(t *testing.T) {
	g := NewWithT(t)
	ns := newNamespace(t)
	out, err := plugin(t, "why", "ghost", "-n", ns)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(out).To(ContainSubstring(`Reason:  PodNotFound: no pod "ghost" in namespace "` + ns + `"`))
	g.Expect(out).To(ContainSubstring("Action:  check the name and namespace: kubectl get pods -n " + ns))
}

// status lists both API groups, the bindings that are not Ready first, grouped by reason with the soonest expiry.
func TestStatusGroupsByReasonSoonestExpiryFirst(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	ns := newNamespace(t)
	createBinding(t, ns, "later", "app", "repository:hello:pull", minted, nil)
	sooner := createBinding(t, ns, "sooner", "app", "repository:hello:pull", minted, nil)
	expiry := metav1.NewTime(time.Now().Add(20 * time.Minute).Truncate(time.Second))
	sooner.Status.TokenExpirationTime = &expiry
	g.Expect(env.Client.Status().Update(ctx, sooner)).To(Succeed())
	createBinding(t, ns, "broken", "app", "repository:hello:pull",
		metav1.Condition{Status: metav1.ConditionFalse, Reason: acrv1beta2.ReasonIdentityNotFederated, Message: "no federated credential"}, nil)
	legacy := &acrv1beta1.AcrPullBinding{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "legacy"}, Spec: acrv1beta1.AcrPullBindingSpec{AcrServer: registry}}
	g.Expect(env.Client.Create(ctx, legacy)).To(Succeed())

	out, err := plugin(t, "status", "-n", ns)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(out).To(MatchRegexp(`(?m)^IdentityNotFederated\s+1\s+-$`))
	g.Expect(out).To(MatchRegexp(`(?m)^NotReported\s+1\s+-$`))
	g.Expect(out).To(MatchRegexp(`(?m)^TokenMinted\s+2\s+` + ns + `/sooner \S+ \(in 19m\)`))
	g.Expect(out).To(MatchRegexp(`(?s)` + ns + `\s+broken\s.*` + ns + `\s+legacy\s+acrpullbindings.msi-acrpull.microsoft.com\s.*` + ns + `\s+sooner\s.*` + ns + `\s+later\s`))

	all, err := plugin(t, "status", "-A")
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(all).To(ContainSubstring(ns + "/sooner"))

	_, err = plugin(t, "why")
	g.Expect(err).To(MatchError(ContainSubstring("accepts 1 arg")))
}
