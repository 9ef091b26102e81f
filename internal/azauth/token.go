/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

package azauth

import (
	"errors"
	"fmt"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Token is a bearer token with the times read from it. Value is secret: never log or format it.
type Token struct {
	Value     string
	IssuedAt  time.Time
	ExpiresAt time.Time
	// NotBefore is the token's nbf, zero when it has none: AAD Pod Identity's clients are handed it (not_before)
	// beside the expiry.
	NotBefore time.Time
}

// Lifetime is how long the token was issued for.
func (t Token) Lifetime() time.Duration { return t.ExpiresAt.Sub(t.IssuedAt) }

// String keeps the value out of any log line or error that formats a Token by accident.
func (t Token) String() string {
	return fmt.Sprintf("token(issued %s, expires %s)", t.IssuedAt.UTC().Format(time.RFC3339), t.ExpiresAt.UTC().Format(time.RFC3339))
}

// ErrNoExpiry means a JWT carries no usable exp claim: acrpull cannot know when to refresh it, so it does not use it.
var ErrNoExpiry = errors.New("token has no expiry (exp claim)")

// ParseJWTTimes reads exp, iat and nbf from a JWT without verifying it: the issuer verifies its own tokens, acrpull
// only schedules refreshes. A missing iat becomes receivedAt; a missing or unreadable nbf leaves NotBefore zero, as
// it only informs callers.
func ParseJWTTimes(raw string, receivedAt time.Time) (Token, error) {
	claims := jwt.MapClaims{}
	if _, _, err := jwt.NewParser().ParseUnverified(raw, claims); err != nil {
		// The parser's message can quote the token; keep only the kind of failure.
		return Token{}, errors.New("token is not a parsable JWT")
	}
	exp, err := claims.GetExpirationTime()
	if err != nil || exp == nil {
		return Token{}, ErrNoExpiry
	}
	issued := receivedAt
	if iat, err := claims.GetIssuedAt(); err == nil && iat != nil && !iat.After(receivedAt.Add(5*time.Minute)) {
		issued = iat.Time
	}
	if !exp.After(issued) {
		return Token{}, fmt.Errorf("token expired on issue (exp %s)", exp.UTC().Format(time.RFC3339))
	}
	tok := Token{Value: raw, IssuedAt: issued, ExpiresAt: exp.Time}
	if nbf, err := claims.GetNotBefore(); err == nil && nbf != nil {
		if !exp.After(nbf.Time) {
			return Token{}, fmt.Errorf("token is never valid (nbf %s, exp %s)", nbf.UTC().Format(time.RFC3339), exp.UTC().Format(time.RFC3339))
		}
		tok.NotBefore = nbf.Time
	}
	return tok, nil
}
