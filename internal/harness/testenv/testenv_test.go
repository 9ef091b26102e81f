/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

package testenv_test

import (
	"context"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	. "github.com/onsi/gomega"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"sigs.k8s.io/controller-runtime/pkg/client"

	acrv1beta2 "github.com/acrpull/acrpull/api/v1beta2"
	"github.com/acrpull/acrpull/internal/harness/testenv"
)

var env *testenv.Env

func TestMain(m *testing.M) { testenv.Main(m, &env) }

func newNamespace(t *testing.T) string {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "smoke-"}}
	if err := env.Client.Create(context.Background(), ns); err != nil {
		t.Fatal(err)
	}
	return ns.Name
}

// TokenRequest issues tokens signed with the configured key, for the configured issuer and the requested audience:
// what the fake Entra ID verifies federated assertions against.
func TestTokenRequestIssuesVerifiableTokens(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	ns := newNamespace(t)
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "puller"}}
	g.Expect(env.Client.Create(ctx, sa)).To(Succeed())

	tr := &authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{Audiences: []string{"api://AzureCRTokenExchange"}}}
	g.Expect(env.Client.SubResource("token").Create(ctx, sa, tr)).To(Succeed())

	claims := jwt.MapClaims{}
	_, err := jwt.NewParser(jwt.WithValidMethods([]string{"RS256"})).ParseWithClaims(tr.Status.Token, claims,
		func(*jwt.Token) (any, error) { return env.SigningKey, nil })
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(claims["iss"]).To(Equal(testenv.Issuer))
	g.Expect(claims["sub"]).To(Equal("system:serviceaccount:" + ns + ":puller"))
	g.Expect(claims["aud"]).To(ConsistOf("api://AzureCRTokenExchange"))
}

// CRD validation rules (CEL) run in the apiserver and reject bad specs with their messages.
func TestCELValidationRejectsWithMessage(t *testing.T) {
	g := NewWithT(t)
	b := &acrv1beta2.AcrPullBinding{
		ObjectMeta: metav1.ObjectMeta{Namespace: newNamespace(t), Name: "bad-server"},
		Spec: acrv1beta2.AcrPullBindingSpec{
			ACR: acrv1beta2.AcrConfiguration{Server: "https://example.azurecr.io/path", Scope: "repository:app:pull",
				Environment: acrv1beta2.AzureEnvironmentPublicCloud},
			Auth:               acrv1beta2.AuthenticationMethod{ManagedIdentity: &acrv1beta2.ManagedIdentityAuth{ClientID: "00000000-0000-0000-0000-000000000001"}},
			ServiceAccountName: "default",
		},
	}
	err := env.Client.Create(context.Background(), b)
	g.Expect(err).To(MatchError(ContainSubstring("server must be a fully-qualified domain name")))
}

// ValidatingAdmissionPolicies are enforced (after the apiserver has loaded them).
func TestValidatingAdmissionPolicyIsEnforced(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	ns := newNamespace(t)
	policy := &admissionregistrationv1.ValidatingAdmissionPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: "smoke-deny-forbidden-configmaps"},
		Spec: admissionregistrationv1.ValidatingAdmissionPolicySpec{
			FailurePolicy: ptrTo(admissionregistrationv1.Fail),
			MatchConstraints: &admissionregistrationv1.MatchResources{ResourceRules: []admissionregistrationv1.NamedRuleWithOperations{{
				RuleWithOperations: admissionregistrationv1.RuleWithOperations{
					Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create},
					Rule:       admissionregistrationv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"configmaps"}},
				},
			}}},
			Validations: []admissionregistrationv1.Validation{{
				Expression: "!has(object.metadata.labels) || !('smoke-forbidden' in object.metadata.labels)",
				Message:    "smoke-forbidden configmaps are denied",
			}},
		},
	}
	g.Expect(env.Client.Create(ctx, policy)).To(Succeed())
	binding := &admissionregistrationv1.ValidatingAdmissionPolicyBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "smoke-deny-forbidden-configmaps"},
		Spec: admissionregistrationv1.ValidatingAdmissionPolicyBindingSpec{
			PolicyName:        policy.Name,
			ValidationActions: []admissionregistrationv1.ValidationAction{admissionregistrationv1.Deny},
		},
	}
	g.Expect(env.Client.Create(ctx, binding)).To(Succeed())

	allowed := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "allowed"}}
	g.Expect(env.Client.Create(ctx, allowed)).To(Succeed())
	g.Eventually(func() error {
		cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, GenerateName: "denied-", Labels: map[string]string{"smoke-forbidden": "yes"}}}
		return env.Client.Create(ctx, cm)
	}).WithTimeout(30 * time.Second).Should(MatchError(ContainSubstring("smoke-forbidden configmaps are denied")))
}

// The ServiceAccount admission plugin copies the account's imagePullSecrets into pods created with it: the path by
// which acrpull's secrets reach pods.
func TestServiceAccountAdmissionCopiesImagePullSecrets(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	ns := newNamespace(t)
	sa := &corev1.ServiceAccount{
		ObjectMeta:       metav1.ObjectMeta{Namespace: ns, Name: "app"},
		ImagePullSecrets: []corev1.LocalObjectReference{{Name: "acr-pull-app"}},
	}
	g.Expect(env.Client.Create(ctx, sa)).To(Succeed())
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "app"},
		Spec: corev1.PodSpec{ServiceAccountName: "app",
			Containers: []corev1.Container{{Name: "app", Image: "example.azurecr.io/app:1"}}},
	}
	g.Expect(env.Client.Create(ctx, pod)).To(Succeed())
	g.Expect(pod.Spec.ImagePullSecrets).To(ConsistOf(corev1.LocalObjectReference{Name: "acr-pull-app"}))
}

func ptrTo[T any](v T) *T { return &v }

// Restart brings the apiserver back on the same address: the client made before it keeps working, and what was
// stored before is still there.
func TestRestartKeepsAddressAndData(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	ns := newNamespace(t)
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "before"}}
	g.Expect(env.Client.Create(ctx, cm)).To(Succeed())
	host := env.Config.Host

	g.Expect(env.Restart(time.Second)).To(Succeed())
	g.Expect(env.Config.Host).To(Equal(host))
	g.Eventually(func() error { return env.Client.Get(ctx, client.ObjectKeyFromObject(cm), &corev1.ConfigMap{}) }).
		WithTimeout(30 * time.Second).Should(Succeed())
}
