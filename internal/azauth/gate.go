/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

package azauth

import (
	"errors"
	"sync"
	"time"

	"golang.org/x/time/rate"
	"k8s.io/utils/clock"
)

// Throttling is per endpoint, not per token: Azure counts every request to an endpoint (a registry's token
// endpoints, an authority, the node's IMDS), while the token cache backs off per token. Without a gate per endpoint,
// a thousand tokens each waiting out their own Retry-After come back together and keep the endpoint above its limit.
//
// After a 429 the gate holds every request to that endpoint until Retry-After has passed, then lets requests through
// at the rate the endpoint was seen to accept just before (four fifths of the last second's successes: the ceiling),
// never faster, until it has gone ten minutes (calmTime) without a 429. A further 429 halves the rate; every
// recoverStep without one gives back a tenth of the ceiling, so one unlucky 429 does not leave the endpoint at a
// crawl for ten minutes (it did: five 429s took a thousand bindings from 91 s to 378 s). Before the first 429 nothing
// is limited.
const (
	calmTime        = 10 * time.Minute
	recoverStep     = 5 * time.Second
	minThrottleRate = 0.5 // requests per second, when the accepted rate could not be seen
	successWindow   = time.Second
)

// errGated marks a request the gate refused without sending it.
var errGated = errors.New("held back until the endpoint's Retry-After")

// IsGated reports whether err is the gate refusing a request it did not send: the caller should wait RetryAfterOf(err)
// without counting a failed attempt.
func IsGated(err error) bool { return errors.Is(err, errGated) }

type endpointGate struct {
	mu        sync.Mutex
	until     time.Time     // Retry-After: nothing goes out before
	limiter   *rate.Limiter // nil: no limit
	ceiling   float64       // the limiter's rate never goes above this (set at the first 429)
	raisedAt  time.Time     // when the rate last went up, or requests last resumed after a 429
	calmAt    time.Time     // the limiter goes when this passes without a 429
	successes []time.Time   // recent successful requests, newest last
}

type gates struct {
	clock clock.PassiveClock
	m     sync.Map // key → *endpointGate
}

func (g *gates) get(key string) *endpointGate {
	v, _ := g.m.LoadOrStore(key, &endpointGate{})
	return v.(*endpointGate)
}

// admit returns nil when a request to the endpoint may go out now, and otherwise a gated Throttled error saying how
// long to wait.
func (g *gates) admit(endpoint, key string) error {
	e := g.get(key)
	now := g.clock.Now()
	e.mu.Lock()
	defer e.mu.Unlock()
	if now.Before(e.until) {
		return gatedError(endpoint, e.until.Sub(now))
	}
	if e.limiter == nil {
		return nil
	}
	if !now.Before(e.calmAt) {
		e.limiter = nil
		return nil
	}
	if steps := now.Sub(e.raisedAt) / recoverStep; steps > 0 && float64(e.limiter.Limit()) < e.ceiling {
		e.limiter.SetLimitAt(now, rate.Limit(min(e.ceiling, float64(e.limiter.Limit())+float64(steps)*e.ceiling/10)))
		e.raisedAt = now
	}
	r := e.limiter.ReserveN(now, 1)
	if d := r.DelayFrom(now); d > 0 {
		r.CancelAt(now)
		return gatedError(endpoint, d)
	}
	return nil
}

// observe learns from a request that went out.
func (g *gates) observe(key string, err error) {
	e := g.get(key)
	now := g.clock.Now()
	e.mu.Lock()
	defer e.mu.Unlock()
	if err == nil {
		e.successes = append(e.successes, now)
		if len(e.successes) > 256 {
			e.successes = e.successes[len(e.successes)-256:]
		}
		return
	}
	if KindOf(err) != Throttled {
		return
	}
	wait := max(RetryAfterOf(err), time.Second)
	e.until = now.Add(wait)
	e.calmAt = now.Add(wait + calmTime)
	accepted := 0
	for _, t := range e.successes {
		if now.Sub(t) <= successWindow {
			accepted++
		}
	}
	// Four fifths of what got through in the last second; a 429 while already limited means that was too much, so
	// the limit at least halves.
	limit := float64(accepted) * 0.8
	if e.limiter != nil {
		limit = min(limit, float64(e.limiter.Limit())/2)
	}
	limit = max(limit, minThrottleRate)
	if e.limiter == nil {
		e.ceiling = limit
	}
	e.raisedAt = e.until
	// Burst 1: the rate is a ceiling for every second, not an average that allows a flood after a pause.
	e.limiter = rate.NewLimiter(rate.Limit(limit), 1)
	e.successes = e.successes[:0]
}

func gatedError(endpoint string, wait time.Duration) error {
	return &Error{Kind: Throttled, Endpoint: endpoint, Detail: "holding back until Azure's Retry-After", RetryAfter: wait, Gated: true}
}

// guarded sends one request through the endpoint's gate.
func guarded(g *gates, endpoint, key string, call func() (Token, error)) (Token, error) {
	if err := g.admit(endpoint, key); err != nil {
		return Token{}, err
	}
	tok, err := call()
	g.observe(key, err)
	return tok, err
}
