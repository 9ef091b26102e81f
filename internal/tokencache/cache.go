/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

// Package tokencache shares Azure tokens between bindings. Bindings that use the same identity, registry and scope
// need the same token; the cache makes that one Azure call per refresh instead of one per binding.
//
// Concurrent misses for a key share one fetch (singleflight). A failed fetch blocks its key for Retry-After, or for
// an exponential per-key backoff, so a thousand bindings waiting on a failing endpoint still cost one call per step.
package tokencache

import (
	"context"
	"errors"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"
	"k8s.io/utils/clock"

	"github.com/acrpull/acrpull/internal/azauth"
)

// Backoff bounds for a key whose fetches fail.
const (
	minFailureBackoff = time.Second
	maxFailureBackoff = 5 * time.Minute
	// maxUnavailableBackoff bounds the backoff while Azure is unavailable (no answer, 5xx, timeouts): an outage ends
	// without notice, and the key's next fetch is what notices; every caller of the key shares that one request, so
	// probing every few seconds costs one request per key, not per caller, and the callers resume within seconds of
	// the outage's end instead of minutes. Azure's own Retry-After still wins.
	maxUnavailableBackoff = 8 * time.Second
)

// Observer is told about every lookup, for metrics.
type Observer interface {
	// CacheLookup reports a lookup in a layer (entra, acr-refresh, acr-access) and whether a cached token served it.
	CacheLookup(layer string, hit bool)
}

// Cache holds tokens by key. The zero value is not usable; call New.
type Cache struct {
	clock    clock.PassiveClock
	observer Observer

	mu      sync.Mutex
	entries map[string]*entry
	flights singleflight.Group
}

type entry struct {
	token azauth.Token
	valid bool

	// failures counts consecutive failed fetches; blockedUntil and lastErr answer callers until the block ends.
	failures     int
	blockedUntil time.Time
	lastErr      error
}

// New returns an empty cache.
func New(clk clock.PassiveClock, observer Observer) *Cache {
	return &Cache{clock: clk, observer: observer, entries: map[string]*entry{}}
}

// Get returns the token cached under key if acceptable says it is still fresh enough, and otherwise fetches one.
// Concurrent callers for the same key share one fetch. While the key is blocked after a failure, Get returns that
// failure (with the remaining wait as its Retry-After) without calling fetch.
func (c *Cache) Get(ctx context.Context, layer, key string, acceptable func(azauth.Token) bool,
	fetch func(ctx context.Context) (azauth.Token, error)) (azauth.Token, error) {
	now := c.clock.Now()
	c.mu.Lock()
	e := c.entries[key]
	if e != nil && e.valid && acceptable(e.token) {
		tok := e.token
		c.mu.Unlock()
		c.observe(layer, true)
		return tok, nil
	}
	if e != nil && now.Before(e.blockedUntil) {
		err := withRetryAfter(e.lastErr, e.blockedUntil.Sub(now))
		c.mu.Unlock()
		return azauth.Token{}, err
	}
	c.mu.Unlock()
	c.observe(layer, false)

	v, err, _ := c.flights.Do(key, func() (any, error) {
		// The fetch outlives a single caller's cancellation: other callers wait on it too.
		tok, err := fetch(context.WithoutCancel(ctx))
		c.record(key, tok, err)
		return tok, err
	})
	if err != nil {
		return azauth.Token{}, err
	}
	return v.(azauth.Token), nil
}

func (c *Cache) record(key string, tok azauth.Token, err error) {
	now := c.clock.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.entries[key]
	if e == nil {
		e = &entry{}
		c.entries[key] = e
	}
	if err == nil {
		*e = entry{token: tok, valid: true}
		return
	}
	if azauth.IsGated(err) {
		// Nothing was sent: the endpoint's gate says when it may be. Backing off further for a request that never
		// failed would only slow the recovery.
		e.blockedUntil = now.Add(azauth.RetryAfterOf(err))
		e.lastErr = err
		return
	}
	e.failures++
	wait := minFailureBackoff << min(e.failures-1, 16)
	wait = min(wait, maxFailureBackoff)
	if azauth.KindOf(err) == azauth.Unavailable {
		wait = min(wait, maxUnavailableBackoff)
	}
	if ra := azauth.RetryAfterOf(err); ra > wait {
		wait = ra
	}
	e.blockedUntil = now.Add(wait)
	e.lastErr = err
	// A token that failed to refresh may still be valid; callers decide with acceptable, so keep it.
}

// Sweep drops entries whose tokens have expired and whose blocks have ended, so keys of deleted bindings do not
// accumulate.
func (c *Cache) Sweep() {
	now := c.clock.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	for k, e := range c.entries {
		if (!e.valid || !now.Before(e.token.ExpiresAt)) && !now.Before(e.blockedUntil) {
			delete(c.entries, k)
		}
	}
}

// Len is the number of keys held.
func (c *Cache) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.entries)
}

func (c *Cache) observe(layer string, hit bool) {
	if c.observer != nil {
		c.observer.CacheLookup(layer, hit)
	}
}

// withRetryAfter returns err with its Retry-After replaced by wait, keeping its classification.
func withRetryAfter(err error, wait time.Duration) error {
	var azErr *azauth.Error
	if errors.As(err, &azErr) {
		cp := *azErr
		cp.RetryAfter = wait
		return &cp
	}
	return &azauth.Error{Kind: azauth.Unavailable, Endpoint: "cache", Detail: "previous attempt failed", RetryAfter: wait}
}
