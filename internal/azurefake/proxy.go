/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

package azurefake

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// imdsHost is the instance metadata service's address.
const imdsHost = "169.254.169.254"

// Start listens and serves until Close.
func (c *Cloud) Start() error {
	addr := c.opts.Addr
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	c.listener = l
	c.tunnels = newConnQueue(l.Addr())
	// Tunnelled connections are TLS-terminated here and served by an inner server that dispatches on Host.
	c.inner = &http.Server{Handler: http.HandlerFunc(c.serveHost), ReadHeaderTimeout: 30 * time.Second}
	c.server = &http.Server{Handler: http.HandlerFunc(c.serveProxy), ReadHeaderTimeout: 30 * time.Second}
	go func() { _ = c.inner.Serve(c.tunnels) }()
	go func() { _ = c.server.Serve(l) }()
	return nil
}

// Close stops serving.
func (c *Cloud) Close() {
	if c.server != nil {
		_ = c.server.Close()
		_ = c.inner.Close()
		c.tunnels.Close()
	}
}

// serveProxy handles what arrives at the proxy port: CONNECT tunnels and absolute-form plain-HTTP requests.
func (c *Cloud) serveProxy(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodConnect {
		c.serveConnect(w, r)
		return
	}
	if r.URL.Host == "" {
		http.Error(w, "this is a proxy: send absolute-form requests or CONNECT", http.StatusBadRequest)
		return
	}
	r.Host = r.URL.Host
	c.countHost(hostOnly(r.Host))
	c.serveHost(w, r)
}

func (c *Cloud) serveConnect(w http.ResponseWriter, r *http.Request) {
	host := hostOnly(r.Host)
	c.countHost(host)
	if !c.knownHost(host) {
		http.Error(w, "unknown host "+host+": nothing leaves this machine", http.StatusBadGateway)
		return
	}
	hj, ok := w.(http.Hijacker)
	if !ok {
		http.Error(w, "cannot tunnel", http.StatusInternalServerError)
		return
	}
	conn, buf, err := hj.Hijack()
	if err != nil {
		return
	}
	if _, err := conn.Write([]byte("HTTP/1.1 200 Connection established\r\n\r\n")); err != nil {
		_ = conn.Close()
		return
	}
	var raw net.Conn = conn
	if buf.Reader.Buffered() > 0 {
		raw = &prefixedConn{Conn: conn, prefix: buf}
	}
	tlsConn := tls.Server(raw, &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetCertificate: func(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
			name := hello.ServerName
			if name == "" {
				name = host
			}
			return c.leafFor(name)
		},
	})
	c.tunnels.push(tlsConn)
}

// serveHost answers a request for one of the fake hosts.
func (c *Cloud) serveHost(w http.ResponseWriter, r *http.Request) {
	host := hostOnly(r.Host)
	switch {
	case host == imdsHost:
		c.serveIMDS(w, r)
	case c.isAuthority(host):
		c.serveEntra(w, r, host)
	default:
		if reg, ok := c.registry(host); ok {
			c.serveACR(w, r, reg)
			return
		}
		http.Error(w, "unknown host "+host, http.StatusBadGateway)
	}
}

func (c *Cloud) knownHost(host string) bool {
	if host == imdsHost || c.isAuthority(host) {
		return true
	}
	_, ok := c.registry(host)
	return ok
}

func (c *Cloud) isAuthority(host string) bool {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.authorities[host]
}

func (c *Cloud) registry(host string) (Registry, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	r, ok := c.registries[host]
	return r, ok
}

// endpoint counts a request and applies the endpoint's fault. It returns false when the fault answered.
func (c *Cloud) endpoint(ep Endpoint, w http.ResponseWriter) (Fault, bool) {
	c.counts[ep].Add(1)
	f, ok := c.activeFault(ep)
	if !ok {
		return Fault{}, true
	}
	if f.Latency > 0 {
		time.Sleep(f.Latency)
	}
	switch {
	case f.Status != 0:
		if f.RetryAfter > 0 {
			w.Header().Set("Retry-After", strconv.Itoa(int(f.RetryAfter.Round(time.Second)/time.Second)))
		}
		body := f.Body
		if body == "" {
			body = fmt.Sprintf(`{"error":"fault_injected","error_description":"injected HTTP %d"}`, f.Status)
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(f.Status)
		_, _ = w.Write([]byte(body))
		return f, false
	case f.Malformed:
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"access_token": "truncated`))
		return f, false
	}
	return f, true
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func (c *Cloud) leafFor(host string) (*tls.Certificate, error) {
	if v, ok := c.leafs.Load(host); ok {
		return v.(*tls.Certificate), nil
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	serial, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
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
		return nil, err
	}
	cert := &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
	v, _ := c.leafs.LoadOrStore(host, cert)
	return v.(*tls.Certificate), nil
}

func hostOnly(hostport string) string {
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		return strings.ToLower(h)
	}
	return strings.ToLower(hostport)
}

// connQueue is a net.Listener fed with connections the proxy has tunnelled.
type connQueue struct {
	addr   net.Addr
	conns  chan net.Conn
	closed chan struct{}
	once   sync.Once
}

func newConnQueue(addr net.Addr) *connQueue {
	return &connQueue{addr: addr, conns: make(chan net.Conn), closed: make(chan struct{})}
}

func (q *connQueue) push(conn net.Conn) {
	select {
	case q.conns <- conn:
	case <-q.closed:
		_ = conn.Close()
	}
}

func (q *connQueue) Accept() (net.Conn, error) {
	select {
	case conn := <-q.conns:
		return conn, nil
	case <-q.closed:
		return nil, errors.New("closed")
	}
}

func (q *connQueue) Close() error {
	q.once.Do(func() { close(q.closed) })
	return nil
}

func (q *connQueue) Addr() net.Addr { return q.addr }

// prefixedConn replays bytes the proxy's reader buffered before the tunnel started.
type prefixedConn struct {
	net.Conn
	prefix interface{ Read([]byte) (int, error) }
}

func (p *prefixedConn) Read(b []byte) (int, error) { return p.prefix.Read(b) }
