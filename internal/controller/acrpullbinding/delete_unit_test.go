/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

package acrpullbinding

import (
	"fmt"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/types"
)

// A binding deleted without its finalizer is remembered for the passes that follow its deletion, then forgotten:
// a process that deletes bindings before their first usable pass does not grow without bound.
func TestDeletionsWithoutFinalizerAreRememberedForAWhile(t *testing.T) {
	var d recentDeletions
	start := time.Date(2026, 12, 6, 3, 0, 0, 0, time.UTC)
	gone := types.NamespacedName{Namespace: "a", Name: "gone"}
	d.note(gone, start)
	if !d.seen(gone, start.Add(deletionMemory)) {
		t.Fatal("forgotten within deletionMemory")
	}
	if d.seen(types.NamespacedName{Namespace: "a", Name: "other"}, start) {
		t.Fatal("a binding never deleted is seen")
	}
	if d.seen(gone, start.Add(deletionMemory+time.Second)) {
		t.Fatal("still seen after deletionMemory")
	}

	// A thousand deletions over a minute, then one an hour later: only the last is kept.
	for i := range 1000 {
		d.note(types.NamespacedName{Namespace: "b", Name: fmt.Sprint(i)}, start.Add(time.Duration(i)*60*time.Millisecond))
	}
	if n := d.len(); n != 1001 {
		t.Fatalf("%d remembered within the first minute, want 1001", n)
	}
	later := types.NamespacedName{Namespace: "c", Name: "later"}
	d.note(later, start.Add(time.Hour))
	if n := d.len(); n != 1 || !d.seen(later, start.Add(time.Hour)) {
		t.Fatalf("%d remembered an hour later, want only the newest", n)
	}

	d.forget(later)
	if d.seen(later, start.Add(time.Hour)) || d.len() != 0 {
		t.Fatal("forget kept the key")
	}
}
