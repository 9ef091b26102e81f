/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

package azurefake

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"
)

// imdsHost is the instance metadata service's address.
const imdsHost = "169.254.169.254"

// Start listens on Options.Addr (a free loopback port by default) and serves until Close.
func (c *Cloud) Start() error {
	addr := c.opts.Addr
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listening on %s: %w", addr, err)
	}
	c.listener = l
	c.proxyURL.Store(&url.URL{Scheme: "http", Host: l.Addr().String()})
	c.tunnels = newConnQueue(l.Addr())
	// Tunnelled connections are TLS-terminated here and served by an inner server that dispatches on Host.
	c.inner = &http.Server{Handler: http.HandlerFunc(c.serveHost), ReadHeaderTimeout: 30 * time.Second}
	c.server = &http.Server{Handler: http.HandlerFunc(c.serveProxy), ReadHeaderTimeout: 30 * time.Second}
	go func() { _ = c.inner.Serve(c.tunnels) }()
	go func() { _ = c.server.Serve(l) }()
	return nil
}

// Close stops serving and drops every connection.
func (c *Cloud) Close() {
	if c.server != nil {
		_ = c.server.Close()
		_ = c.inner.Close()
		_ = c.tunnels.Close()
	}
	if c.clientTransport != nil {
		c.clientTransport.CloseIdleConnections()
	}
	c.closeNodeClients()
	c.upstream.CloseIdleConnections()
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

// serveConnect accepts a tunnel to a known host and terminates its TLS with a certificate for that host.
func (c *Cloud) serveConnect(w http.ResponseWriter, r *http.Request) {
	host := hostOnly(r.Host)
	c.countHost(host)
	if !c.knownHost(host) {
		http.Error(w, "unknown host "+host+": nothing leaves this machine", http.StatusBadGateway)
		return
	}
	conn, buf, err := http.NewResponseController(w).Hijack()
	if err != nil {
		http.Error(w, "cannot tunnel", http.StatusInternalServerError)
		return
	}
	if _, err := conn.Write([]byte("HTTP/1.1 200 Connection established\r\n\r\n")); err != nil {
		_ = conn.Close()
		return
	}
	var raw net.Conn = conn
	if buf.Reader.Buffered() > 0 {
		// The client may send its ClientHello before reading our 200; the server's reader already holds it.
		raw = &prefixedConn{Conn: conn, reader: buf.Reader}
	}
	broken := c.tlsFault(host)
	tlsConn := tls.Server(raw, &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetCertificate: func(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
			if broken {
				return untrustedLeaf(host)
			}
			// The certificate names the host the client asked for, among those the fake serves.
			name := strings.ToLower(hello.ServerName)
			if name == "" || !c.knownHost(name) {
				name = host
			}
			return c.leafFor(name)
		},
	})
	c.tunnels.push(tlsConn)
}

// serveHost answers a request for one of the fake hosts, counting it and logging it.
func (c *Cloud) serveHost(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	rw := &recordingWriter{ResponseWriter: w}
	host := hostOnly(r.Host)
	switch {
	case host == imdsHost:
		c.serveIMDS(rw, r)
	case c.isAuthority(host):
		c.serveEntra(rw, r, host)
	case isARMHost(host):
		c.serveARM(rw, r, host)
	default:
		if reg, ok := c.registry(host); ok {
			c.serveACR(rw, r, reg)
		} else {
			http.Error(rw, "unknown host "+host, http.StatusBadGateway)
		}
	}
	if rw.endpoint != "" {
		c.countStatus(rw.endpoint, rw.status)
	}
	if c.opts.Logger != nil {
		// The path never holds a secret; queries (IMDS, the Docker token endpoint) and bodies might, so they stay out.
		c.opts.Logger.Info("request", "endpoint", string(rw.endpoint), "method", r.Method, "host", host,
			"path", r.URL.Path, "status", rw.status, "duration", time.Since(start).Round(time.Microsecond))
	}
}

// endpoint routes a request to ep: it counts it and applies the endpoint's fault. It returns the fault's token
// shaping and false when the fault already answered.
func (c *Cloud) endpoint(ep Endpoint, w http.ResponseWriter, r *http.Request) (Fault, bool) {
	c.byEndpoint[ep].Add(1)
	if rw, ok := w.(*recordingWriter); ok {
		rw.endpoint = ep
	}
	f, ok := c.activeFault(ep)
	if !ok {
		return Fault{}, true
	}
	return f, !answerFault(ep, f, w, r)
}

func (c *Cloud) knownHost(host string) bool {
	if host == imdsHost || c.isAuthority(host) || isARMHost(host) {
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

func hostOnly(hostport string) string {
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		return strings.ToLower(h)
	}
	return strings.ToLower(hostport)
}

// connQueue is a net.Listener fed with connections the proxy has tunnelled, so one http.Server serves them all.
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
		return nil, net.ErrClosed
	}
}

func (q *connQueue) Close() error {
	q.once.Do(func() { close(q.closed) })
	return nil
}

func (q *connQueue) Addr() net.Addr { return q.addr }

// prefixedConn reads through the buffered reader that may hold bytes sent before the tunnel was established.
type prefixedConn struct {
	net.Conn
	reader *bufio.Reader
}

func (p *prefixedConn) Read(b []byte) (int, error) { return p.reader.Read(b) }
