/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

package metrics

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// The bindings gauge counts bindings per (ready, reason): a binding moves between counts when its condition changes,
// a repeated report changes nothing, a deletion takes it away, and a count that reaches zero leaves no series behind.
func TestBindingReadinessCounts(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := New(reg)
	expect := func(step, want string) {
		t.Helper()
		header := "# HELP acrpull_bindings " + bindingsHelp + "\n# TYPE acrpull_bindings gauge\n"
		if want == "" {
			header = ""
		}
		if err := testutil.GatherAndCompare(reg, strings.NewReader(header+want), "acrpull_bindings"); err != nil {
			t.Errorf("%s: %v", step, err)
		}
	}

	m.BindingReadiness("AcrPullBinding", "a", "one", "False", "AzureUnavailable")
	m.BindingReadiness("AcrPullBinding", "a", "two", "False", "AzureUnavailable")
	m.BindingReadiness("AcrPullBinding", "b", "one", "True", "TokenMinted")
	m.BindingReadiness("AcrPullBinding", "a", "one", "False", "AzureUnavailable") // unchanged: counted once
	expect("three bindings", `
acrpull_bindings{controller="AcrPullBinding",ready="False",reason="AzureUnavailable"} 2
acrpull_bindings{controller="AcrPullBinding",ready="True",reason="TokenMinted"} 1
`)

	m.BindingReadiness("AcrPullBinding", "a", "one", "True", "TokenMinted")
	expect("one recovers", `
acrpull_bindings{controller="AcrPullBinding",ready="False",reason="AzureUnavailable"} 1
acrpull_bindings{controller="AcrPullBinding",ready="True",reason="TokenMinted"} 2
`)

	m.ForgetBinding("AcrPullBinding", "a", "two")
	m.ForgetBinding("AcrPullBinding", "a", "two") // a second deletion pass must not count it away twice
	m.ForgetBinding("AcrPullBinding", "c", "never-reported")
	expect("the failing one is deleted", `
acrpull_bindings{controller="AcrPullBinding",ready="True",reason="TokenMinted"} 2
`)

	m.BindingReadiness("AcrPullBinding", "d", "new", "False", "AzureUnavailable")
	expect("a new failing binding after the deletions", `
acrpull_bindings{controller="AcrPullBinding",ready="False",reason="AzureUnavailable"} 1
acrpull_bindings{controller="AcrPullBinding",ready="True",reason="TokenMinted"} 2
`)

	m.ForgetBinding("AcrPullBinding", "a", "one")
	m.ForgetBinding("AcrPullBinding", "b", "one")
	m.ForgetBinding("AcrPullBinding", "d", "new")
	expect("all deleted", "")
}

// The verification gauge counts like the readiness one, and a binding whose Verified condition goes away (pull
// verification turned off) leaves it, as a deleted binding does.
func TestBindingVerificationCounts(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := New(reg)
	expect := func(step, want string) {
		t.Helper()
		header := "# HELP acrpull_bindings_verified " + verifiedHelp + "\n# TYPE acrpull_bindings_verified gauge\n"
		if want == "" {
			header = ""
		}
		if err := testutil.GatherAndCompare(reg, strings.NewReader(header+want), "acrpull_bindings_verified"); err != nil {
			t.Errorf("%s: %v", step, err)
		}
	}
	m.BindingVerification("c", "a", "one", "True", "PullVerified")
	m.BindingVerification("c", "a", "two", "False", "ScopeDenied")
	m.BindingVerification("c", "a", "three", "False", "ScopeDenied")
	expect("three bindings", `
acrpull_bindings_verified{controller="c",reason="PullVerified",verified="True"} 1
acrpull_bindings_verified{controller="c",reason="ScopeDenied",verified="False"} 2
`)
	m.BindingVerification("c", "a", "two", "", "")
	m.ForgetBinding("c", "a", "three")
	expect("one loses its condition, one is deleted", `
acrpull_bindings_verified{controller="c",reason="PullVerified",verified="True"} 1
`)
	m.BindingVerification("c", "a", "one", "", "")
	expect("none left", "")
}
