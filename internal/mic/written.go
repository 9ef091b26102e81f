/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

package mic

import (
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/types"

	aadv1 "github.com/acrpull/acrpull/api/aadpodidentity/v1"
)

// writtenTTL bounds how long a write of this process stands in for what the cache shows. The cache normally catches
// up within milliseconds; past this, the cache is taken as it is (a record changed or deleted by someone else).
const writtenTTL = 30 * time.Second

// writtenRecords lets a cycle read the controller's own record writes before the cache has them. The cycle that a
// host's finished step queues often runs before the cache shows that step's writes, and would then create the
// step's new records again (AlreadyExists) and patch its records to Assigned a second time (they still look
// Created).
type writtenRecords struct {
	mu      sync.Mutex
	records map[types.NamespacedName]writtenRecord
}

type writtenRecord struct {
	rec *aadv1.AzureAssignedIdentity // as the apiserver answered the write; nil once deleted
	at  time.Time
}

// wrote notes a record as the apiserver returned it from a create or patch.
func (w *writtenRecords) wrote(rec *aadv1.AzureAssignedIdentity, now time.Time) {
	w.put(types.NamespacedName{Namespace: rec.Namespace, Name: rec.Name}, writtenRecord{rec: rec.DeepCopy(), at: now})
}

// deleted notes that a record was deleted.
func (w *writtenRecords) deleted(key types.NamespacedName, now time.Time) {
	w.put(key, writtenRecord{at: now})
}

func (w *writtenRecords) put(key types.NamespacedName, r writtenRecord) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.records == nil {
		w.records = map[types.NamespacedName]writtenRecord{}
	}
	w.records[key] = r
}

// overlay returns the cached records with this process's newer writes in their place: a record written but not in
// the cache yet is added, one deleted but still cached is left out, and one whose cached copy is older than the
// write is replaced by the write. A write is forgotten once the cache shows it (same resourceVersion, or the deleted
// record gone) or once it is older than writtenTTL.
func (w *writtenRecords) overlay(cached []aadv1.AzureAssignedIdentity, now time.Time) []aadv1.AzureAssignedIdentity {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.records) == 0 {
		return cached
	}
	for key, r := range w.records {
		if now.Sub(r.at) > writtenTTL {
			delete(w.records, key)
		}
	}
	out := make([]aadv1.AzureAssignedIdentity, 0, len(cached))
	seen := map[types.NamespacedName]bool{}
	for _, c := range cached {
		key := types.NamespacedName{Namespace: c.Namespace, Name: c.Name}
		seen[key] = true
		r, ok := w.records[key]
		switch {
		case !ok:
			out = append(out, c)
		case r.rec == nil: // deleted here, not yet gone from the cache
		case r.rec.ResourceVersion == c.ResourceVersion:
			delete(w.records, key) // the cache caught up
			out = append(out, c)
		default:
			out = append(out, *r.rec.DeepCopy())
		}
	}
	for key, r := range w.records {
		if seen[key] {
			continue
		}
		if r.rec == nil {
			delete(w.records, key) // the deletion reached the cache
			continue
		}
		out = append(out, *r.rec.DeepCopy())
	}
	return out
}
