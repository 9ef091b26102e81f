/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

// Package azurefake is a protocol-faithful fake of the Azure endpoints acrpull talks to: Entra ID (OIDC discovery
// and the v2 token endpoint, with client assertions and secrets), the instance metadata service, and Azure Container
// Registry's token exchange, with the registry's /v2/ API proxied to a real OCI registry that enforces the tokens it
// issues.
//
// It is an HTTP forward proxy. Clients reach it only through standard configuration (HTTPS_PROXY / HTTP_PROXY and a
// trusted CA), exactly as production code would reach the real hosts: plain-HTTP requests (IMDS) arrive in absolute
// form, HTTPS ones as CONNECT tunnels that the fake terminates with a per-host certificate from its own CA.
package azurefake

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"
)

// Endpoint names a kind of Azure endpoint, for counters and faults.
type Endpoint string

// The endpoints the fake serves.
const (
	EntraDiscovery Endpoint = "entra-discovery"
	EntraToken     Endpoint = "entra-token"
	IMDSToken      Endpoint = "imds-token"
	ACRExchange    Endpoint = "acr-exchange"
	ACRToken       Endpoint = "acr-token"
	ACRTokenGet    Endpoint = "acr-token-get"
	RegistryV2     Endpoint = "registry-v2"
)

// Endpoints lists every endpoint, in a stable order.
var Endpoints = []Endpoint{EntraDiscovery, EntraToken, IMDSToken, ACRExchange, ACRToken, ACRTokenGet, RegistryV2}

// ACRIssuer is the issuer of the registry's tokens, which the registry is configured to trust.
const ACRIssuer = "Azure Container Registry"

// Identity is a user-assigned managed identity (or an app registration).
type Identity struct {
	ClientID    string `json:"clientID"`
	ResourceID  string `json:"resourceID,omitempty"`
	PrincipalID string `json:"principalID,omitempty"`
	TenantID    string `json:"tenantID"`
	// AssignedToVM makes IMDS answer for the identity, as if assigned to the machine the caller runs on.
	AssignedToVM bool `json:"assignedToVM,omitempty"`
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

// Fault changes how an endpoint answers until cleared (or for Count requests).
type Fault struct {
	// Status, when set, is returned instead of the real answer, with Body (or an Azure-shaped error).
	Status int
	Body   string
	// RetryAfter is sent with the status (429 and 503 carry it).
	RetryAfter time.Duration
	// Latency delays every answer.
	Latency time.Duration
	// Malformed answers 200 with a body that is not JSON.
	Malformed bool
	// NoExp issues tokens without an exp claim.
	NoExp bool
	// Count limits the fault to the next Count requests; 0 means until cleared.
	Count int
	// RatePerSecond applies Status (429 by default) only to requests above this rate.
	RatePerSecond float64
}

// Options configure a Cloud.
type Options struct {
	// Addr is the proxy's listen address; empty picks a free loopback port.
	Addr string
}

type roleAssignment struct {
	repositories []string
	actions      []string
}

type faultState struct {
	Fault
	remaining int
	limiter   *rate.Limiter
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
	server   *http.Server
	tunnels  *connQueue
	inner    *http.Server

	mu          sync.RWMutex
	identities  map[string]Identity // by lower-case client ID
	byResource  map[string]string   // lower-case resource ID → client ID
	federated   map[string][]FederatedCredential
	secrets     map[string]string
	issuers     map[string][]crypto.PublicKey
	registries  map[string]Registry
	roles       map[string]map[string][]roleAssignment // client ID → host → assignments
	authorities map[string]bool
	armAudience map[string]bool
	lifetimes   Lifetimes
	faults      map[Endpoint]*faultState

	counts map[Endpoint]*atomic.Int64
	// hostRequests counts requests and tunnels per host, known or not, so tests can prove a host was never contacted.
	hostRequests sync.Map // host → *atomic.Int64
}

// New creates a Cloud with a fresh CA and signing keys.
func New(opts Options) (*Cloud, error) {
	c := &Cloud{
		opts:       opts,
		identities: map[string]Identity{}, byResource: map[string]string{}, federated: map[string][]FederatedCredential{},
		secrets: map[string]string{}, issuers: map[string][]crypto.PublicKey{}, registries: map[string]Registry{},
		roles: map[string]map[string][]roleAssignment{}, faults: map[Endpoint]*faultState{}, counts: map[Endpoint]*atomic.Int64{},
		authorities: map[string]bool{"login.microsoftonline.com": true, "login.microsoftonline.us": true, "login.chinacloudapi.cn": true},
		armAudience: map[string]bool{
			"https://management.azure.com": true, "https://management.core.windows.net": true,
			"https://management.core.usgovcloudapi.net": true, "https://management.usgovcloudapi.net": true,
			"https://management.core.chinacloudapi.cn": true, "https://management.chinacloudapi.cn": true,
		},
	}
	for _, ep := range Endpoints {
		c.counts[ep] = &atomic.Int64{}
	}
	var err error
	if c.caKey, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
		return nil, err
	}
	caTemplate := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "acrpull fake Azure CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(10 * 365 * 24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, caTemplate, caTemplate, &c.caKey.PublicKey, c.caKey)
	if err != nil {
		return nil, err
	}
	if c.caCert, err = x509.ParseCertificate(der); err != nil {
		return nil, err
	}
	c.caPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	if c.entraKey, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
		return nil, err
	}
	if c.acrKey, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
		return nil, err
	}
	acrTemplate := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: ACRIssuer},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(10 * 365 * 24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, IsCA: true, BasicConstraintsValid: true,
	}
	if c.acrCert, err = x509.CreateCertificate(rand.Reader, acrTemplate, acrTemplate, &c.acrKey.PublicKey, c.acrKey); err != nil {
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

// ProxyURL is the address clients use as HTTPS_PROXY and HTTP_PROXY.
func (c *Cloud) ProxyURL() *url.URL {
	return &url.URL{Scheme: "http", Host: c.listener.Addr().String()}
}

// HTTPClient returns a client that reaches the fake hosts through the proxy and trusts the fake's CA: what a
// production client gets from HTTPS_PROXY and SSL_CERT_FILE.
func (c *Cloud) HTTPClient() *http.Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.Proxy = http.ProxyURL(c.ProxyURL())
	t.TLSClientConfig.RootCAs = c.CertPool()
	t.MaxIdleConnsPerHost = 64
	return &http.Client{Transport: t}
}

// AddIdentity adds or replaces an identity.
func (c *Cloud) AddIdentity(id Identity) {
	c.mu.Lock()
	defer c.mu.Unlock()
	key := strings.ToLower(id.ClientID)
	if id.PrincipalID == "" {
		id.PrincipalID = "principal-" + key
	}
	c.identities[key] = id
	if id.ResourceID != "" {
		c.byResource[strings.ToLower(id.ResourceID)] = key
	}
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

// TrustIssuer makes keys verify client assertions from issuer (a cluster's service-account issuer).
func (c *Cloud) TrustIssuer(issuer string, keys ...crypto.PublicKey) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.issuers[issuer] = append(c.issuers[issuer], keys...)
}

// AddRegistry adds a registry host.
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

// AddARMAudience makes registries accept Entra tokens for another ARM audience (an air-gapped cloud's).
func (c *Cloud) AddARMAudience(audience string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.armAudience[strings.TrimSuffix(audience, "/")] = true
}

// AddRoleAssignment lets the identity act on repositories of a registry ("*" for all) with the actions.
func (c *Cloud) AddRoleAssignment(clientID, host string, repositories, actions []string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	key, host := strings.ToLower(clientID), strings.ToLower(host)
	if c.roles[key] == nil {
		c.roles[key] = map[string][]roleAssignment{}
	}
	c.roles[key][host] = append(c.roles[key][host], roleAssignment{repositories: repositories, actions: actions})
}

// SetLifetimes sets the lifetimes of tokens issued from now on.
func (c *Cloud) SetLifetimes(l Lifetimes) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.lifetimes = l
}

func (c *Cloud) lifetime(ep Endpoint) time.Duration {
	c.mu.RLock()
	defer c.mu.RUnlock()
	switch ep {
	case ACRExchange:
		if c.lifetimes.ACRRefresh > 0 {
			return c.lifetimes.ACRRefresh
		}
		return 3 * time.Hour
	case ACRToken, ACRTokenGet:
		if c.lifetimes.ACRAccess > 0 {
			return c.lifetimes.ACRAccess
		}
		return 75 * time.Minute
	}
	if c.lifetimes.Entra > 0 {
		return c.lifetimes.Entra
	}
	return time.Hour
}

// SetFault makes an endpoint misbehave.
func (c *Cloud) SetFault(ep Endpoint, f Fault) {
	c.mu.Lock()
	defer c.mu.Unlock()
	st := &faultState{Fault: f, remaining: f.Count}
	if f.RatePerSecond > 0 {
		st.limiter = rate.NewLimiter(rate.Limit(f.RatePerSecond), max(1, int(f.RatePerSecond)))
		if st.Status == 0 {
			st.Status = http.StatusTooManyRequests
		}
	}
	c.faults[ep] = st
}

// ClearFaults makes every endpoint behave again.
func (c *Cloud) ClearFaults() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.faults = map[Endpoint]*faultState{}
}

// Count is the number of requests an endpoint received since the last reset.
func (c *Cloud) Count(ep Endpoint) int64 { return c.counts[ep].Load() }

// Counts returns the non-zero counters.
func (c *Cloud) Counts() map[Endpoint]int64 {
	out := map[Endpoint]int64{}
	for ep, n := range c.counts {
		if v := n.Load(); v > 0 {
			out[ep] = v
		}
	}
	return out
}

// HostRequests is how many requests or tunnels the proxy received for host, including hosts it refused.
func (c *Cloud) HostRequests(host string) int64 {
	if v, ok := c.hostRequests.Load(strings.ToLower(host)); ok {
		return v.(*atomic.Int64).Load()
	}
	return 0
}

func (c *Cloud) countHost(host string) {
	v, _ := c.hostRequests.LoadOrStore(host, &atomic.Int64{})
	v.(*atomic.Int64).Add(1)
}

// ResetCounts zeroes every counter.
func (c *Cloud) ResetCounts() {
	for _, n := range c.counts {
		n.Store(0)
	}
}

// activeFault returns the fault to apply to one request to ep, if any, consuming a counted one.
func (c *Cloud) activeFault(ep Endpoint) (Fault, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	st := c.faults[ep]
	if st == nil {
		return Fault{}, false
	}
	if st.limiter != nil && st.limiter.Allow() {
		// Under the rate: answer normally, but keep latency and token shape faults.
		f := st.Fault
		f.Status = 0
		return f, true
	}
	if st.Count > 0 {
		st.remaining--
		if st.remaining <= 0 {
			delete(c.faults, ep)
		}
	}
	return st.Fault, true
}

var errUnknownIdentity = errors.New("unknown identity")
