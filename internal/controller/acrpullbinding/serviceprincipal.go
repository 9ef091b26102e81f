/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

// The service-principal story: a v1beta2 binding names an application and a Secret of its own namespace holding the
// application's client secret or certificate, for clusters outside Azure that have neither IMDS nor federation. The
// Secret's contents are read when the binding mints, never cached; only its metadata is watched, and only where it is
// labelled for acrpull: its version decides whether to mint, so that a rotation mints a new token at once.

package acrpullbinding

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/selection"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	acrv1beta2 "github.com/acrpull/acrpull/api/v1beta2"
	"github.com/acrpull/acrpull/internal/azauth"
	"github.com/acrpull/acrpull/internal/mint"
)

// ServicePrincipalLabel must be "true" on a Secret for a binding to use it as a service principal's credential. The
// Secret's owner opts in: a binding author cannot turn any Secret of the namespace into a pull credential, and the
// controller watches (as metadata) only Secrets carrying it.
const ServicePrincipalLabel = "acr.microsoft.com/service-principal"

// Keys of a service principal's Secret. It holds exactly one credential: a client secret, a PEM certificate with its
// key (the keys of a kubernetes.io/tls Secret), or a PKCS#12 bundle with its password if it has one.
const (
	ClientSecretKey   = "clientSecret"
	CertificateKey    = corev1.TLSCertKey       // tls.crt
	PrivateKeyKey     = corev1.TLSPrivateKeyKey // tls.key
	PKCS12Key         = "certificate.pfx"
	PKCS12PasswordKey = "password"
)

// servicePrincipalRef is an application and the Secret of the binding's namespace that holds its credential.
type servicePrincipalRef struct {
	tenantID   string
	clientID   string
	secretName string
	// version is the Secret's UID and resourceVersion, set by servicePrincipal once it has read the Secret.
	version string
}

// servicePrincipalVersion records the version of the binding's credential Secret, from the watched metadata of
// labelled Secrets, so that a pass that mints nothing reads no Secret. It reports false (and the reason) when the
// Secret cannot be used. A Secret the watch does not show is read live, which says whether it is missing,
// unlabelled, or only too new for the watch.
func (r *reconciler) servicePrincipalVersion(ctx context.Context, s *scope) (bool, error) {
	sp := *s.desired.servicePrincipal
	watched := secretMetadata()
	err := r.credentials.Get(ctx, types.NamespacedName{Namespace: s.binding.object().GetNamespace(), Name: sp.secretName}, watched)
	if apierrors.IsNotFound(err) {
		cred, err := r.servicePrincipal(ctx, s)
		return cred != nil, err
	}
	if err != nil {
		return false, err
	}
	sp.version = secretVersion(watched)
	s.desired.servicePrincipal = &sp
	return true, nil
}

// withCredential completes a service principal's mint request with the credential, read live from its Secret, and
// returns the inputs of what is minted: the Secret may have changed since its version was looked up. It returns
// empty inputs when the Secret can no longer be used (the reason is reported). Other requests are complete as built.
func (r *reconciler) withCredential(ctx context.Context, s *scope, req *mint.Request, inputs string) (string, error) {
	if s.desired.servicePrincipal == nil {
		return inputs, nil
	}
	sp, err := r.servicePrincipal(ctx, s)
	if sp == nil || err != nil {
		return "", err
	}
	req.ServicePrincipal = sp
	return inputsHash(s.desired.inputs()...), nil
}

// secretVersion names one version of a Secret: its UID (a Secret deleted and created again is another) and its
// resourceVersion.
func secretVersion(o metav1.Object) string { return string(o.GetUID()) + "/" + o.GetResourceVersion() }

// servicePrincipal reads the binding's credential Secret and returns the service principal to mint as, or reports
// (and returns nil) why the Secret cannot be used. The read is live: a cache of Secrets' contents would keep every
// credential in the controller's memory, while a binding needs its Secret only when it mints. The Secret is looked
// up by name in the binding's own namespace; the API has no field that could name another.
func (r *reconciler) servicePrincipal(ctx context.Context, s *scope) (*mint.ServicePrincipal, error) {
	sp := *s.desired.servicePrincipal
	namespace := s.binding.object().GetNamespace()
	secret := &corev1.Secret{}
	err := r.APIReader.Get(ctx, types.NamespacedName{Namespace: namespace, Name: sp.secretName}, secret)
	if apierrors.IsNotFound(err) {
		s.fail(acrv1beta2.ReasonServicePrincipalSecretNotFound, fmt.Sprintf(
			"secret %q not found in namespace %q; create it with the service principal's credential and the label %s=true",
			sp.secretName, namespace, ServicePrincipalLabel))
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	cred, problem := credentialOf(secret)
	if problem != "" {
		s.fail(acrv1beta2.ReasonServicePrincipalSecretInvalid, fmt.Sprintf("secret %q %s", sp.secretName, problem))
		return nil, nil
	}
	// The version is part of the inputs and of the token-sharing key: a rotated Secret mints at once, and only
	// bindings reading the very same credential share its tokens.
	sp.version = secretVersion(secret)
	s.desired.servicePrincipal = &sp
	cred.TenantID, cred.ClientID = sp.tenantID, sp.clientID
	cred.Source = namespace + "/" + sp.secretName + "/" + sp.version
	return cred, nil
}

// credentialOf takes the one credential out of a service principal's Secret, or says what is wrong with the Secret
// (naming keys, never values).
func credentialOf(secret *corev1.Secret) (*mint.ServicePrincipal, string) {
	if secret.Labels[ServicePrincipalLabel] != "true" {
		return nil, fmt.Sprintf("lacks the label %s=true, which lets acrpull use it as a service principal's credential",
			ServicePrincipalLabel)
	}
	has := func(key string) bool { return len(secret.Data[key]) > 0 }
	var forms []string
	if has(ClientSecretKey) {
		forms = append(forms, ClientSecretKey)
	}
	if has(CertificateKey) || has(PrivateKeyKey) {
		forms = append(forms, CertificateKey+"/"+PrivateKeyKey)
	}
	if has(PKCS12Key) {
		forms = append(forms, PKCS12Key)
	}
	switch {
	case len(forms) == 0:
		return nil, fmt.Sprintf("holds no credential: set exactly one of %s, %s with %s, or %s",
			ClientSecretKey, CertificateKey, PrivateKeyKey, PKCS12Key)
	case len(forms) > 1:
		return nil, fmt.Sprintf("holds more than one credential (%s): keep exactly one", strings.Join(forms, ", "))
	}
	var cred mint.ServicePrincipal
	switch {
	case has(ClientSecretKey):
		cred.ClientSecret = string(secret.Data[ClientSecretKey])
		return &cred, ""
	case slices.Contains(forms, CertificateKey+"/"+PrivateKeyKey):
		if !has(CertificateKey) || !has(PrivateKeyKey) {
			return nil, fmt.Sprintf("needs both %s and %s for a PEM certificate", CertificateKey, PrivateKeyKey)
		}
		cred.Certificate = slices.Concat(secret.Data[CertificateKey], []byte("\n"), secret.Data[PrivateKeyKey])
	default:
		cred.Certificate, cred.Password = secret.Data[PKCS12Key], string(secret.Data[PKCS12PasswordKey])
	}
	if err := azauth.CheckClientCertificate(cred.Certificate, cred.Password); err != nil {
		detail := "certificate unusable"
		var azErr *azauth.Error
		if errors.As(err, &azErr) {
			// Built from fixed words only: no data, no password.
			detail = azErr.Detail
		}
		return nil, "holds an unusable certificate: " + detail
	}
	return &cred, ""
}

// credentialRefusals are the Entra ID codes that mean the service principal's credential itself is wrong: a client
// secret that is not the application's or has expired, a certificate not registered on it. The fix is in the
// Secret, which the reason says.
var credentialRefusals = []string{"AADSTS7000215", "AADSTS7000222", "AADSTS700027"}

// servicePrincipalFailure rewords Entra ID's refusal of a service principal's credential as a problem of the Secret.
func servicePrincipalFailure(s *scope, reason, message string, err error) (string, string) {
	var azErr *azauth.Error
	if s.desired.servicePrincipal == nil || !errors.As(err, &azErr) || !slices.Contains(credentialRefusals, azErr.Code) {
		return reason, message
	}
	return acrv1beta2.ReasonServicePrincipalSecretInvalid, fmt.Sprintf("secret %q: %s", s.desired.servicePrincipal.secretName, message)
}

// credentialSecretIndex indexes bindings by the Secret holding their service principal's credential.
const credentialSecretIndex = ".spec.auth.servicePrincipal.secretRef.name"

// credentialSecretsCache watches the metadata of Secrets labelled as service-principal credentials, and of no other
// Secret: the manager's cache holds only the controller's own pull secrets, and a cache of every Secret's metadata
// would grow with the cluster. Contents are never cached (servicePrincipal reads them live). It starts with the
// manager's caches, on every replica, so a new leader has it warm.
func credentialSecretsCache(mgr ctrl.Manager) (cache.Cache, error) {
	labelled, err := labels.NewRequirement(ServicePrincipalLabel, selection.Equals, []string{"true"})
	if err != nil {
		return nil, err
	}
	c, err := cache.New(mgr.GetConfig(), cache.Options{
		Scheme: mgr.GetScheme(), Mapper: mgr.GetRESTMapper(), HTTPClient: mgr.GetHTTPClient(),
		ByObject:         map[client.Object]cache.ByObject{&corev1.Secret{}: {Label: labels.NewSelector().Add(*labelled)}},
		DefaultTransform: cache.TransformStripManagedFields(),
	})
	if err != nil {
		return nil, err
	}
	return c, mgr.Add(managerCache{c})
}

// managerCache lets the manager start a cache with its own (before leader election, waiting for it to sync).
type managerCache struct{ cache.Cache }

func (c managerCache) GetCache() cache.Cache { return c.Cache }

// credentialSecretEvents wakes the bindings of a credential Secret's namespace that name it, whatever changed: a
// new resourceVersion is a new credential version (their next pass mints with it), and a deleted or unlabelled
// Secret is reported.
func (r *reconciler) credentialSecretEvents() handler.TypedEventHandler[*metav1.PartialObjectMetadata, reconcile.Request] {
	return handler.TypedEnqueueRequestsFromMapFunc(func(ctx context.Context, secret *metav1.PartialObjectMetadata) []reconcile.Request {
		list := r.api.newList()
		if err := r.Client.List(ctx, list, client.InNamespace(secret.Namespace),
			client.MatchingFields{credentialSecretIndex: secret.Name}, client.UnsafeDisableDeepCopy); err != nil {
			return nil
		}
		var requests []reconcile.Request
		_ = meta.EachListItem(list, func(o runtime.Object) error {
			requests = append(requests, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(o.(client.Object))})
			return nil
		})
		return requests
	})
}
