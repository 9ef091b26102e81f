/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

package acrpullbinding_test

import (
	"context"
	"fmt"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	acrv1beta2 "github.com/acrpull/acrpull/api/v1beta2"
	"github.com/acrpull/acrpull/internal/controller/acrpullbinding"
	"github.com/acrpull/acrpull/internal/harness/azurefake"
	"github.com/acrpull/acrpull/internal/harness/azurefake/certtest"
)

// servicePrincipal registers an application in its own tenant (so that the tenant's token requests count its
// attempts alone), allowed to pull "alice".
func servicePrincipal(tenant, clientID string) {
	cloud.AddIdentity(azurefake.Identity{ClientID: clientID, TenantID: tenant})
	cloud.AddRoleAssignment(clientID, registryHost, []string{"alice"}, []string{"pull"})
}

// credentialSecret creates a Secret holding a service principal's credential, labelled for acrpull when labelled.
func credentialSecret(t *testing.T, ns, name string, labelled bool, data map[string][]byte) *corev1.Secret {
	t.Helper()
	s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Data: data}
	if labelled {
		s.Labels = map[string]string{acrpullbinding.ServicePrincipalLabel: "true"}
	}
	create(t, s)
	return s
}

func servicePrincipalBinding(ns, name, target, tenant, clientID, secret string) *acrv1beta2.AcrPullBinding {
	b := managedIdentityBinding(ns, name, target, "repository:alice:pull")
	b.Spec.Auth = acrv1beta2.AuthenticationMethod{ServicePrincipal: &acrv1beta2.ServicePrincipalAuth{
		TenantID: tenant, ClientID: clientID, SecretRef: acrv1beta2.ServicePrincipalSecretReference{Name: secret}}}
	return b
}

// A binding with a client secret mints, and its pull secret pulls the scoped repository only. When the Secret is
// rotated the controller mints with the new credential at once; a wrong credential or a deleted Secret says so in
// the status and leaves the still-valid pull secret in place.
func TestServicePrincipalWithClientSecret(t *testing.T) {
	g := NewWithT(t)
	const (
		tenant = "5e000000-0000-4000-8000-000000000001"
		app    = "5e000000-0000-4000-8000-0000000000a1"
	)
	servicePrincipal(tenant, app)
	cloud.AddClientSecret(app, "first~secret.value")
	ns := newNamespace(t)
	serviceAccount(t, ns, "app", "")
	cred := credentialSecret(t, ns, "sp", true, map[string][]byte{acrpullbinding.ClientSecretKey: []byte("first~secret.value")})
	b := servicePrincipalBinding(ns, "sp-pull", "app", tenant, app, "sp")
	create(t, b)
	deleteAtEnd(t, b)

	eventuallyReady(t, b, metav1.ConditionTrue, acrv1beta2.ReasonTokenMinted)
	g.Expect(pull(ns, "acr-pull-sp-pull", "alice")).To(Succeed())
	g.Expect(pull(ns, "acr-pull-sp-pull", "bob")).To(MatchError(ContainSubstring("UNAUTHORIZED")), "bob is outside the scope")
	g.Expect(pullSecretNames(g, ns, "app")).To(ContainElement("acr-pull-sp-pull"))

	// Rotation: Entra ID now knows only the new secret. The pull secret is re-minted with it without waiting for
	// the old token to age.
	minted := getSecret(g, ns, "acr-pull-sp-pull")
	before := cloud.TenantTokenRequests(tenant)
	cloud.AddClientSecret(app, "second~secret.value")
	edit(t, cred, func() { cred.Data[acrpullbinding.ClientSecretKey] = []byte("second~secret.value") })
	g.Eventually(func(g Gomega) {
		now := getSecret(g, ns, "acr-pull-sp-pull")
		g.Expect(now.Annotations[acrpullbinding.InputsAnnotation]).NotTo(Equal(minted.Annotations[acrpullbinding.InputsAnnotation]))
		g.Expect(now.UID).To(Equal(minted.UID), "refreshed in place")
	}).WithTimeout(60 * time.Second).Should(Succeed())
	g.Expect(cloud.TenantTokenRequests(tenant)).To(BeNumerically(">", before), "Entra ID was asked with the new secret")
	eventuallyReady(t, b, metav1.ConditionTrue, acrv1beta2.ReasonTokenMinted)
	g.Expect(pull(ns, "acr-pull-sp-pull", "alice")).To(Succeed())

	// A wrong secret: not Ready with a reason that points at the Secret; the pull secret is kept and still pulls.
	rotated := getSecret(g, ns, "acr-pull-sp-pull")
	edit(t, cred, func() { cred.Data[acrpullbinding.ClientSecretKey] = []byte("not~the.secret") })
	eventuallyReady(t, b, metav1.ConditionFalse, acrv1beta2.ReasonServicePrincipalSecretInvalid)
	c := readyCondition(g, b)
	g.Expect(c.Message).To(ContainSubstring(`secret "sp"`))
	g.Expect(c.Message).To(ContainSubstring("invalid client secret"))
	g.Expect(c.Message).NotTo(ContainSubstring("not~the.secret"))
	g.Expect(getSecret(g, ns, "acr-pull-sp-pull").Data).To(Equal(rotated.Data), "the still-valid pull secret is kept")
	g.Expect(pull(ns, "acr-pull-sp-pull", "alice")).To(Succeed())

	// The right one again: Ready.
	edit(t, cred, func() { cred.Data[acrpullbinding.ClientSecretKey] = []byte("second~secret.value") })
	eventuallyReady(t, b, metav1.ConditionTrue, acrv1beta2.ReasonTokenMinted)

	// Deleted: the reason says so, and the pull secret stays until its token expires.
	kept := getSecret(g, ns, "acr-pull-sp-pull")
	g.Expect(k8s.Delete(context.Background(), cred)).To(Succeed())
	eventuallyReady(t, b, metav1.ConditionFalse, acrv1beta2.ReasonServicePrincipalSecretNotFound)
	g.Expect(readyCondition(g, b).Message).To(ContainSubstring(`secret "sp" not found in namespace "` + ns + `"`))
	g.Expect(getSecret(g, ns, "acr-pull-sp-pull").Data).To(Equal(kept.Data))
	g.Expect(pullSecretNames(g, ns, "app")).To(ContainElement("acr-pull-sp-pull"))
	g.Expect(pull(ns, "acr-pull-sp-pull", "alice")).To(Succeed())
	got := &acrv1beta2.AcrPullBinding{}
	g.Expect(k8s.Get(context.Background(), client.ObjectKeyFromObject(b), got)).To(Succeed())
	g.Expect(got.Status.TokenExpirationTime).NotTo(BeNil(), "the status still tells when the kept token expires")
}

// Certificates: PEM in a kubernetes.io/tls Secret, and a password-protected PKCS#12 bundle. A certificate that does
// not open is reported before Entra ID is asked.
func TestServicePrincipalWithCertificate(t *testing.T) {
	g := NewWithT(t)
	const (
		tenant = "5e000000-0000-4000-8000-000000000002"
		app    = "5e000000-0000-4000-8000-0000000000a2"
	)
	cert, err := certtest.New("acrpull controller test")
	g.Expect(err).NotTo(HaveOccurred())
	servicePrincipal(tenant, app)
	cloud.AddClientCertificate(app, cert.Cert)
	key, err := cert.KeyPEM()
	g.Expect(err).NotTo(HaveOccurred())
	bundle, err := cert.PKCS12("pfx~password")
	g.Expect(err).NotTo(HaveOccurred())
	ns := newNamespace(t)
	serviceAccount(t, ns, "app", "")

	tls := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "sp-tls", Labels: map[string]string{acrpullbinding.ServicePrincipalLabel: "true"}},
		Type:       corev1.SecretTypeTLS,
		Data:       map[string][]byte{corev1.TLSCertKey: cert.CertificatePEM(), corev1.TLSPrivateKeyKey: key},
	}
	create(t, tls)
	credentialSecret(t, ns, "sp-pfx", true, map[string][]byte{
		acrpullbinding.PKCS12Key: bundle, acrpullbinding.PKCS12PasswordKey: []byte("pfx~password")})
	credentialSecret(t, ns, "sp-broken", true, map[string][]byte{
		acrpullbinding.PKCS12Key: bundle[:len(bundle)/2], acrpullbinding.PKCS12PasswordKey: []byte("pfx~password")})

	withPEM := servicePrincipalBinding(ns, "pem", "app", tenant, app, "sp-tls")
	withPFX := servicePrincipalBinding(ns, "pfx", "app", tenant, app, "sp-pfx")
	for _, b := range []*acrv1beta2.AcrPullBinding{withPEM, withPFX} {
		create(t, b)
		deleteAtEnd(t, b)
		eventuallyReady(t, b, metav1.ConditionTrue, acrv1beta2.ReasonTokenMinted)
		g.Expect(pull(ns, "acr-pull-"+b.Name, "alice")).To(Succeed())
	}

	before := cloud.TenantTokenRequests(tenant)
	broken := servicePrincipalBinding(ns, "broken", "app", tenant, app, "sp-broken")
	create(t, broken)
	deleteAtEnd(t, broken)
	eventuallyReady(t, broken, metav1.ConditionFalse, acrv1beta2.ReasonServicePrincipalSecretInvalid)
	g.Expect(readyCondition(g, broken).Message).To(ContainSubstring("unusable certificate"))
	g.Expect(cloud.TenantTokenRequests(tenant)).To(Equal(before), "nothing was sent for a certificate that does not open")
}

// Two bindings naming the same application with different Secrets never share a token: the one whose secret is
// wrong is refused by Entra ID, although the other's token for the same client ID, registry and scope is cached.
func TestServicePrincipalTokensAreSharedOnlyForTheSameSecret(t *testing.T) {
	const (
		tenant = "5e000000-0000-4000-8000-000000000003"
		app    = "5e000000-0000-4000-8000-0000000000a3"
	)
	servicePrincipal(tenant, app)
	cloud.AddClientSecret(app, "right~secret")
	ns := newNamespace(t)
	serviceAccount(t, ns, "app", "")
	credentialSecret(t, ns, "right", true, map[string][]byte{acrpullbinding.ClientSecretKey: []byte("right~secret")})
	credentialSecret(t, ns, "wrong", true, map[string][]byte{acrpullbinding.ClientSecretKey: []byte("wrong~secret")})
	good := servicePrincipalBinding(ns, "good", "app", tenant, app, "right")
	create(t, good)
	deleteAtEnd(t, good)
	eventuallyReady(t, good, metav1.ConditionTrue, acrv1beta2.ReasonTokenMinted)

	bad := servicePrincipalBinding(ns, "bad", "app", tenant, app, "wrong")
	create(t, bad)
	deleteAtEnd(t, bad)
	eventuallyReady(t, bad, metav1.ConditionFalse, acrv1beta2.ReasonServicePrincipalSecretInvalid)
	NewWithT(t).Expect(k8s.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: "acr-pull-bad"}, &corev1.Secret{})).
		To(Satisfy(apierrors.IsNotFound), "no pull secret for a binding whose credential is wrong")
}

// A Secret without the acr.microsoft.com/service-principal label is not used (nothing is sent to Entra ID); labelling
// it is an event the controller sees, and the binding mints.
func TestServicePrincipalSecretMustBeLabelled(t *testing.T) {
	g := NewWithT(t)
	const (
		tenant = "5e000000-0000-4000-8000-000000000004"
		app    = "5e000000-0000-4000-8000-0000000000a4"
	)
	servicePrincipal(tenant, app)
	cloud.AddClientSecret(app, "labelled~secret")
	ns := newNamespace(t)
	serviceAccount(t, ns, "app", "")
	cred := credentialSecret(t, ns, "sp", false, map[string][]byte{acrpullbinding.ClientSecretKey: []byte("labelled~secret")})
	b := servicePrincipalBinding(ns, "sp-pull", "app", tenant, app, "sp")
	create(t, b)
	deleteAtEnd(t, b)
	eventuallyReady(t, b, metav1.ConditionFalse, acrv1beta2.ReasonServicePrincipalSecretInvalid)
	g.Expect(readyCondition(g, b).Message).To(ContainSubstring("lacks the label " + acrpullbinding.ServicePrincipalLabel + "=true"))
	g.Expect(cloud.TenantTokenRequests(tenant)).To(BeZero())

	edit(t, cred, func() { cred.Labels = map[string]string{acrpullbinding.ServicePrincipalLabel: "true"} })
	eventuallyReady(t, b, metav1.ConditionTrue, acrv1beta2.ReasonTokenMinted)
	g.Expect(pull(ns, "acr-pull-sp-pull", "alice")).To(Succeed())
}

// Attack: a tenant names another namespace's service-principal Secret. The type has no namespace field (strict
// validation refuses one, and otherwise the apiserver drops it), so the controller looks only in the binding's own
// namespace: the victim's credential is never used and no pull secret is written.
func TestServicePrincipalSecretOfAnotherNamespaceIsNeverRead(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	const (
		tenant = "5e000000-0000-4000-8000-000000000005"
		app    = "5e000000-0000-4000-8000-0000000000a5"
	)
	servicePrincipal(tenant, app)
	cloud.AddClientSecret(app, "victims~secret")
	victim := newNamespace(t)
	credentialSecret(t, victim, "sp", true, map[string][]byte{acrpullbinding.ClientSecretKey: []byte("victims~secret")})
	attacker := newNamespace(t)
	serviceAccount(t, attacker, "app", "")

	u := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": acrv1beta2.GroupVersion.String(), "kind": "AcrPullBinding",
		"metadata": map[string]any{"namespace": attacker, "name": "steal"},
		"spec": map[string]any{
			"acr": map[string]any{"server": registryHost, "scope": "repository:alice:pull", "environment": "PublicCloud"},
			"auth": map[string]any{"servicePrincipal": map[string]any{"tenantID": tenant, "clientID": app,
				"secretRef": map[string]any{"name": "sp", "namespace": victim}}},
			"serviceAccountName": "app",
		},
	}}
	g.Expect(k8s.Create(ctx, u.DeepCopy(), client.FieldValidation("Strict"))).To(MatchError(ContainSubstring(`unknown field "spec.auth.servicePrincipal.secretRef.namespace"`)))
	g.Expect(k8s.Create(ctx, u)).To(Succeed())
	b := &acrv1beta2.AcrPullBinding{}
	g.Expect(k8s.Get(ctx, client.ObjectKey{Namespace: attacker, Name: "steal"}, b)).To(Succeed())
	deleteAtEnd(t, b)

	eventuallyReady(t, b, metav1.ConditionFalse, acrv1beta2.ReasonServicePrincipalSecretNotFound)
	g.Expect(readyCondition(g, b).Message).To(ContainSubstring(`not found in namespace "` + attacker + `"`))
	g.Expect(cloud.TenantTokenRequests(tenant)).To(BeZero(), "the victim's credential was never presented")
	g.Expect(k8s.Get(ctx, client.ObjectKey{Namespace: attacker, Name: "acr-pull-steal"}, &corev1.Secret{})).To(Satisfy(apierrors.IsNotFound))

	// A Secret of that name in the attacker's own namespace is the one read, and its wrong secret is refused.
	credentialSecret(t, attacker, "sp", true, map[string][]byte{acrpullbinding.ClientSecretKey: []byte("guess~secret.value")})
	eventuallyReady(t, b, metav1.ConditionFalse, acrv1beta2.ReasonServicePrincipalSecretInvalid)
	g.Expect(k8s.Get(ctx, client.ObjectKey{Namespace: attacker, Name: "acr-pull-steal"}, &corev1.Secret{})).To(Satisfy(apierrors.IsNotFound))
}

// Attack: a service-principal binding for AirgappedCloud names its author's server as the authority, where the
// controller would post the client secret. The authority allow-list holds as for workload identity: nothing is sent.
func TestServicePrincipalSecretIsNeverSentToAnAuthorityNotAllowed(t *testing.T) {
	g := NewWithT(t)
	const (
		tenant = "5e000000-0000-4000-8000-000000000006"
		app    = "5e000000-0000-4000-8000-0000000000a6"
	)
	servicePrincipal(tenant, app)
	cloud.AddClientSecret(app, "airgap~secret.value")
	cloud.AddAuthorityHost(attackerAuthority)
	ns := newNamespace(t)
	serviceAccount(t, ns, "app", "")
	credentialSecret(t, ns, "sp", true, map[string][]byte{acrpullbinding.ClientSecretKey: []byte("airgap~secret.value")})
	before := cloud.HostRequests(attackerAuthority)
	b := airgapped(servicePrincipalBinding(ns, "redirected", "app", tenant, app, "sp"), "https://"+attackerAuthority+"/")
	create(t, b)
	deleteAtEnd(t, b)
	eventuallyReady(t, b, metav1.ConditionFalse, acrv1beta2.ReasonAuthorityHostNotAllowed)
	g.Expect(cloud.TenantTokenRequests(tenant)).To(BeZero(), "the client secret was posted to a token endpoint")
	g.Expect(cloud.HostRequests(attackerAuthority)).To(Equal(before))
}

// secretReads counts the GETs of one Secret that pass through a transport.
type secretReads struct {
	next  http.RoundTripper
	path  string
	count atomic.Int32
}

func (s *secretReads) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Method == http.MethodGet && req.URL.Path == s.path {
		s.count.Add(1)
	}
	return s.next.RoundTrip(req)
}

// A pass that mints nothing reads no credential Secret: its watched version says nothing changed. Passes come often
// (every label or annotation change, every service-account event, every start), while the Secret's contents are
// needed only to mint; reading it each time was one apiserver GET per pass, and a credential in memory for nothing.
func TestServicePrincipalSecretIsReadOnlyToMint(t *testing.T) {
	g := NewWithT(t)
	const (
		tenant     = "5e000000-0000-4000-8000-000000000007"
		app        = "5e000000-0000-4000-8000-0000000000a7"
		shardLabel = "acrpull.test/shard"
		shard      = "sp-reads"
	)
	servicePrincipal(tenant, app)
	cloud.AddClientSecret(app, "read~once")
	ns := newNamespace(t)
	reads := &secretReads{path: "/api/v1/namespaces/" + ns + "/secrets/sp"}
	cfg := rest.CopyConfig(env.Config)
	cfg.WrapTransport = func(rt http.RoundTripper) http.RoundTripper { reads.next = rt; return reads }
	stop := startShardController(t, cfg, labels.SelectorFromSet(labels.Set{shardLabel: shard}))
	defer stop()

	serviceAccount(t, ns, "app", "")
	serviceAccount(t, ns, "other", "")
	cred := credentialSecret(t, ns, "sp", true, map[string][]byte{acrpullbinding.ClientSecretKey: []byte("read~once")})
	b := servicePrincipalBinding(ns, "sp-pull", "app", tenant, app, "sp")
	b.Labels = map[string]string{pausedLabel: "true", shardLabel: shard}
	create(t, b)
	deleteAtEnd(t, b)
	eventuallyReady(t, b, metav1.ConditionTrue, acrv1beta2.ReasonTokenMinted)
	minted := reads.count.Load()
	g.Expect(minted).To(BeNumerically(">=", 1), "the credential was read to mint")

	// Passes that mint nothing: annotation changes, then a new target. The new target is the last pass's visible
	// work, and passes of one binding run one after another, so every earlier pass is over once it shows.
	for i := range 3 {
		edit(t, b, func() { b.Annotations = map[string]string{"touched": fmt.Sprint(i)} })
	}
	edit(t, b, func() { b.Spec.ServiceAccountName = "other" })
	g.Eventually(func() []string { return pullSecretNames(g, ns, "other") }).WithTimeout(30 * time.Second).
		Should(ContainElement("acr-pull-sp-pull"))
	g.Expect(reads.count.Load()).To(Equal(minted), "passes that minted nothing read the credential Secret")

	// A rotation is seen in the watched version, and only then is the Secret read again.
	cloud.AddClientSecret(app, "read~twice")
	edit(t, cred, func() { cred.Data[acrpullbinding.ClientSecretKey] = []byte("read~twice") })
	g.Eventually(reads.count.Load).WithTimeout(30 * time.Second).Should(BeNumerically(">", minted))
	eventuallyReady(t, b, metav1.ConditionTrue, acrv1beta2.ReasonTokenMinted)
}
