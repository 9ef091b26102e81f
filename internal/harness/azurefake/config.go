/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

package azurefake

import (
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net/url"
	"os"
	"slices"
	"time"
)

// Config is the fake's setup as JSON, for the fakeazure binary (--config) and its admin API (POST /config).
// Everything in it is additive; durations are Go duration strings ("1h", "75m", "2s").
type Config struct {
	Identities           []Identity              `json:"identities,omitempty"`
	FederatedCredentials []FederatedCredentialOf `json:"federatedCredentials,omitempty"`
	TrustedIssuers       []TrustedIssuer         `json:"trustedIssuers,omitempty"`
	// ClientSecrets maps client IDs to the secret each may authenticate with.
	ClientSecrets map[string]string `json:"clientSecrets,omitempty"`
	// ClientCertificates register certificates on applications, for client certificate credentials.
	ClientCertificates []ClientCertificateConfig `json:"clientCertificates,omitempty"`
	Registries         []RegistryConfig          `json:"registries,omitempty"`
	RoleAssignments    []RoleAssignmentConfig    `json:"roleAssignments,omitempty"`
	// AuthorityHosts and ARMAudiences extend the Entra ID hosts and the ARM audiences registries accept, for
	// air-gapped clouds.
	AuthorityHosts []string         `json:"authorityHosts,omitempty"`
	ARMAudiences   []string         `json:"armAudiences,omitempty"`
	Lifetimes      *LifetimesConfig `json:"lifetimes,omitempty"`
	// Faults are keyed by endpoint name ("imds-token", "acr-exchange", ...).
	Faults map[Endpoint]FaultConfig `json:"faults,omitempty"`
	// ARM holds Resource Manager's VMs and scale sets, where nodes run, and who may assign which identity.
	ARM *ARMConfig `json:"arm,omitempty"`
}

// FederatedCredentialOf is a federated credential of one identity.
type FederatedCredentialOf struct {
	ClientID string `json:"clientID"`
	FederatedCredential
}

// TrustedIssuer names the keys that verify an issuer's tokens: a PEM public key (or certificate) file, a JWKS file
// (what a cluster serves at its OIDC jwks_uri), or both.
type TrustedIssuer struct {
	Issuer        string `json:"issuer"`
	PublicKeyFile string `json:"publicKeyFile,omitempty"`
	JWKSFile      string `json:"jwksFile,omitempty"`
}

// ClientCertificateConfig registers a certificate on an application: a PEM file or inline PEM (the public
// certificate only, what is uploaded to an app registration; never the key). Every CERTIFICATE block counts.
type ClientCertificateConfig struct {
	ClientID        string `json:"clientID"`
	CertificateFile string `json:"certificateFile,omitempty"`
	CertificatePEM  string `json:"certificatePEM,omitempty"`
}

// RegistryConfig is a registry host and the real registry behind it.
type RegistryConfig struct {
	Host               string `json:"host"`
	Upstream           string `json:"upstream,omitempty"`
	DisableARMAudience bool   `json:"disableARMAudience,omitempty"`
}

// RoleAssignmentConfig lets an identity act on repositories of a registry.
type RoleAssignmentConfig struct {
	ClientID     string   `json:"clientID"`
	Host         string   `json:"host"`
	Repositories []string `json:"repositories"`
	Actions      []string `json:"actions"`
}

// LifetimesConfig holds token lifetimes as Go durations ("1h", "75m").
type LifetimesConfig struct {
	Entra      string `json:"entra,omitempty"`
	ACRRefresh string `json:"acrRefresh,omitempty"`
	ACRAccess  string `json:"acrAccess,omitempty"`
}

// FaultConfig is a Fault with durations as strings.
type FaultConfig struct {
	Status        int     `json:"status,omitempty"`
	Body          string  `json:"body,omitempty"`
	RetryAfter    string  `json:"retryAfter,omitempty"`
	Latency       string  `json:"latency,omitempty"`
	Malformed     bool    `json:"malformed,omitempty"`
	NoExp         bool    `json:"noExp,omitempty"`
	Count         int     `json:"count,omitempty"`
	RatePerSecond float64 `json:"ratePerSecond,omitempty"`
}

// ApplyConfig adds what cfg describes.
func (c *Cloud) ApplyConfig(cfg Config) error {
	for _, id := range cfg.Identities {
		c.AddIdentity(id)
	}
	for _, fc := range cfg.FederatedCredentials {
		c.AddFederatedCredential(fc.ClientID, fc.FederatedCredential)
	}
	for clientID, secret := range cfg.ClientSecrets {
		c.AddClientSecret(clientID, secret)
	}
	for _, cc := range cfg.ClientCertificates {
		certs, err := cc.certificates()
		if err != nil {
			return fmt.Errorf("client certificate of %s: %w", cc.ClientID, err)
		}
		for _, cert := range certs {
			c.AddClientCertificate(cc.ClientID, cert)
		}
	}
	for _, ti := range cfg.TrustedIssuers {
		keys, err := ti.keys()
		if err != nil {
			return fmt.Errorf("issuer %s: %w", ti.Issuer, err)
		}
		c.TrustIssuer(ti.Issuer, keys...)
	}
	for _, r := range cfg.Registries {
		reg := Registry{Host: r.Host, DisableARMAudience: r.DisableARMAudience}
		if r.Upstream != "" {
			u, err := url.Parse(r.Upstream)
			if err != nil {
				return fmt.Errorf("registry %s upstream: %w", r.Host, err)
			}
			reg.Upstream = u
		}
		c.AddRegistry(reg)
	}
	for _, ra := range cfg.RoleAssignments {
		c.AddRoleAssignment(ra.ClientID, ra.Host, ra.Repositories, ra.Actions)
	}
	for _, h := range cfg.AuthorityHosts {
		c.AddAuthorityHost(h)
	}
	for _, a := range cfg.ARMAudiences {
		c.AddARMAudience(a)
	}
	if l := cfg.Lifetimes; l != nil {
		var lt Lifetimes
		var err error
		for _, f := range []struct {
			s string
			d *time.Duration
		}{{l.Entra, &lt.Entra}, {l.ACRRefresh, &lt.ACRRefresh}, {l.ACRAccess, &lt.ACRAccess}} {
			if f.s == "" {
				continue
			}
			if *f.d, err = time.ParseDuration(f.s); err != nil {
				return fmt.Errorf("lifetimes: %w", err)
			}
		}
		c.SetLifetimes(lt)
	}
	for ep, fc := range cfg.Faults {
		if !slices.Contains(Endpoints, ep) {
			return fmt.Errorf("fault for %q: unknown endpoint (known: %v)", ep, Endpoints)
		}
		f, err := fc.fault()
		if err != nil {
			return fmt.Errorf("fault %s: %w", ep, err)
		}
		c.SetFault(ep, f)
	}
	if cfg.ARM != nil {
		// Last: assigning identities to VMs needs the identities above.
		if err := c.applyARMConfig(*cfg.ARM); err != nil {
			return fmt.Errorf("arm: %w", err)
		}
	}
	return nil
}

func (fc FaultConfig) fault() (Fault, error) {
	f := Fault{Status: fc.Status, Body: fc.Body, Malformed: fc.Malformed, NoExp: fc.NoExp, Count: fc.Count, RatePerSecond: fc.RatePerSecond}
	var err error
	if fc.RetryAfter != "" {
		if f.RetryAfter, err = time.ParseDuration(fc.RetryAfter); err != nil {
			return f, err
		}
	}
	if fc.Latency != "" {
		if f.Latency, err = time.ParseDuration(fc.Latency); err != nil {
			return f, err
		}
	}
	return f, nil
}

// certificates reads the configured PEM, from the file or inline.
func (cc ClientCertificateConfig) certificates() ([]*x509.Certificate, error) {
	data := []byte(cc.CertificatePEM)
	switch {
	case cc.CertificateFile != "" && cc.CertificatePEM != "":
		return nil, errors.New("both certificateFile and certificatePEM are set")
	case cc.CertificateFile != "":
		var err error
		if data, err = os.ReadFile(cc.CertificateFile); err != nil {
			return nil, fmt.Errorf("reading the certificate: %w", err)
		}
	case cc.CertificatePEM == "":
		return nil, errors.New("neither certificateFile nor certificatePEM is set")
	}
	var certs []*x509.Certificate
	for block, rest := pem.Decode(data); block != nil; block, rest = pem.Decode(rest) {
		if block.Type != "CERTIFICATE" {
			continue // a key pasted along with the certificate is not the app registration's business
		}
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("parsing the certificate: %w", err)
		}
		certs = append(certs, cert)
	}
	if len(certs) == 0 {
		return nil, errors.New("no CERTIFICATE PEM block")
	}
	return certs, nil
}

// keys reads the issuer's key files.
func (ti TrustedIssuer) keys() ([]crypto.PublicKey, error) {
	if ti.PublicKeyFile == "" && ti.JWKSFile == "" {
		return nil, errors.New("neither publicKeyFile nor jwksFile is set")
	}
	var keys []crypto.PublicKey
	if ti.PublicKeyFile != "" {
		key, err := readPublicKey(ti.PublicKeyFile)
		if err != nil {
			return nil, err
		}
		keys = append(keys, key)
	}
	if ti.JWKSFile != "" {
		data, err := os.ReadFile(ti.JWKSFile)
		if err != nil {
			return nil, fmt.Errorf("reading the key set: %w", err)
		}
		set, err := ParseJWKS(data)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", ti.JWKSFile, err)
		}
		keys = append(keys, set...)
	}
	return keys, nil
}

func readPublicKey(path string) (crypto.PublicKey, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading the public key: %w", err)
	}
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, fmt.Errorf("%s holds no PEM block", path)
	}
	if cert, err := x509.ParseCertificate(block.Bytes); err == nil {
		return cert.PublicKey, nil
	}
	return x509.ParsePKIXPublicKey(block.Bytes)
}
