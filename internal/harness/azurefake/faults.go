/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

package azurefake

import (
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"
)

// Fault changes how an endpoint answers until cleared (or for Count requests).
type Fault struct {
	// Status, when set, is returned instead of the real answer, with Body (or an Azure-shaped error).
	Status int
	Body   string
	// RetryAfter is sent with the status, in whole seconds as Azure sends it. A 429 without it says 1 s.
	RetryAfter time.Duration
	// Latency delays every answer (faulted or not) of the endpoint.
	Latency time.Duration
	// Hold, when set, delays every answer of the endpoint until the channel is closed (or the request is cancelled):
	// a test lines up work behind it and releases it at a moment it chooses, not after a guessed latency.
	Hold <-chan struct{}
	// Malformed answers 200 with a body that is not JSON.
	Malformed bool
	// NoExp issues tokens without an exp claim.
	NoExp bool
	// TLS breaks TLS to the endpoint's host: new connections get a certificate no client trusts (the handshake
	// fails), and requests on connections opened before the fault see the connection dropped.
	TLS bool
	// Count limits the fault to the next Count requests; 0 means until cleared.
	Count int
	// RatePerSecond applies Status (429 by default) only to requests above this rate, as Azure throttles: requests
	// within the rate are answered normally.
	RatePerSecond float64
}

type faultState struct {
	Fault
	remaining int
	limiter   *rate.Limiter
}

// faultTable holds the faults per endpoint. The flag keeps the no-fault path (every benchmark request) lock-free.
type faultTable struct {
	active     atomic.Bool
	mu         sync.Mutex
	byEndpoint map[Endpoint]*faultState
}

// SetFault makes an endpoint misbehave, replacing its previous fault.
func (c *Cloud) SetFault(ep Endpoint, f Fault) {
	st := &faultState{Fault: f, remaining: f.Count}
	if f.RatePerSecond > 0 {
		st.limiter = rate.NewLimiter(rate.Limit(f.RatePerSecond), max(1, int(f.RatePerSecond)))
		if st.Status == 0 {
			st.Status = http.StatusTooManyRequests
		}
	}
	t := &c.faults
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.byEndpoint == nil {
		t.byEndpoint = map[Endpoint]*faultState{}
	}
	t.byEndpoint[ep] = st
	t.active.Store(true)
}

// Outage takes the whole cloud down: every endpoint answers with f (every request, however many) until ClearFaults.
func (c *Cloud) Outage(f Fault) {
	f.Count = 0
	for _, ep := range Endpoints {
		c.SetFault(ep, f)
	}
}

// ClearFaults makes every endpoint behave again.
func (c *Cloud) ClearFaults() {
	t := &c.faults
	t.mu.Lock()
	defer t.mu.Unlock()
	t.byEndpoint = nil
	t.active.Store(false)
}

// activeFault returns the fault to apply to one request to ep, if any, consuming a counted one.
func (c *Cloud) activeFault(ep Endpoint) (Fault, bool) {
	t := &c.faults
	if !t.active.Load() {
		return Fault{}, false
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	st := t.byEndpoint[ep]
	if st == nil {
		return Fault{}, false
	}
	if st.limiter != nil && st.limiter.Allow() {
		// Within the rate: answer normally, but keep latency and token shape faults.
		f := st.Fault
		f.Status = 0
		return f, true
	}
	if st.Count > 0 {
		st.remaining--
		if st.remaining <= 0 {
			delete(t.byEndpoint, ep)
			t.active.Store(len(t.byEndpoint) > 0)
		}
	}
	return st.Fault, true
}

// answerFault delays the request by the fault's latency and, when the fault replaces the real answer, writes it.
// It reports whether the request is answered.
func answerFault(ep Endpoint, f Fault, w http.ResponseWriter, r *http.Request) bool {
	if f.Latency > 0 {
		timer := time.NewTimer(f.Latency)
		select {
		case <-timer.C:
		case <-r.Context().Done():
			timer.Stop()
			return true
		}
	}
	if f.Hold != nil {
		select {
		case <-f.Hold:
		case <-r.Context().Done():
			return true
		}
	}
	switch {
	case f.TLS:
		if conn, _, err := http.NewResponseController(w).Hijack(); err == nil {
			_ = conn.Close()
		}
		return true
	case f.Status != 0:
		retryAfter := f.RetryAfter
		if retryAfter == 0 && f.Status == http.StatusTooManyRequests {
			retryAfter = time.Second
		}
		if retryAfter > 0 {
			w.Header().Set("Retry-After", strconv.Itoa(int((retryAfter+time.Second-1)/time.Second)))
		}
		body := f.Body
		if body == "" {
			body = defaultFaultBody(ep, f.Status)
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(f.Status)
		_, _ = w.Write([]byte(body))
		return true
	case f.Malformed:
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"access_token": "truncated`))
		return true
	}
	return false
}

// defaultFaultBody is an error body in the shape the endpoint's real service uses.
func defaultFaultBody(ep Endpoint, status int) string {
	text := http.StatusText(status)
	switch ep {
	case ACRExchange, ACRToken, ACRTokenGet, RegistryV2:
		code := "UNAVAILABLE"
		if status == http.StatusTooManyRequests {
			code = "TOOMANYREQUESTS"
		}
		return fmt.Sprintf(`{"errors":[{"code":%q,"message":"injected HTTP %d: %s"}]}`, code, status, text)
	default:
		kind := "temporarily_unavailable"
		if status < 500 && status != http.StatusTooManyRequests {
			kind = "invalid_request"
		}
		return fmt.Sprintf(`{"error":%q,"error_description":"injected HTTP %d: %s"}`, kind, status, text)
	}
}

// tlsFault reports whether a TLS fault covers a new connection to host, consuming a counted one. The fault's
// endpoints are those the host serves; the failed handshake counts as a request to the first of them.
func (c *Cloud) tlsFault(host string) bool {
	var eps []Endpoint
	switch {
	case c.isAuthority(host):
		eps = []Endpoint{EntraToken, EntraDiscovery}
	case isARMHost(host):
		eps = []Endpoint{ARMRead, ARMWrite}
	default:
		if _, ok := c.registry(host); ok {
			eps = []Endpoint{ACRToken, ACRExchange, ACRTokenGet, RegistryV2}
		}
	}
	t := &c.faults
	if !t.active.Load() {
		return false
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, ep := range eps {
		st := t.byEndpoint[ep]
		if st == nil || !st.TLS {
			continue
		}
		if st.Count > 0 {
			st.remaining--
			if st.remaining <= 0 {
				delete(t.byEndpoint, ep)
				t.active.Store(len(t.byEndpoint) > 0)
			}
		}
		c.byEndpoint[ep].Add(1)
		return true
	}
	return false
}
