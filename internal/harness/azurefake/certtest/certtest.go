/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

// Package certtest makes what a service principal authenticating with a certificate holds, for tests: a self-signed
// RSA certificate with its key, and the password-protected PKCS#12 bundle a Kubernetes Secret carries them in. It is
// a package of its own so that the PKCS#12 encoder is linked into tests only, never into a binary.
package certtest

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"time"

	pkcs12 "software.sslmate.com/src/go-pkcs12"
)

// Certificate is a self-signed certificate and its private key. Key is secret.
type Certificate struct {
	Cert *x509.Certificate
	Key  *rsa.PrivateKey
}

// New makes an RSA certificate for commonName, valid from an hour ago for a year. RSA, because Entra ID and MSAL
// take nothing else for client certificates.
func New(commonName string) (*Certificate, error) {
	return NewValid(commonName, time.Now().Add(-time.Hour), time.Now().Add(365*24*time.Hour))
}

// NewValid makes an RSA certificate for commonName valid between notBefore and notAfter: an expired one, say.
func NewValid(commonName string, notBefore, notAfter time.Time) (*Certificate, error) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, fmt.Errorf("generating the key: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("drawing a serial number: %w", err)
	}
	template := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: commonName},
		NotBefore:    notBefore,
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, template, template, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("signing the certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("parsing the certificate: %w", err)
	}
	return &Certificate{Cert: cert, Key: key}, nil
}

// PKCS12 encodes certificate and key as a PKCS#12 bundle protected by password. It uses the legacy algorithms
// (3DES, SHA-1 MAC) because golang.org/x/crypto/pkcs12, which azidentity.ParseCertificates decodes with, reads
// nothing newer; `openssl pkcs12 -export -legacy` makes the same.
func (c *Certificate) PKCS12(password string) ([]byte, error) {
	data, err := pkcs12.LegacyDES.Encode(c.Key, c.Cert, nil, password)
	if err != nil {
		return nil, fmt.Errorf("encoding PKCS#12: %w", err)
	}
	return data, nil
}

// CertificatePEM is the public certificate in PEM, what is uploaded to an app registration.
func (c *Certificate) CertificatePEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Cert.Raw})
}

// KeyPEM is the private key in PKCS#8 PEM, as `kubectl create secret tls` takes it beside CertificatePEM.
func (c *Certificate) KeyPEM() ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(c.Key)
	if err != nil {
		return nil, fmt.Errorf("encoding the key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}
