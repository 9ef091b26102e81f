/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

package acrpullbinding

import (
	"testing"

	"k8s.io/apimachinery/pkg/types"
)

func TestSharingReleasesWhatItHeldOnce(t *testing.T) {
	var u unattachedSecrets
	mine := types.NamespacedName{Namespace: "team", Name: "acr-pull-b"}
	lost := types.NamespacedName{Namespace: "team", Name: "acr-pull-c"}
	other := types.NamespacedName{Namespace: "team", Name: "acr-pull-d"}

	s := u.startSharing()
	s.hold(mine)
	s.hold(lost)
	s.giveUp(lost)
	if _, ok := u.attachedSignal(lost); ok {
		t.Fatal("a secret the pass gave up on is still awaited")
	}
	attached, ok := u.attachedSignal(mine)
	if !ok {
		t.Fatal("a secret the pass created is not awaited")
	}
	if _, ok := u.attachedSignal(other); ok {
		t.Fatal("a secret nobody holds is awaited")
	}
	select {
	case <-attached:
		t.Fatal("released before the pass attached")
	default:
	}

	s.release()
	s.release()
	select {
	case <-attached:
	default:
		t.Fatal("a waiting pass is not woken by the release")
	}
	if _, ok := u.attachedSignal(mine); ok {
		t.Fatal("a released secret is still awaited")
	}

	var nothing *sharing
	nothing.release()
}

// A hold of another pass that created the same name later is not dropped by the first pass's release.
func TestReleaseLeavesALaterHoldOfTheSameSecret(t *testing.T) {
	var u unattachedSecrets
	secret := types.NamespacedName{Namespace: "team", Name: "acr-pull-b"}
	first := u.startSharing()
	first.hold(secret)
	second := u.startSharing()
	second.hold(secret)
	first.release()
	attached, ok := u.attachedSignal(secret)
	if !ok {
		t.Fatal("the later pass's hold was dropped")
	}
	select {
	case <-attached:
		t.Fatal("the later pass's hold was released by the first")
	default:
	}
	second.release()
}
