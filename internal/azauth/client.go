/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

// Package azauth is acrpull's only door to Azure: Entra ID tokens for managed and workload identities, and the ACR
// token exchange. It wraps azidentity and azcontainerregistry; nothing else in acrpull imports an Azure SDK but its
// subpackage armidentity, which holds the assignment controller's Resource Manager calls so that the programs that
// make none do not link the Resource Manager SDK.
//
// Every call goes through one HTTP client, so the standard proxy and CA settings (HTTPS_PROXY, SSL_CERT_FILE) and
// the metrics transport apply to all of them. SDK retries are off: the controller owns backoff and honours
// Retry-After itself, instead of blocking a worker inside the SDK for a minute.
package azauth

import (
	"context"
	"crypto"
	"crypto/rsa"
	"crypto/x509"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/cloud"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	"github.com/Azure/azure-sdk-for-go/sdk/containers/azcontainerregistry"
	"k8s.io/utils/clock"
)

// Endpoint kinds, as named in errors and metrics.
const (
	EndpointIMDS        = "imds"
	EndpointEntra       = "entra"
	EndpointACRExchange = "acr-exchange"
	EndpointACRToken    = "acr-token"
)

// Options configure a Client.
type Options struct {
	// HTTPClient carries every request; nil uses a client that honours the proxy environment.
	HTTPClient *http.Client
	// CallTimeout bounds each Azure call; 0 means 30 s.
	CallTimeout time.Duration
	// Clock reads the time tokens are received at.
	Clock clock.PassiveClock
	// UserAgentSuffix is appended to the User-Agent of every Azure request, so the operators of a tenant can tell
	// this installation's calls apart (upstream MIC's --custom-user-agent).
	UserAgentSuffix string
}

// ManagedIdentity names a user-assigned identity by client ID or by ARM resource ID.
type ManagedIdentity struct {
	ClientID   string
	ResourceID string
}

// WorkloadIdentity is an identity federated with a Kubernetes service account.
type WorkloadIdentity struct {
	TenantID string
	ClientID string
	// Assertion returns a fresh service-account token to present to Entra ID.
	Assertion func(ctx context.Context) (string, error)
}

// Client makes the Azure calls. It is safe for concurrent use.
type Client struct {
	httpClient *http.Client
	timeout    time.Duration
	clock      clock.PassiveClock
	userAgent  string
	acrClients sync.Map // server → *azcontainerregistry.AuthenticationClient
	gates      *gates
	// registryHTTP is httpClient refusing redirects, for the pull check: the token goes to the registry host only.
	registryHTTP *http.Client
}

// NewClient returns a Client.
func NewClient(opts Options) *Client {
	c := &Client{httpClient: opts.HTTPClient, timeout: opts.CallTimeout, clock: opts.Clock, userAgent: opts.UserAgentSuffix}
	if c.httpClient == nil {
		c.httpClient = &http.Client{Transport: http.DefaultTransport}
	}
	if c.timeout == 0 {
		c.timeout = 30 * time.Second
	}
	if c.clock == nil {
		c.clock = clock.RealClock{}
	}
	c.gates = &gates{clock: c.clock}
	noRedirects := *c.httpClient
	noRedirects.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	c.registryHTTP = &noRedirects
	return c
}

// SDKClientOptions are the options every Azure SDK client of c's is built with: c's HTTP client, no SDK retries, the
// User-Agent suffix, and authorityHost's cloud when given. They are exported for azauth's subpackages (armidentity),
// which build SDK clients of their own; nothing outside internal/azauth imports an Azure SDK to use them.
func (c *Client) SDKClientOptions(authorityHost string) azcore.ClientOptions {
	opts := azcore.ClientOptions{
		Transport: c.httpClient,
		Retry:     policy.RetryOptions{MaxRetries: -1},
		Telemetry: policy.TelemetryOptions{ApplicationID: "acrpull"},
	}
	if c.userAgent != "" {
		// Per-call policies run after the SDK's telemetry policy has set the header.
		opts.PerCallPolicies = []policy.Policy{userAgentSuffix(c.userAgent)}
	}
	if authorityHost != "" {
		opts.Cloud = cloud.Configuration{ActiveDirectoryAuthorityHost: authorityHost}
	}
	return opts
}

// userAgentSuffix appends itself to each request's User-Agent. (The SDK's ApplicationID prefixes it instead, and
// takes at most 24 characters without spaces.)
type userAgentSuffix string

func (s userAgentSuffix) Do(req *policy.Request) (*http.Response, error) {
	h := req.Raw().Header
	h.Set("User-Agent", strings.TrimSpace(h.Get("User-Agent")+" "+string(s)))
	return req.Next()
}

// ManagedIdentityToken gets an Entra ID token for audience from the node's instance metadata service.
func (c *Client) ManagedIdentityToken(ctx context.Context, id ManagedIdentity, audience string) (Token, error) {
	opts := &azidentity.ManagedIdentityCredentialOptions{ClientOptions: c.SDKClientOptions("")}
	switch {
	case id.ClientID != "":
		opts.ID = azidentity.ClientID(id.ClientID)
	case id.ResourceID != "":
		opts.ID = azidentity.ResourceID(id.ResourceID)
	}
	cred, err := azidentity.NewManagedIdentityCredential(opts)
	if err != nil {
		return Token{}, classifyEntra(EndpointIMDS, err)
	}
	return c.entraToken(ctx, EndpointIMDS, EndpointIMDS, cred, audience)
}

// WorkloadIdentityToken gets an Entra ID token for audience by presenting the workload's service-account token.
func (c *Client) WorkloadIdentityToken(ctx context.Context, azCloud Cloud, id WorkloadIdentity, audience string) (Token, error) {
	cred, err := azidentity.NewClientAssertionCredential(id.TenantID, id.ClientID, id.Assertion,
		&azidentity.ClientAssertionCredentialOptions{
			ClientOptions: c.SDKClientOptions(azCloud.AuthorityHost),
			// Instance discovery asks the public cloud about the authority; sovereign and air-gapped authorities
			// are known already, and the controller must not call hosts it was not configured with.
			DisableInstanceDiscovery: true,
		})
	if err != nil {
		return Token{}, classifyEntra(EndpointEntra, err)
	}
	return c.entraToken(ctx, EndpointEntra, EndpointEntra+"|"+strings.ToLower(azCloud.AuthorityHost), cred, audience)
}

// ClientSecretToken gets an Entra ID token for audience from tenantID's token endpoint, as the service principal
// clientID authenticating with a client secret. A multi-tenant application (AAD Pod Identity's auxiliaryTenantIDs)
// calls it once per tenant with the same secret: each tenant issues its own token, from its own endpoint.
func (c *Client) ClientSecretToken(ctx context.Context, azCloud Cloud, tenantID, clientID, secret, audience string) (Token, error) {
	cred, err := azidentity.NewClientSecretCredential(tenantID, clientID, secret, &azidentity.ClientSecretCredentialOptions{
		ClientOptions: c.SDKClientOptions(azCloud.AuthorityHost),
		// As for workload identity: the authority is known, and only hosts acrpull was configured with are called.
		DisableInstanceDiscovery: true,
	})
	if err != nil {
		return Token{}, unconstructed("an empty secret, an invalid tenant ID or authority host")
	}
	return c.entraToken(ctx, EndpointEntra, EndpointEntra+"|"+strings.ToLower(azCloud.AuthorityHost), cred, audience)
}

// ClientCertificateToken gets an Entra ID token for audience from tenantID's token endpoint, as the service
// principal clientID authenticating with a certificate: pkcs12 holds the certificate and its RSA key, protected by
// password (PEM also works when password is empty). The assertion names the certificate by thumbprint and carries no
// x5c chain, which is what a certificate registered on the application needs; an x5c is only for subject name and
// issuer authentication, which acrpull does not use.
func (c *Client) ClientCertificateToken(ctx context.Context, azCloud Cloud, tenantID, clientID string, pkcs12 []byte, password, audience string) (Token, error) {
	certs, key, err := parseClientCertificate(pkcs12, password)
	if err != nil {
		return Token{}, err
	}
	cred, err := azidentity.NewClientCertificateCredential(tenantID, clientID, certs, key, &azidentity.ClientCertificateCredentialOptions{
		ClientOptions:            c.SDKClientOptions(azCloud.AuthorityHost),
		DisableInstanceDiscovery: true,
	})
	if err != nil {
		return Token{}, unconstructed("an invalid tenant ID or authority host")
	}
	return c.entraToken(ctx, EndpointEntra, EndpointEntra+"|"+strings.ToLower(azCloud.AuthorityHost), cred, audience)
}

// CheckClientCertificate says whether data is a client certificate ClientCertificateToken can use (PEM with the
// certificate and its RSA key, or PKCS#12 protected by password), without sending it anywhere. Its error is an
// *Error whose message names only what is wrong, never the data or the password.
func CheckClientCertificate(data []byte, password string) error {
	_, _, err := parseClientCertificate(data, password)
	return err
}

func parseClientCertificate(data []byte, password string) ([]*x509.Certificate, crypto.PrivateKey, error) {
	certs, key, err := azidentity.ParseCertificates(data, []byte(password))
	if err != nil {
		// The parser's message never holds the password, but it is dropped all the same: only the kind remains.
		return nil, nil, unreadableCertificate(err)
	}
	// MSAL signs with RSA only, and with the key of the certificate the assertion names.
	rsaKey, ok := key.(*rsa.PrivateKey)
	if !ok || !slices.ContainsFunc(certs, func(cert *x509.Certificate) bool { return rsaKey.PublicKey.Equal(cert.PublicKey) }) {
		return nil, nil, &Error{Kind: IdentityNotFound, Endpoint: EndpointEntra,
			Detail: "client certificate unusable: it needs an RSA key matching one of its certificates"}
	}
	return certs, key, nil
}

func (c *Client) entraToken(ctx context.Context, endpoint, gateKey string, cred azcore.TokenCredential, audience string) (Token, error) {
	return guarded(c.gates, endpoint, gateKey, func() (Token, error) { return c.entraTokenOnce(ctx, endpoint, cred, audience) })
}

func (c *Client) entraTokenOnce(ctx context.Context, endpoint string, cred azcore.TokenCredential, audience string) (Token, error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	at, err := cred.GetToken(ctx, policy.TokenRequestOptions{Scopes: []string{scopeFor(audience)}})
	if err != nil {
		return Token{}, classifyEntra(endpoint, err)
	}
	received := c.clock.Now()
	tok, err := ParseJWTTimes(at.Token, received)
	if err != nil {
		// Entra tokens are JWTs, but the SDK knows their expiry even when acrpull cannot read it.
		if at.ExpiresOn.IsZero() {
			return Token{}, invalidToken(endpoint, err)
		}
		tok = Token{Value: at.Token, IssuedAt: received, ExpiresAt: at.ExpiresOn}
	}
	return tok, nil
}

func (c *Client) acrClient(server string) (*azcontainerregistry.AuthenticationClient, error) {
	if v, ok := c.acrClients.Load(server); ok {
		return v.(*azcontainerregistry.AuthenticationClient), nil
	}
	ac, err := azcontainerregistry.NewAuthenticationClient("https://"+server,
		&azcontainerregistry.AuthenticationClientOptions{ClientOptions: c.SDKClientOptions("")})
	if err != nil {
		return nil, err
	}
	v, _ := c.acrClients.LoadOrStore(server, ac)
	return v.(*azcontainerregistry.AuthenticationClient), nil
}

// ExchangeForRefreshToken trades an Entra ID token for the registry's refresh token, which grants everything the
// identity's roles allow on that registry.
func (c *Client) ExchangeForRefreshToken(ctx context.Context, server string, entraToken Token) (Token, error) {
	return guarded(c.gates, EndpointACRExchange, EndpointACRExchange+"|"+hostOf(server), func() (Token, error) {
		return c.exchangeOnce(ctx, server, entraToken)
	})
}

func (c *Client) exchangeOnce(ctx context.Context, server string, entraToken Token) (Token, error) {
	ac, err := c.acrClient(server)
	if err != nil {
		return Token{}, classifyACR(EndpointACRExchange, err)
	}
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	resp, err := ac.ExchangeAADAccessTokenForACRRefreshToken(ctx, azcontainerregistry.PostContentSchemaGrantTypeAccessToken,
		hostOf(server), &azcontainerregistry.AuthenticationClientExchangeAADAccessTokenForACRRefreshTokenOptions{
			AccessToken: to.Ptr(entraToken.Value),
		})
	if err != nil {
		return Token{}, classifyACR(EndpointACRExchange, err)
	}
	if resp.RefreshToken == nil || *resp.RefreshToken == "" {
		return Token{}, &Error{Kind: TokenInvalid, Endpoint: EndpointACRExchange, Detail: "registry returned no refresh token"}
	}
	tok, err := ParseJWTTimes(*resp.RefreshToken, c.clock.Now())
	if err != nil {
		return Token{}, invalidToken(EndpointACRExchange, err)
	}
	return tok, nil
}

// AccessToken trades the registry's refresh token for an access token limited to scope (space-separated).
func (c *Client) AccessToken(ctx context.Context, server, scope string, refreshToken Token) (Token, error) {
	return guarded(c.gates, EndpointACRToken, EndpointACRToken+"|"+hostOf(server), func() (Token, error) {
		return c.accessTokenOnce(ctx, server, scope, refreshToken)
	})
}

func (c *Client) accessTokenOnce(ctx context.Context, server, scope string, refreshToken Token) (Token, error) {
	ac, err := c.acrClient(server)
	if err != nil {
		return Token{}, classifyACR(EndpointACRToken, err)
	}
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	resp, err := ac.ExchangeACRRefreshTokenForACRAccessToken(ctx, hostOf(server), scope, refreshToken.Value,
		&azcontainerregistry.AuthenticationClientExchangeACRRefreshTokenForACRAccessTokenOptions{
			GrantType: to.Ptr(azcontainerregistry.TokenGrantTypeRefreshToken),
		})
	if err != nil {
		return Token{}, classifyACR(EndpointACRToken, err)
	}
	if resp.AccessToken == nil || *resp.AccessToken == "" {
		return Token{}, &Error{Kind: TokenInvalid, Endpoint: EndpointACRToken, Detail: "registry returned no access token"}
	}
	tok, err := ParseJWTTimes(*resp.AccessToken, c.clock.Now())
	if err != nil {
		return Token{}, invalidToken(EndpointACRToken, err)
	}
	return tok, nil
}

// hostOf is the registry's service name: its host, lowercased, as ACR names itself in tokens.
func hostOf(server string) string { return strings.ToLower(server) }
