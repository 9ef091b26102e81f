/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

package acrpullbinding

import (
	"sync"

	"k8s.io/apimachinery/pkg/types"
)

// unattachedSecrets holds the secrets passes created for siblings (shareCredential) and have not listed in the
// service account yet, each with the channel its pass closes once it has. In a burst, the workers freed first take
// up siblings while other passes are still creating their secrets; a sibling's pass that found its secret there and
// patched the account itself would cost one more patch of a busy account, and one more conflict for the sharing
// pass. It waits for the sharing pass's patch instead (attachSecret).
//
// Only the controller process that creates a secret can wait on it, so the set is in memory: a restart loses nothing
// but the wait.
type unattachedSecrets struct {
	mu     sync.Mutex
	byName map[types.NamespacedName]<-chan struct{}
}

// hold records that secret is being created by a pass that closes attached once it has tried to list it.
func (u *unattachedSecrets) hold(secret types.NamespacedName, attached <-chan struct{}) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.byName == nil {
		u.byName = map[types.NamespacedName]<-chan struct{}{}
	}
	u.byName[secret] = attached
}

// drop forgets secret if it is held with attached: a later hold of the same name by another pass stays.
func (u *unattachedSecrets) drop(secret types.NamespacedName, attached <-chan struct{}) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.byName[secret] == attached {
		delete(u.byName, secret)
	}
}

// dropAll forgets every secret held with attached.
func (u *unattachedSecrets) dropAll(attached <-chan struct{}) {
	u.mu.Lock()
	defer u.mu.Unlock()
	for secret, by := range u.byName {
		if by == attached {
			delete(u.byName, secret)
		}
	}
}

// attachedSignal returns the channel closed once the pass that created secret has tried to list it, if one is
// about to.
func (u *unattachedSecrets) attachedSignal(secret types.NamespacedName) (<-chan struct{}, bool) {
	u.mu.Lock()
	defer u.mu.Unlock()
	attached, ok := u.byName[secret]
	return attached, ok
}

// sharing is one pass's hold on the secrets it creates for siblings (shareCredential), released together once the
// pass has patched the account (or ended without doing so). Its channel identifies its holds in unattachedSecrets.
type sharing struct {
	from     *unattachedSecrets
	attached chan struct{}
	once     sync.Once
}

func (u *unattachedSecrets) startSharing() *sharing {
	return &sharing{from: u, attached: make(chan struct{})}
}

// hold records that the pass is about to create secret.
func (s *sharing) hold(secret types.NamespacedName) {
	s.from.hold(secret, s.attached)
}

// giveUp forgets a secret the pass did not create after all.
func (s *sharing) giveUp(secret types.NamespacedName) {
	s.from.drop(secret, s.attached)
}

// release wakes the passes waiting on the pass's secrets; once is enough, more calls do nothing. A nil sharing (a
// pass that shared nothing) has nothing to release.
func (s *sharing) release() {
	if s == nil {
		return
	}
	s.once.Do(func() {
		s.from.dropAll(s.attached)
		close(s.attached)
	})
}
