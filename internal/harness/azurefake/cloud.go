/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

// Package azurefake is a protocol-faithful fake of the Azure endpoints acrpull talks to: Entra ID (OIDC discovery,
// its signing keys and the v2 token endpoint, with client assertions and secrets), the instance metadata service,
// and Azure Container Registry's token exchange, with the registry's /v2/ API proxied to a real OCI registry that
// enforces the tokens the fake issues.
//
// It is an HTTP forward proxy. Clients reach it only through standard configuration (HTTPS_PROXY / HTTP_PROXY and a
// trusted CA), exactly as production code would reach the real hosts: plain-HTTP requests (IMDS) arrive in absolute
// form, HTTPS ones as CONNECT tunnels that the fake terminates with a per-host certificate from its own CA. Hosts it
// does not know are refused, so nothing ever leaves the machine.
package azurefake

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Endpoint names a kind of Azure endpoint, for counters and faults.
type Endpoint string

// The endpoints the fake serves.
const (
	// EntraDiscovery is Entra ID's OpenID configuration and signing keys, which MSAL reads before a token request.
	EntraDiscovery Endpoint = "entra-discovery"
	// EntraToken is Entra ID's v2 token endpoint (client credentials with an assertion or a secret).
	EntraToken Endpoint = "entra-token"
	// IMDSToken is the instance metadata service's managed identity token endpoint.
	IMDSToken Endpoint = "imds-token"
	// ACRExchange trades an Entra ID token for a registry refresh token (POST /oauth2/exchange).
	ACRExchange Endpoint = "acr-exchange"
	// ACRToken trades a registry refresh token for a scoped access token (POST /oauth2/token).
	ACRToken Endpoint = "acr-token"
	// ACRTokenGet is the Docker token endpoint registry clients call with Basic auth (GET /oauth2/token).
	ACRTokenGet Endpoint = "acr-token-get"
	// RegistryV2 is the registry API, proxied to the real registry.
	RegistryV2 Endpoint = "registry-v2"
)

// Endpoints lists every endpoint, in a stable order.
var Endpoints = []Endpoint{EntraDiscovery, EntraToken, IMDSToken, ACRExchange, ACRToken, ACRTokenGet, RegistryV2, ARMRead, ARMWrite}

// ACRIssuer is the issuer of the registry's tokens, which the registry is configured to trust.
const ACRIssuer = "Azure Container Registry"

// Default token lifetimes, as Azure issues them.
const (
	DefaultEntraLifetime      = time.Hour
	DefaultACRRefreshLifetime = 3 * time.Hour
	DefaultACRAccessLifetime  = 75 * time.Minute
)

// Identity is a user-assigned managed identity (or an app registration).
type Identity struct {
	ClientID   string `json:"clientID"`
	ResourceID string `json:"resourceID,omitempty"`
	// PrincipalID is the object ID; empty derives one from the client ID.
	PrincipalID string `json:"principalID,omitempty"`
	TenantID    string `json:"tenantID"`
	// AssignedToVM makes IMDS answer for the identity, as if assigned to the machine the caller runs on.
	AssignedToVM bool `json:"assignedToVM,omitempty"`
	// AdditionalTenants provisions a multi-tenant application in tenants besides its home one: each holds a service
	// principal for it, so those tenants' token endpoints issue it tokens (with their own tid) for the same secret,
	// certificate or federated credential. Tenants not listed refuse it with AADSTS700016, as Entra ID does.
	AdditionalTenants []string `json:"additionalTenants,omitempty"`
}

// inTenant reports whether the application has a service principal in tenant.
func (id Identity) inTenant(tenant string) bool {
	return strings.EqualFold(id.TenantID, tenant) ||
		slices.ContainsFunc(id.AdditionalTenants, func(t string) bool { return strings.EqualFold(t, tenant) })
}

// principalIn is the object ID of the application's service principal in tenant. Every tenant an application is
// provisioned in holds its own service principal, so outside the home tenant the object ID differs; it is derived
// from client and tenant so that it stays stable across restarts of the fake.
func (id Identity) principalIn(tenant string) string {
	if strings.EqualFold(id.TenantID, tenant) {
		return id.PrincipalID
	}
	sum := sha256.Sum256([]byte(strings.ToLower(id.ClientID) + "/" + strings.ToLower(tenant)))
	h := hex.EncodeToString(sum[:16])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}

// FederatedCredential trusts tokens of one issuer and subject, for listed audiences, as the identity.
type FederatedCredential struct {
	Issuer    string   `json:"issuer"`
	Subject   string   `json:"subject"`
	Audiences []string `json:"audiences"`
}

// Registry is a container registry host. Upstream is the real registry its /v2/ API is proxied to.
type Registry struct {
	Host     string   `json:"host"`
	Upstream *url.URL `json:"-"`
	// DisableARMAudience refuses Entra tokens for ARM, as a registry with authentication-as-arm disabled does.
	DisableARMAudience bool `json:"disableARMAudience,omitempty"`
}

// Lifetimes of issued tokens; zero fields take the defaults (Entra 1 h, refresh 3 h, access 75 min).
type Lifetimes struct {
	Entra      time.Duration
	ACRRefresh time.Duration
	ACRAccess  time.Duration
}

// Options configure a Cloud.
type Options struct {
	// Addr is the proxy's listen address; empty picks a free loopback port.
	Addr string
	// Logger, when set, gets one info record per request (endpoint, method, host, path, status, duration). Queries,
	// headers and bodies are never logged: they carry tokens.
	Logger *slog.Logger
}

type roleAssignment struct {
	repositories []string
	actions      []string
}

// Cloud is the fake. Configure it before or while it serves; every method is safe for concurrent use.
type Cloud struct {
	opts Options

	caCert   *x509.Certificate
	caKey    *ecdsa.PrivateKey
	caPEM    []byte
	leafs    sync.Map // host → *tls.Certificate
	entraKey *rsa.PrivateKey
	acrKey   *rsa.PrivateKey
	acrCert  []byte // DER of the self-signed certificate for acrKey

	listener net.Listener
	proxyURL atomic.Pointer[url.URL] // set by Start; read by clients on every request
	server   *http.Server
	tunnels  *connQueue
	inner    *http.Server

	clientOnce      sync.Once
	clientTransport *http.Transport
	// upstream carries proxied registry traffic; it never consults proxy settings, so it cannot loop back here.
	upstream       *http.Transport
	reverseProxies sync.Map // upstream URL → *httputil.ReverseProxy

	mu          sync.RWMutex
	identities  map[string]Identity // by lower-case client ID
	tenants     map[string]bool     // lower-case tenant IDs that hold at least one identity
	federated   map[string][]FederatedCredential
	secrets     map[string]string
	certs       map[string][]*x509.Certificate // client ID → registered certificates (key credentials)
	issuers     map[string][]crypto.PublicKey
	registries  map[string]Registry
	roles       map[string]map[string][]roleAssignment // client ID → host → assignments
	authorities map[string]bool
	armAudience map[string]bool
	lifetimes   Lifetimes

	faults faultTable
	counters
	// arm is Resource Manager's VMs, scale sets, operations and node placements (arm.go).
	arm armState
}

// errNotStarted is what clients of a fake that is not listening get instead of a direct connection.
var errNotStarted = errors.New("the fake Azure cloud is not started")

// New creates a Cloud with a fresh CA and signing keys. It does not listen until Start.
func New(opts Options) (*Cloud, error) {
	c := &Cloud{
		opts:       opts,
		identities: map[string]Identity{}, tenants: map[string]bool{},
		federated: map[string][]FederatedCredential{}, secrets: map[string]string{}, issuers: map[string][]crypto.PublicKey{},
		certs:      map[string][]*x509.Certificate{},
		registries: map[string]Registry{}, roles: map[string]map[string][]roleAssignment{},
		authorities: map[string]bool{"login.microsoftonline.com": true, "login.microsoftonline.us": true, "login.chinacloudapi.cn": true},
		armAudience: map[string]bool{
			"https://management.azure.com": true, "https://management.core.windows.net": true,
			"https://management.core.usgovcloudapi.net": true, "https://management.usgovcloudapi.net": true,
			"https://management.core.chinacloudapi.cn": true, "https://management.chinacloudapi.cn": true,
		},
		upstream: &http.Transport{
			Proxy: nil, MaxIdleConns: 256, MaxIdleConnsPerHost: 64, IdleConnTimeout: 90 * time.Second,
			DialContext: (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		},
	}
	c.counters.init()
	if err := c.generateKeys(); err != nil {
		return nil, err
	}
	return c, nil
}

// CACertPEM is the CA that signs the fake hosts' certificates; clients trust it (SSL_CERT_FILE).
func (c *Cloud) CACertPEM() []byte { return c.caPEM }

// CertPool holds the fake's CA.
func (c *Cloud) CertPool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(c.caCert)
	return p
}

// RegistryTokenCertPEM is the certificate whose key signs registry tokens: the registry's rootcertbundle.
func (c *Cloud) RegistryTokenCertPEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.acrCert})
}

// ProxyURL is the address clients use as HTTPS_PROXY and HTTP_PROXY; nil before Start.
func (c *Cloud) ProxyURL() *url.URL {
	if u := c.proxyURL.Load(); u != nil {
		clone := *u
		return &clone
	}
	return nil
}

// HTTPClient returns a client that reaches the fake hosts through the proxy and trusts the fake's CA: what a
// production client gets from HTTPS_PROXY and SSL_CERT_FILE. Every client shares one connection pool, so callers
// may ask for a client per request without leaking connections. Requests fail until Start.
func (c *Cloud) HTTPClient() *http.Client {
	c.clientOnce.Do(func() {
		t := http.DefaultTransport.(*http.Transport).Clone()
		// Resolved per request, and an error before Start: a client must never go direct to the real hosts.
		t.Proxy = func(*http.Request) (*url.URL, error) {
			if u := c.ProxyURL(); u != nil {
				return u, nil
			}
			return nil, errNotStarted
		}
		t.TLSClientConfig.RootCAs = c.CertPool()
		t.MaxIdleConns = 256
		t.MaxIdleConnsPerHost = 64
		c.clientTransport = t
	})
	return &http.Client{Transport: c.clientTransport}
}

// AddIdentity adds or replaces an identity.
func (c *Cloud) AddIdentity(id Identity) {
	c.mu.Lock()
	defer c.mu.Unlock()
	key := strings.ToLower(id.ClientID)
	if id.PrincipalID == "" {
		id.PrincipalID = "principal-" + key
	}
	id.AdditionalTenants = slices.Clone(id.AdditionalTenants)
	c.identities[key] = id
	c.tenants[strings.ToLower(id.TenantID)] = true
	for _, t := range id.AdditionalTenants {
		c.tenants[strings.ToLower(t)] = true
	}
}

// ProvisionInTenant adds a service principal for an existing application to another tenant, as an administrator
// of that tenant consenting to a multi-tenant application does. It fails for an application never added.
func (c *Cloud) ProvisionInTenant(clientID, tenant string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	key := strings.ToLower(clientID)
	id, ok := c.identities[key]
	if !ok {
		return fmt.Errorf("provisioning application %s in tenant %s: no such application", clientID, tenant)
	}
	if !id.inTenant(tenant) {
		id.AdditionalTenants = append(slices.Clone(id.AdditionalTenants), tenant)
		c.identities[key] = id
	}
	c.tenants[strings.ToLower(tenant)] = true
	return nil
}

// AddFederatedCredential lets tokens matching fc act as the identity.
func (c *Cloud) AddFederatedCredential(clientID string, fc FederatedCredential) {
	c.mu.Lock()
	defer c.mu.Unlock()
	key := strings.ToLower(clientID)
	c.federated[key] = append(c.federated[key], fc)
}

// RemoveFederatedCredentials removes every federated credential of the identity.
func (c *Cloud) RemoveFederatedCredentials(clientID string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.federated, strings.ToLower(clientID))
}

// AddClientSecret lets the identity authenticate with a secret (a service principal).
func (c *Cloud) AddClientSecret(clientID, secret string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.secrets[strings.ToLower(clientID)] = secret
}

// AddClientCertificate registers a certificate on the application (a key credential, as uploaded under
// "Certificates & secrets"), so that client assertions it signs authenticate the application. Entra ID identifies the
// certificate by the thumbprint in the assertion's header (x5t#S256, or x5t), never by an x5c chain, and honours it
// only between its NotBefore and NotAfter.
func (c *Cloud) AddClientCertificate(clientID string, cert *x509.Certificate) {
	c.mu.Lock()
	defer c.mu.Unlock()
	key := strings.ToLower(clientID)
	c.certs[key] = append(c.certs[key], cert)
}

// RemoveClientCertificates removes every certificate registered on the application.
func (c *Cloud) RemoveClientCertificates(clientID string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.certs, strings.ToLower(clientID))
}

// TrustIssuer makes keys verify client assertions from issuer (a cluster's service-account issuer).
func (c *Cloud) TrustIssuer(issuer string, keys ...crypto.PublicKey) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.issuers[issuer] = append(c.issuers[issuer], keys...)
}

// AddRegistry adds or replaces a registry host.
func (c *Cloud) AddRegistry(r Registry) {
	c.mu.Lock()
	defer c.mu.Unlock()
	r.Host = strings.ToLower(r.Host)
	c.registries[r.Host] = r
}

// AddAuthorityHost adds an Entra ID authority host (an air-gapped cloud's).
func (c *Cloud) AddAuthorityHost(host string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.authorities[strings.ToLower(host)] = true
}

// AddARMAudience makes registries accept Entra tokens for another ARM audience (an air-gapped cloud's). It only
// concerns registries: Entra ID and IMDS issue tokens for any resource asked for (https://vault.azure.net,
// https://management.azure.com/, an application ID URI), with that resource as aud, and need no allow-list.
func (c *Cloud) AddARMAudience(audience string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.armAudience[strings.TrimSuffix(audience, "/")] = true
}

// AddRoleAssignment lets the identity act on repositories of a registry ("*" for all) with the actions (pull, push,
// delete), as the AcrPull / AcrPush roles or repository-scoped permissions do.
func (c *Cloud) AddRoleAssignment(clientID, host string, repositories, actions []string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	key, host := strings.ToLower(clientID), strings.ToLower(host)
	if c.roles[key] == nil {
		c.roles[key] = map[string][]roleAssignment{}
	}
	c.roles[key][host] = append(c.roles[key][host], roleAssignment{repositories: repositories, actions: actions})
}

// SetLifetimes sets the lifetimes of tokens issued from now on; zero fields take the defaults.
func (c *Cloud) SetLifetimes(l Lifetimes) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.lifetimes = l
}

// lifetime is how long a token issued by ep lives.
func (c *Cloud) lifetime(ep Endpoint) time.Duration {
	c.mu.RLock()
	defer c.mu.RUnlock()
	switch ep {
	case ACRExchange:
		return positiveOr(c.lifetimes.ACRRefresh, DefaultACRRefreshLifetime)
	case ACRToken, ACRTokenGet:
		return positiveOr(c.lifetimes.ACRAccess, DefaultACRAccessLifetime)
	}
	return positiveOr(c.lifetimes.Entra, DefaultEntraLifetime)
}

func positiveOr(d, fallback time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return fallback
}

func (c *Cloud) identity(clientID string) (Identity, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	id, ok := c.identities[strings.ToLower(clientID)]
	return id, ok
}

func (c *Cloud) knownTenant(tenant string) bool {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.tenants[strings.ToLower(tenant)]
}
