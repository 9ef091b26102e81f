/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

// The outage story, part one: a binding that fails because Azure is unavailable says so once. Its retries find the
// same failure, and rewriting the status with each attempt's details would turn an Azure outage into an apiserver
// write storm (one patch per binding per retry) while telling a reader nothing new.

package acrpullbinding

import (
	"k8s.io/apimachinery/pkg/api/meta"

	acrv1beta2 "github.com/acrpull/acrpull/api/v1beta2"
	"github.com/acrpull/acrpull/internal/azauth"
)

// transient says whether a failure reason is Azure's to clear by itself (it is down, or asks callers to slow down),
// as opposed to a refusal that lasts until someone changes a role, an identity or the spec.
func transient(reason string) bool {
	return reason == string(azauth.Unavailable) || reason == string(azauth.Throttled)
}

// ongoingFailureMessage is the message for a transient failure: the one the binding already shows when it is failing
// for the same reason, else the new one. What differs between one attempt and the next (the endpoint that answered
// first, its status code, how long Azure asked to wait) is in the log; the status changes only when the reason does.
func ongoingFailureMessage(was bindingStatus, reason, message string) string {
	if !transient(reason) {
		return message
	}
	if failingReason(meta.FindStatusCondition(was.Conditions, acrv1beta2.ConditionReady)) == reason && was.Error != "" {
		return was.Error
	}
	return message
}
