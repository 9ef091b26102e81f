/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

package nmi

import (
	"context"
	"errors"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	aadv1 "github.com/acrpull/acrpull/api/aadpodidentity/v1"
)

// errNotAssigned says the assignment controller has not (yet) put the pod's identity on its node.
var errNotAssigned = errors.New("identity not assigned to the node")

// Assignments follows the assignment controller's AzureAssignedIdentity records for this node, for classic
// ("standard") mode, where a user-assigned identity must be on the node's VM or scale set before its IMDS can issue
// the token.
type Assignments struct {
	// Records is a cache of this node's records (label nodename=<node>).
	Records client.Reader
	// CreatedWait bounds the wait for a record to appear, TotalWait the wait for it to become Assigned: upstream's
	// retry-attempts-for-created and -for-assigned times find-identity-retry-interval (80 s and 100 s).
	CreatedWait, TotalWait time.Duration
	// Grace is how long after a pod's creation the auto source waits for a record before it decides the pod is not
	// assigned: the controller records a pod within a cycle of its scheduling, but the pod may ask sooner.
	Grace time.Duration
	// Poll is how often the cache is looked at. The cache is local memory fed by a watch, so looking often costs
	// nothing and answers as soon as the record changes, instead of on upstream's 5-second grid.
	Poll time.Duration
}

// record returns the pod's record for identity, if the controller wrote one.
func (a *Assignments) record(ctx context.Context, pod *corev1.Pod, id *aadv1.AzureIdentity) (*aadv1.AzureAssignedIdentity, error) {
	var list aadv1.AzureAssignedIdentityList
	if err := a.Records.List(ctx, &list, client.MatchingLabels{aadv1.NodeNameLabel: pod.Spec.NodeName}); err != nil {
		return nil, fmt.Errorf("listing assignment records: %w", err)
	}
	for i := range list.Items {
		r := &list.Items[i]
		ref := r.Spec.AzureIdentityRef
		if r.Spec.Pod == pod.Name && r.Spec.PodNamespace == pod.Namespace && ref != nil &&
			ref.Name == id.Name && ref.Namespace == id.Namespace && r.DeletionTimestamp == nil {
			return r, nil
		}
	}
	return nil, nil
}

// wait returns once the pod's record for identity is Assigned (or has the empty status of records older than 1.6),
// and errNotAssigned when no record appears within CreatedWait or it is not Assigned within TotalWait.
func (a *Assignments) wait(ctx context.Context, pod *corev1.Pod, id *aadv1.AzureIdentity) error {
	start := time.Now()
	for {
		rec, err := a.record(ctx, pod, id)
		if err != nil {
			return err
		}
		if rec != nil && (rec.Status.Status == aadv1.AssignedIDAssigned || rec.Status.Status == "") {
			return nil
		}
		waited := time.Since(start)
		if (rec == nil && waited >= a.CreatedWait) || waited >= a.TotalWait {
			state := "no record"
			if rec != nil {
				state = "record " + rec.Name + " is " + rec.Status.Status
			}
			return fmt.Errorf("%w after %s: %s for pod %s/%s and identity %s/%s", errNotAssigned,
				waited.Round(time.Second), state, pod.Namespace, pod.Name, id.Namespace, id.Name)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w: the request ended while waiting (%v)", errNotAssigned, ctx.Err())
		case <-time.After(a.Poll):
		}
	}
}

// recordForAuto returns the pod's record, waiting while the pod is younger than Grace and has none yet.
func (a *Assignments) recordForAuto(ctx context.Context, pod *corev1.Pod, id *aadv1.AzureIdentity) (*aadv1.AzureAssignedIdentity, error) {
	until := pod.CreationTimestamp.Add(a.Grace)
	for {
		rec, err := a.record(ctx, pod, id)
		if err != nil || rec != nil || !time.Now().Before(until) {
			return rec, err
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(a.Poll):
		}
	}
}
