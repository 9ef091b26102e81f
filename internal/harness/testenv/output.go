/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

package testenv

import (
	"bytes"
	"sync"
)

// Output collects what a controller, an agent or a process started by a test writes (its log, its stdout), for
// assertions such as "no token was ever logged". Safe for concurrent writers.
type Output struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

// Write appends p.
func (o *Output) Write(p []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.buf.Write(p)
}

// String returns everything written so far.
func (o *Output) String() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.buf.String()
}
