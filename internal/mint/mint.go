/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

// Package mint turns an identity, a registry and a scope into a registry credential: an Entra ID token (managed
// identity through IMDS, workload identity through a service-account assertion, or a service principal with its
// client secret or certificate), exchanged for the registry's
// refresh token, then, for a scoped binding, for an access token. Every layer is shared through the token cache.
package mint

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"k8s.io/utils/clock"

	"github.com/acrpull/acrpull/internal/azauth"
	"github.com/acrpull/acrpull/internal/tokencache"
)

// Cache layers, as reported to metrics.
const (
	LayerEntra      = "entra"
	LayerACRRefresh = "acr-refresh"
	LayerACRAccess  = "acr-access"
)

// intermediateMinValidity is how much life an Entra token or a registry refresh token needs left to be used for
// one more exchange.
const intermediateMinValidity = 5 * time.Minute

// AzureClient is the part of Azure the minter uses; azauth.Client implements it, tests may fake it.
type AzureClient interface {
	ManagedIdentityToken(ctx context.Context, id azauth.ManagedIdentity, audience string) (azauth.Token, error)
	WorkloadIdentityToken(ctx context.Context, cloud azauth.Cloud, id azauth.WorkloadIdentity, audience string) (azauth.Token, error)
	ExchangeForRefreshToken(ctx context.Context, server string, entraToken azauth.Token) (azauth.Token, error)
	AccessToken(ctx context.Context, server, scope string, refreshToken azauth.Token) (azauth.Token, error)
	ClientSecretToken(ctx context.Context, cloud azauth.Cloud, tenantID, clientID, secret, audience string) (azauth.Token, error)
	ClientCertificateToken(ctx context.Context, cloud azauth.Cloud, tenantID, clientID string, certificate []byte, password, audience string) (azauth.Token, error)
}

// Request says which credential to mint.
type Request struct {
	// Server is the registry host.
	Server string
	// Scope limits the credential (space-separated scopes); empty yields the registry-wide refresh token.
	Scope string
	// Cloud gives the Entra ID authority for workload identities.
	Cloud azauth.Cloud
	// Audiences are the Entra ID token audiences to try, in order; the registry may refuse one and accept the next.
	Audiences []string
	// Exactly one of ManagedIdentity, WorkloadIdentity and ServicePrincipal is set.
	ManagedIdentity  *azauth.ManagedIdentity
	WorkloadIdentity *WorkloadIdentity
	ServicePrincipal *ServicePrincipal
	// Fresh says whether an already-minted credential is still fresh enough for this caller; a cached one that is
	// not gets replaced.
	Fresh func(azauth.Token) bool
}

// WorkloadIdentity is a federated identity and the service account it is federated with.
type WorkloadIdentity struct {
	azauth.WorkloadIdentity
	// ServiceAccount is namespace/name of the federated account; tokens are shared per account and identity.
	ServiceAccount string
}

// ServicePrincipal is an application authenticating with a client secret or with a certificate. Its credential is
// secret: never log or format it (String leaves it out).
type ServicePrincipal struct {
	TenantID string
	ClientID string
	// Source names where the credential came from and its version, for example a Secret's namespace, name, UID and
	// resourceVersion. Tokens are shared only between requests with the same source: two bindings naming the same
	// application with different secrets never share one, and a rotated secret is used at once.
	Source string
	// Exactly one of ClientSecret and Certificate is set. Certificate is PEM (certificate and RSA key) or PKCS#12,
	// protected by Password.
	ClientSecret string
	Certificate  []byte
	Password     string
}

// String names the application and the credential's source, never the credential.
func (sp ServicePrincipal) String() string {
	return fmt.Sprintf("service principal %s in tenant %s (credential from %s)", sp.ClientID, sp.TenantID, sp.Source)
}

// Credential is a minted registry token and the audience the registry accepted.
type Credential struct {
	Token    azauth.Token
	Audience string
}

// Minter mints credentials. It is safe for concurrent use.
type Minter struct {
	azure AzureClient
	cache *tokencache.Cache
	clock clock.PassiveClock

	// winners remembers, per identity and registry, the audience the registry accepted, so later mints try it first.
	winners sync.Map
}

// New returns a Minter.
func New(azure AzureClient, cache *tokencache.Cache, clk clock.PassiveClock) *Minter {
	return &Minter{azure: azure, cache: cache, clock: clk}
}

// Mint returns a credential for req, from the cache when one is fresh enough.
func (m *Minter) Mint(ctx context.Context, req Request) (Credential, error) {
	identity := identityKey(req)
	registry := registryKey(req)
	fresh := req.Fresh
	if fresh == nil {
		fresh = m.validFor(intermediateMinValidity)
	}
	refreshFresh := m.validFor(intermediateMinValidity)
	if req.Scope == "" {
		// The refresh token is the credential itself, so the caller's freshness applies to it.
		refreshFresh = fresh
	}
	refreshToken := func(ctx context.Context) (azauth.Token, error) {
		return m.cache.Get(ctx, LayerACRRefresh, "rt|"+registry, refreshFresh, func(ctx context.Context) (azauth.Token, error) {
			return m.exchange(ctx, req, identity, registry)
		})
	}
	var tok azauth.Token
	var err error
	if req.Scope == "" {
		tok, err = refreshToken(ctx)
	} else {
		tok, err = m.cache.Get(ctx, LayerACRAccess, req.Key(), fresh, func(ctx context.Context) (azauth.Token, error) {
			rt, err := refreshToken(ctx)
			if err != nil {
				return azauth.Token{}, err
			}
			return m.azure.AccessToken(ctx, req.Server, req.Scope, rt)
		})
	}
	if err != nil {
		return Credential{}, err
	}
	audience, _ := m.winners.Load(registry)
	aud, _ := audience.(string)
	return Credential{Token: tok, Audience: aud}, nil
}

// exchange gets an Entra ID token and trades it for the registry's refresh token, trying each audience in turn
// while the registry refuses them (a registry with authentication-as-arm disabled refuses ARM tokens).
func (m *Minter) exchange(ctx context.Context, req Request, identity, registry string) (azauth.Token, error) {
	var lastErr error
	for _, audience := range m.orderedAudiences(req.Audiences, registry) {
		entra, err := m.cache.Get(ctx, LayerEntra, "entra|"+identity+"|"+audience, m.validFor(intermediateMinValidity),
			func(ctx context.Context) (azauth.Token, error) { return m.entraToken(ctx, req, audience) })
		if err != nil {
			return azauth.Token{}, err
		}
		rt, err := m.azure.ExchangeForRefreshToken(ctx, req.Server, entra)
		if err == nil {
			m.winners.Store(registry, audience)
			return rt, nil
		}
		lastErr = err
		if azauth.KindOf(err) != azauth.RegistryDenied {
			break
		}
	}
	return azauth.Token{}, lastErr
}

func (m *Minter) entraToken(ctx context.Context, req Request, audience string) (azauth.Token, error) {
	if req.WorkloadIdentity != nil {
		return m.azure.WorkloadIdentityToken(ctx, req.Cloud, req.WorkloadIdentity.WorkloadIdentity, audience)
	}
	if sp := req.ServicePrincipal; sp != nil {
		if sp.Certificate != nil {
			return m.azure.ClientCertificateToken(ctx, req.Cloud, sp.TenantID, sp.ClientID, sp.Certificate, sp.Password, audience)
		}
		return m.azure.ClientSecretToken(ctx, req.Cloud, sp.TenantID, sp.ClientID, sp.ClientSecret, audience)
	}
	return m.azure.ManagedIdentityToken(ctx, *req.ManagedIdentity, audience)
}

func (m *Minter) orderedAudiences(audiences []string, registry string) []string {
	w, ok := m.winners.Load(registry)
	if !ok {
		return audiences
	}
	ordered := []string{w.(string)}
	for _, a := range audiences {
		if a != w.(string) {
			ordered = append(ordered, a)
		}
	}
	return ordered
}

func (m *Minter) validFor(d time.Duration) func(azauth.Token) bool {
	return func(t azauth.Token) bool { return m.clock.Now().Add(d).Before(t.ExpiresAt) }
}

// Key names the credential req asks for, as the cache holds it: requests with one key are answered by one cached
// token, and fail together while Azure fails them, so a caller can wait on the key instead of retrying on its own.
func (req Request) Key() string {
	if req.Scope == "" {
		return "rt|" + registryKey(req)
	}
	return "at|" + registryKey(req) + "|" + req.Scope
}

// registryKey names an identity at one registry: the audience the registry accepted and its refresh token are
// kept per registry key.
func registryKey(req Request) string { return identityKey(req) + "|" + strings.ToLower(req.Server) }

// identityKey names the identity a request uses. Workload identities are keyed by their federated service account
// too, because Entra ID issues per assertion subject; service principals by their credential's source and version,
// because only the same credential may share a token.
func identityKey(req Request) string {
	if sp := req.ServicePrincipal; sp != nil {
		return "sp|" + strings.ToLower(req.Cloud.AuthorityHost) + "|" + strings.ToLower(sp.TenantID) + "|" +
			strings.ToLower(sp.ClientID) + "|" + sp.Source
	}
	if wi := req.WorkloadIdentity; wi != nil {
		return "wi|" + strings.ToLower(req.Cloud.AuthorityHost) + "|" + strings.ToLower(wi.TenantID) + "|" +
			strings.ToLower(wi.ClientID) + "|" + wi.ServiceAccount
	}
	mi := req.ManagedIdentity
	if mi.ClientID != "" {
		return "mi|client|" + strings.ToLower(mi.ClientID)
	}
	return "mi|resource|" + strings.ToLower(mi.ResourceID)
}
