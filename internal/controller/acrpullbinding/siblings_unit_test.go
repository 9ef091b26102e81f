/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

package acrpullbinding

import (
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	acrv1beta2 "github.com/acrpull/acrpull/api/v1beta2"
)

// A sibling a secret was shared with has departed when it is gone, replaced by another binding of its name, or being
// deleted; only the very binding, alive, keeps what was shared with it.
func TestSiblingDeparted(t *testing.T) {
	const uid = types.UID("5a000000-0000-4000-8000-000000000001")
	live := func(uid types.UID, deleting bool) *acrv1beta2.AcrPullBinding {
		b := &acrv1beta2.AcrPullBinding{ObjectMeta: metav1.ObjectMeta{UID: uid}}
		if deleting {
			b.DeletionTimestamp = &metav1.Time{Time: unitNow}
		}
		return b
	}
	for _, tc := range []struct {
		name     string
		found    bool
		live     *acrv1beta2.AcrPullBinding
		departed bool
	}{
		{"alive", true, live(uid, false), false},
		{"gone", false, live("", false), true},
		{"replaced", true, live("5a000000-0000-4000-8000-000000000002", false), true},
		{"deleting", true, live(uid, true), true},
	} {
		if got := siblingDeparted(tc.found, tc.live, uid); got != tc.departed {
			t.Errorf("%s: departed = %v, want %v", tc.name, got, tc.departed)
		}
	}
}
