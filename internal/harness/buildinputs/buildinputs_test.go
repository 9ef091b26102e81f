/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

package buildinputs_test

import (
	"strings"
	"testing"

	"github.com/acrpull/acrpull/internal/harness/buildinputs"
	"github.com/acrpull/acrpull/internal/harness/testenv"
)

// A program whose inputs cannot be listed fails the test that builds it, rather than leaving its result cached on
// what was read before.
func TestRecordFailsWhenTheProgramCannotBeListed(t *testing.T) {
	if err := buildinputs.Record(testenv.ModuleRoot(), "./cmd/acrpull"); err != nil {
		t.Fatalf("recording ./cmd/acrpull: %v", err)
	}
	err := buildinputs.Record(testenv.ModuleRoot(), "./cmd/no-such-program")
	if err == nil || !strings.Contains(err.Error(), "no-such-program") {
		t.Fatalf("recording a missing program: %v", err)
	}
}
