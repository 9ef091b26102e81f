/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

package azurefake

import (
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
)

// counters are atomic so that counting costs no lock on the request path.
type counters struct {
	byEndpoint map[Endpoint]*atomic.Int64 // fixed at New, so reads need no lock
	byStatus   sync.Map                   // statusKey → *atomic.Int64
	// byHost counts requests and tunnels per host, known or not, so tests can prove a host was never contacted.
	byHost sync.Map // host → *atomic.Int64
	// byTenant counts token requests per tenant, so multi-tenant tests can prove each tenant was asked once.
	byTenant sync.Map // lower-case tenant → *atomic.Int64
	// byARM counts Resource Manager requests per method and resource kind (ARMCount).
	byARM sync.Map // "METHOD kind" → *atomic.Int64
}

type statusKey struct {
	ep     Endpoint
	status int
}

func (n *counters) init() {
	n.byEndpoint = map[Endpoint]*atomic.Int64{}
	for _, ep := range Endpoints {
		n.byEndpoint[ep] = &atomic.Int64{}
	}
}

// Count is the number of requests an endpoint received since the last reset, faulted ones included.
func (c *Cloud) Count(ep Endpoint) int64 {
	if n, ok := c.byEndpoint[ep]; ok {
		return n.Load()
	}
	return 0
}

// Counts returns the non-zero request counters.
func (c *Cloud) Counts() map[Endpoint]int64 {
	out := map[Endpoint]int64{}
	for ep, n := range c.byEndpoint {
		if v := n.Load(); v > 0 {
			out[ep] = v
		}
	}
	return out
}

// StatusCounts returns, per endpoint, how many answers had each HTTP status since the last reset.
func (c *Cloud) StatusCounts() map[Endpoint]map[int]int64 {
	out := map[Endpoint]map[int]int64{}
	c.byStatus.Range(func(k, v any) bool {
		key := k.(statusKey)
		if n := v.(*atomic.Int64).Load(); n > 0 {
			if out[key.ep] == nil {
				out[key.ep] = map[int]int64{}
			}
			out[key.ep][key.status] = n
		}
		return true
	})
	return out
}

// CountStatus is how many answers, over every endpoint, had the HTTP status since the last reset: the 429s of a
// throttling run, for instance.
func (c *Cloud) CountStatus(status int) int64 {
	var total int64
	c.byStatus.Range(func(k, v any) bool {
		if k.(statusKey).status == status {
			total += v.(*atomic.Int64).Load()
		}
		return true
	})
	return total
}

// HostRequests is how many requests or tunnels the proxy received for host, including hosts it refused.
func (c *Cloud) HostRequests(host string) int64 {
	if v, ok := c.byHost.Load(strings.ToLower(host)); ok {
		return v.(*atomic.Int64).Load()
	}
	return 0
}

// TenantTokenRequests is how many requests Entra ID's token endpoint received for tenant (as named in the path) since
// the last reset, over every authority host, refused and faulted ones included.
func (c *Cloud) TenantTokenRequests(tenant string) int64 {
	if v, ok := c.byTenant.Load(strings.ToLower(tenant)); ok {
		return v.(*atomic.Int64).Load()
	}
	return 0
}

// ResetCounts zeroes every counter.
func (c *Cloud) ResetCounts() {
	for _, n := range c.byEndpoint {
		n.Store(0)
	}
	for _, m := range []*sync.Map{&c.byStatus, &c.byHost, &c.byTenant, &c.byARM} {
		m.Range(func(_, v any) bool {
			v.(*atomic.Int64).Store(0)
			return true
		})
	}
}

func (c *Cloud) countHost(host string) {
	increment(&c.byHost, host)
}

func (c *Cloud) countTenantToken(tenant string) {
	increment(&c.byTenant, strings.ToLower(tenant))
}

func (c *Cloud) countStatus(ep Endpoint, status int) {
	increment(&c.byStatus, statusKey{ep, status})
}

func increment(m *sync.Map, key any) {
	v, ok := m.Load(key)
	if !ok {
		v, _ = m.LoadOrStore(key, &atomic.Int64{})
	}
	v.(*atomic.Int64).Add(1)
}

// recordingWriter remembers the endpoint a request was routed to and the status it was answered with.
type recordingWriter struct {
	http.ResponseWriter
	endpoint Endpoint
	status   int
}

func (w *recordingWriter) WriteHeader(code int) {
	if w.status == 0 && code >= 200 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *recordingWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// Flush lets the registry's streamed blobs through without buffering.
func (w *recordingWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (w *recordingWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
