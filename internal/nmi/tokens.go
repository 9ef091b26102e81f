/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

package nmi

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"

	aadv1 "github.com/acrpull/acrpull/api/aadpodidentity/v1"
	"github.com/acrpull/acrpull/internal/azauth"
	"github.com/acrpull/acrpull/internal/tokencache"
)

// AzureClient is the part of Azure the agent uses; azauth.Client implements it.
type AzureClient interface {
	ManagedIdentityToken(ctx context.Context, id azauth.ManagedIdentity, audience string) (azauth.Token, error)
	WorkloadIdentityToken(ctx context.Context, cloud azauth.Cloud, id azauth.WorkloadIdentity, audience string) (azauth.Token, error)
	ClientSecretToken(ctx context.Context, cloud azauth.Cloud, tenantID, clientID, secret, audience string) (azauth.Token, error)
	ClientCertificateToken(ctx context.Context, cloud azauth.Cloud, tenantID, clientID string, pkcs12 []byte, password, audience string) (azauth.Token, error)
}

// Token sources for user-assigned identities (type 0).
const (
	// SourceFederation trades a service-account token bound to the calling pod at Entra ID: no VM assignment, no
	// wait, and Entra ID itself checks that the identity trusts the pod's service account.
	SourceFederation = "federation"
	// SourceIMDS asks the node's instance metadata service, for identities assigned to the node's VM or scale set
	// by hand (upstream's managed mode) or by an assignment controller.
	SourceIMDS = "imds"
	// SourceAuto uses the node's IMDS for pods the assignment controller recorded an assignment for (waiting until
	// it is done), and federation for the others. Clusters that run an assignment controller keep working as they
	// did, and new pods move to federation as the controller stops assigning them: a migration without a flag day.
	SourceAuto = "auto"
)

// TokenSourceAnnotation on an AzureIdentity overrides the agent's type-0 source for that identity, so a cluster can
// move identities to federation one at a time.
const TokenSourceAnnotation = "acrpull.microsoft.com/token-source"

// refreshMargin is how long before expiry a cached token stops being handed out. Azure SDKs refresh tokens five
// minutes before they expire; a token with less left would make them come straight back.
const refreshMargin = 5 * time.Minute

// Issuer gets tokens for pods. Tokens are cached per source, identity, tenant and resource (and, for federation,
// the pod's service account, because Entra ID decides per account whether the identity trusts it), so many pods
// asking for one identity cause one Azure call.
type Issuer struct {
	Azure AzureClient
	Cache *tokencache.Cache
	Clock clock.PassiveClock
	// Kube mints service-account tokens (TokenRequest) and reads the Secrets identities name, by name only.
	Kube client.Client
	// Type0Source is SourceAuto, SourceFederation or SourceIMDS.
	Type0Source string
	// Assignments, when set, follows the assignment controller's records (classic mode): SourceIMDS waits for the
	// pod's record to be Assigned, SourceAuto uses it to choose. Nil means identities are on nodes already (managed
	// mode) or federation only.
	Assignments *Assignments
	// Audience is the audience of the service-account tokens presented to Entra ID.
	Audience string
	// DefaultTenantID serves identities without spec.tenantID.
	DefaultTenantID string
	// Cloud is the Entra ID authority for identities without spec.adEndpoint.
	Cloud azauth.Cloud
	// AuthorityHosts are the authorities an identity's spec.adEndpoint may name; nil allows the known clouds' and
	// Cloud's. Anything else would send the identity's secret, certificate assertion or the pod's service-account
	// token to a host the identity's author chose.
	AuthorityHosts *azauth.AuthorityHosts
	// AllowCrossNamespaceSecrets lets an identity's spec.clientPassword name a Secret in another namespace, as
	// upstream did. Off, a tenant able to write identities in its own namespace cannot have the agent, which may get
	// Secrets cluster-wide, read another team's service principal secret for it.
	AllowCrossNamespaceSecrets bool
	// NodeName is the agent's node: Tokens serves only pods whose spec.nodeName it is. Empty serves no pod.
	NodeName string
	// Metrics records each Azure call (cache misses only) and failed Secret reads under upstream's names; nil records
	// nothing.
	Metrics *Metrics
}

// measured runs one Azure call and records it under op.
func (i *Issuer) measured(op string, call func() (azauth.Token, error)) (azauth.Token, error) {
	start := i.Clock.Now()
	tok, err := call()
	i.Metrics.azureCall(op, i.Clock.Since(start), err)
	return tok, err
}

// Failure kinds the HTTP layer maps to status codes.
var (
	// errIdentityConfig says the identity cannot work as written (missing secret, bad certificate, no tenant).
	errIdentityConfig = errors.New("identity configuration")
)

// Tokens returns the tokens for identity and resource on behalf of pod: one, or for a multi-tenant service principal
// the primary tenant's followed by one per auxiliary tenant.
func (i *Issuer) Tokens(ctx context.Context, pod *corev1.Pod, id *aadv1.AzureIdentity, resource string) ([]azauth.Token, error) {
	if err := i.onThisNode(pod); err != nil {
		return nil, err
	}
	switch id.Spec.Type {
	case aadv1.UserAssignedMSI:
		useIMDS, err := i.fromIMDS(ctx, pod, id)
		if err != nil {
			return nil, err
		}
		if useIMDS {
			tok, err := i.imdsToken(ctx, id, resource)
			return []azauth.Token{tok}, err
		}
		tok, err := i.federatedToken(ctx, pod, id, resource)
		return []azauth.Token{tok}, err
	case aadv1.ServicePrincipal:
		return i.secretTokens(ctx, id, resource)
	case aadv1.ServicePrincipalCertificate:
		tok, err := i.certificateToken(ctx, id, resource)
		return []azauth.Token{tok}, err
	}
	return nil, fmt.Errorf("%w: unknown identity type %d", errIdentityConfig, id.Spec.Type)
}

// errNotThisNodesPod says the agent may not serve the pod: it runs on another node, or it has no UID (so it is not an
// object read from the apiserver, and a token could not be bound to it).
var errNotThisNodesPod = errors.New("not a pod of this node")

// onThisNode refuses pods of other nodes, whichever caller found the pod. The agent may request tokens of every
// service account, and the admission policy on its token requests cannot see which node the pod it binds them to
// runs on; so the node is checked here, before any token request or Azure call. spec.nodeName never changes once set,
// and the token request binds the pod's UID, so the pod checked is the pod the token is bound to.
func (i *Issuer) onThisNode(pod *corev1.Pod) error {
	if i.NodeName == "" || pod.Spec.NodeName != i.NodeName {
		return fmt.Errorf("%w: pod %s/%s runs on node %q, this agent serves %q", errNotThisNodesPod, pod.Namespace, pod.Name,
			pod.Spec.NodeName, i.NodeName)
	}
	if pod.UID == "" {
		return fmt.Errorf("%w: pod %s/%s has no UID to bind a token to", errNotThisNodesPod, pod.Namespace, pod.Name)
	}
	return nil
}

// IMDSToken gets a token from the node's instance metadata service for whichever identity the request names, for
// pods an AzurePodIdentityException lets through.
func (i *Issuer) IMDSToken(ctx context.Context, clientID, resourceID, resource string) (azauth.Token, error) {
	key := "imds|" + strings.ToLower(clientID) + "|" + strings.ToLower(resourceID) + "|" + resource
	return i.Cache.Get(ctx, "pod-identity", key, i.fresh, func(ctx context.Context) (azauth.Token, error) {
		op := opTokenIMDSUser
		if clientID == "" && resourceID == "" {
			op = opTokenIMDSSystem
		}
		return i.measured(op, func() (azauth.Token, error) {
			return i.Azure.ManagedIdentityToken(ctx, azauth.ManagedIdentity{ClientID: clientID, ResourceID: resourceID}, resource)
		})
	})
}

func (i *Issuer) type0Source(id *aadv1.AzureIdentity) string {
	switch s := id.Annotations[TokenSourceAnnotation]; s {
	case SourceIMDS, SourceFederation, SourceAuto:
		return s
	}
	return i.Type0Source
}

// fromIMDS decides where a user-assigned identity's token comes from for pod, waiting for the assignment controller
// where the token can only come from the node's IMDS once it has done its work.
func (i *Issuer) fromIMDS(ctx context.Context, pod *corev1.Pod, id *aadv1.AzureIdentity) (bool, error) {
	switch i.type0Source(id) {
	case SourceFederation:
		return false, nil
	case SourceIMDS:
		if i.Assignments == nil {
			return true, nil
		}
		return true, i.Assignments.wait(ctx, pod, id)
	}
	if i.Assignments == nil {
		return false, nil
	}
	rec, err := i.Assignments.recordForAuto(ctx, pod, id)
	if err != nil || rec == nil {
		return false, err
	}
	return true, i.Assignments.wait(ctx, pod, id)
}

func (i *Issuer) fresh(t azauth.Token) bool {
	margin := min(refreshMargin, t.Lifetime()/4)
	return i.Clock.Now().Add(margin).Before(t.ExpiresAt)
}

func (i *Issuer) imdsToken(ctx context.Context, id *aadv1.AzureIdentity, resource string) (azauth.Token, error) {
	return i.IMDSToken(ctx, id.Spec.ClientID, id.Spec.ResourceID, resource)
}

func (i *Issuer) federatedToken(ctx context.Context, pod *corev1.Pod, id *aadv1.AzureIdentity, resource string) (azauth.Token, error) {
	if id.Spec.ClientID == "" {
		return azauth.Token{}, fmt.Errorf("%w: federation needs spec.clientID", errIdentityConfig)
	}
	tenant, cloud, err := i.tenantAndCloud(id)
	if err != nil {
		return azauth.Token{}, err
	}
	sa := pod.Spec.ServiceAccountName
	if sa == "" {
		sa = "default"
	}
	key := strings.Join([]string{"federation", cloud.AuthorityHost, tenant, strings.ToLower(id.Spec.ClientID),
		pod.Namespace + "/" + sa, resource}, "|")
	// The assertion is bound to the calling pod: the apiserver refuses it if the pod is gone or was replaced (UID),
	// and the token dies with the pod.
	assertion := func(ctx context.Context) (string, error) {
		tr := &authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{
			Audiences:         []string{i.Audience},
			ExpirationSeconds: ptrTo(int64(600)),
			BoundObjectRef:    &authenticationv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: pod.Name, UID: pod.UID},
		}}
		account := &corev1.ServiceAccount{}
		account.Namespace, account.Name = pod.Namespace, sa
		if err := i.Kube.SubResource("token").Create(ctx, account, tr); err != nil {
			return "", fmt.Errorf("requesting a token for service account %s/%s bound to pod %s: %w", pod.Namespace, sa, pod.Name, err)
		}
		return tr.Status.Token, nil
	}
	return i.Cache.Get(ctx, "pod-identity", key, i.fresh, func(ctx context.Context) (azauth.Token, error) {
		return i.measured(opTokenEntra, func() (azauth.Token, error) {
			return i.Azure.WorkloadIdentityToken(ctx, cloud,
				azauth.WorkloadIdentity{TenantID: tenant, ClientID: id.Spec.ClientID, Assertion: assertion}, resource)
		})
	})
}

func (i *Issuer) secretTokens(ctx context.Context, id *aadv1.AzureIdentity, resource string) ([]azauth.Token, error) {
	tenant, cloud, err := i.tenantAndCloud(id)
	if err != nil {
		return nil, err
	}
	secret, err := i.secret(ctx, id)
	if err != nil {
		return nil, err
	}
	value, err := clientSecretOf(secret)
	if err != nil {
		return nil, err
	}
	tenants := append([]string{tenant}, id.Spec.AuxiliaryTenantIDs...)
	out := make([]azauth.Token, 0, len(tenants))
	for _, t := range tenants {
		// The secret's digest is part of the key, so a rotated secret is used at once.
		key := strings.Join([]string{"secret", cloud.AuthorityHost, t, strings.ToLower(id.Spec.ClientID), digest(value), resource}, "|")
		tok, err := i.Cache.Get(ctx, "pod-identity", key, i.fresh, func(ctx context.Context) (azauth.Token, error) {
			return i.measured(opTokenEntra, func() (azauth.Token, error) {
				return i.Azure.ClientSecretToken(ctx, cloud, t, id.Spec.ClientID, string(value), resource)
			})
		})
		if err != nil {
			return nil, fmt.Errorf("tenant %s: %w", t, err)
		}
		out = append(out, tok)
	}
	return out, nil
}

func (i *Issuer) certificateToken(ctx context.Context, id *aadv1.AzureIdentity, resource string) (azauth.Token, error) {
	tenant, cloud, err := i.tenantAndCloud(id)
	if err != nil {
		return azauth.Token{}, err
	}
	secret, err := i.secret(ctx, id)
	if err != nil {
		return azauth.Token{}, err
	}
	cert := secret.Data["certificate"]
	if len(cert) == 0 {
		return azauth.Token{}, fmt.Errorf("%w: secret %s/%s has no key \"certificate\"", errIdentityConfig, secret.Namespace, secret.Name)
	}
	password := string(secret.Data["password"])
	key := strings.Join([]string{"certificate", cloud.AuthorityHost, tenant, strings.ToLower(id.Spec.ClientID),
		digest(append(slices.Clone(cert), password...)), resource}, "|")
	return i.Cache.Get(ctx, "pod-identity", key, i.fresh, func(ctx context.Context) (azauth.Token, error) {
		return i.measured(opTokenEntra, func() (azauth.Token, error) {
			return i.Azure.ClientCertificateToken(ctx, cloud, tenant, id.Spec.ClientID, cert, password, resource)
		})
	})
}

// secret reads the Secret an identity names with a single GET: the agent never lists or watches Secrets.
func (i *Issuer) secret(ctx context.Context, id *aadv1.AzureIdentity) (*corev1.Secret, error) {
	ref := id.Spec.ClientPassword
	if ref.Name == "" {
		return nil, fmt.Errorf("%w: spec.clientPassword names no secret", errIdentityConfig)
	}
	ns := ref.Namespace
	if ns == "" {
		ns = id.Namespace
	}
	if ns != id.Namespace && !i.AllowCrossNamespaceSecrets {
		return nil, fmt.Errorf("%w: spec.clientPassword names secret %s/%s, outside the identity's namespace %s: the agent "+
			"reads Secrets only from the identity's own namespace unless started with --allow-cross-namespace-secrets "+
			"(chart value podIdentity.allowCrossNamespaceSecrets)", errIdentityConfig, ns, ref.Name, id.Namespace)
	}
	secret := &corev1.Secret{}
	if err := i.Kube.Get(ctx, types.NamespacedName{Namespace: ns, Name: ref.Name}, secret); err != nil {
		i.Metrics.kubeError(opGetSecret)
		return nil, fmt.Errorf("%w: reading secret %s/%s: %v", errIdentityConfig, ns, ref.Name, err)
	}
	return secret, nil
}

// clientSecretOf is the client secret in a type-1 identity's Secret. Upstream takes "the first value", which with
// several keys is whichever Go's map order yields; acrpull takes the only value, or the first key in sorted order.
func clientSecretOf(secret *corev1.Secret) ([]byte, error) {
	keys := make([]string, 0, len(secret.Data))
	for k := range secret.Data {
		keys = append(keys, k)
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("%w: secret %s/%s is empty", errIdentityConfig, secret.Namespace, secret.Name)
	}
	slices.Sort(keys)
	return secret.Data[keys[0]], nil
}

func (i *Issuer) tenantAndCloud(id *aadv1.AzureIdentity) (string, azauth.Cloud, error) {
	tenant := id.Spec.TenantID
	if tenant == "" {
		tenant = i.DefaultTenantID
	}
	if tenant == "" {
		return "", azauth.Cloud{}, fmt.Errorf("%w: no spec.tenantID and no default tenant configured", errIdentityConfig)
	}
	cloud := i.Cloud
	if id.Spec.ADEndpoint != "" {
		authority, err := i.authorityHosts().Check(id.Spec.ADEndpoint)
		if err != nil {
			return "", azauth.Cloud{}, fmt.Errorf("%w: spec.adEndpoint: %v", errIdentityConfig, err)
		}
		cloud.AuthorityHost = authority
	}
	return tenant, cloud, nil
}

func (i *Issuer) authorityHosts() *azauth.AuthorityHosts {
	if i.AuthorityHosts != nil {
		return i.AuthorityHosts
	}
	// The configured authority was checked when the agent started; one that does not parse allows nothing more.
	hosts, err := azauth.NewAuthorityHosts(i.Cloud.AuthorityHost)
	if err != nil {
		hosts, _ = azauth.NewAuthorityHosts()
	}
	return hosts
}

// digest names secret material in cache keys without keeping it there.
func digest(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:8])
}

func ptrTo[T any](v T) *T { return &v }
