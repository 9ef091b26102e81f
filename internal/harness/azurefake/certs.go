/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

package azurefake

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"time"
)

// generateKeys creates the TLS CA (ECDSA P-256: fast to sign a leaf per host), the Entra ID signing key and the
// registry token signing key with its self-signed certificate (RSA 2048, RS256, as Azure signs).
func (c *Cloud) generateKeys() error {
	var err error
	if c.caKey, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
		return fmt.Errorf("generating the CA key: %w", err)
	}
	caTemplate := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "acrpull fake Azure CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(10 * 365 * 24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, caTemplate, caTemplate, &c.caKey.PublicKey, c.caKey)
	if err != nil {
		return fmt.Errorf("creating the CA certificate: %w", err)
	}
	if c.caCert, err = x509.ParseCertificate(der); err != nil {
		return fmt.Errorf("parsing the CA certificate: %w", err)
	}
	c.caPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	if c.entraKey, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
		return fmt.Errorf("generating the Entra ID signing key: %w", err)
	}
	if c.acrKey, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
		return fmt.Errorf("generating the registry token signing key: %w", err)
	}
	// Docker distribution verifies a token's x5c chain against its rootcertbundle; a self-signed certificate for
	// the signing key is both the chain and the bundle.
	acrTemplate := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: ACRIssuer},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(10 * 365 * 24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, IsCA: true, BasicConstraintsValid: true,
	}
	if c.acrCert, err = x509.CreateCertificate(rand.Reader, acrTemplate, acrTemplate, &c.acrKey.PublicKey, c.acrKey); err != nil {
		return fmt.Errorf("creating the registry token certificate: %w", err)
	}
	return nil
}

// leafFor returns the TLS certificate for host, signing it on first use and caching it.
func (c *Cloud) leafFor(host string) (*tls.Certificate, error) {
	if v, ok := c.leafs.Load(host); ok {
		return v.(*tls.Certificate), nil
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generating a key for %s: %w", host, err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		return nil, fmt.Errorf("generating a serial for %s: %w", host, err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial, Subject: pkix.Name{CommonName: host},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(365 * 24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	if ip := net.ParseIP(host); ip != nil {
		tmpl.IPAddresses = []net.IP{ip}
	} else {
		tmpl.DNSNames = []string{host}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, c.caCert, &key.PublicKey, c.caKey)
	if err != nil {
		return nil, fmt.Errorf("signing a certificate for %s: %w", host, err)
	}
	cert := &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
	v, _ := c.leafs.LoadOrStore(host, cert)
	return v.(*tls.Certificate), nil
}

// untrustedLeaf is a self-signed certificate for host that no client of the fake trusts: what a TLS-intercepting
// middlebox or a wrong endpoint presents. Made afresh each time; only faulted connections use it.
func untrustedLeaf(host string) (*tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: host}, DNSNames: []string{host},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	return &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}
