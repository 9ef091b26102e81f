/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

package azurefake

import (
	"net/http"
	"net/http/httputil"
)

// proxyRegistry forwards the registry API to the real registry. Only the target changes: the request keeps the
// public host, and X-Forwarded-Proto says https, so the registry's challenges, redirects and upload locations name
// the public host and come back through the proxy like the rest of the client's traffic.
func (c *Cloud) proxyRegistry(w http.ResponseWriter, r *http.Request, reg Registry) {
	if reg.Upstream == nil {
		acrError(w, reg, http.StatusNotFound, "NOT_FOUND", "this registry has no upstream")
		return
	}
	key := reg.Host + " " + reg.Upstream.String()
	rp, ok := c.reverseProxies.Load(key)
	if !ok {
		upstream := reg.Upstream
		host := reg.Host
		rp, _ = c.reverseProxies.LoadOrStore(key, &httputil.ReverseProxy{
			Transport: c.upstream,
			Rewrite: func(pr *httputil.ProxyRequest) {
				pr.SetURL(upstream)
				pr.Out.Host = host
				pr.Out.Header.Set("X-Forwarded-Proto", "https")
				pr.Out.Header.Set("X-Forwarded-Host", host)
			},
			ErrorHandler: func(w http.ResponseWriter, _ *http.Request, _ error) {
				acrError(w, reg, http.StatusBadGateway, "UNAVAILABLE", "the registry behind this host is not answering")
			},
		})
	}
	rp.(*httputil.ReverseProxy).ServeHTTP(w, r)
}
