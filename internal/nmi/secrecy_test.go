/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

package nmi_test

import (
	"context"
	"errors"
	"fmt"
	"strings"

	eventsv1 "k8s.io/api/events/v1"
)

// afterTheSuite checks what only the whole suite can show, once every test has issued and refused tokens: nothing
// the agents logged and no Event holds a token (Entra and service-account tokens are JWTs, whose encoded header
// starts with "eyJ"), and the agent's metrics carry upstream NMI's names and labels for every status it answered,
// so existing dashboards keep working. TestMain runs it; a run of only some tests (-run) skips it.
func afterTheSuite(ctx context.Context) error {
	log := agentLog.String()
	if !strings.Contains(log, `"msg":"refused"`) {
		return errors.New("the agents logged no refusals: the token search would prove nothing")
	}
	if i := strings.Index(log, "eyJ"); i >= 0 {
		return errors.New("token-like text in the agents' log")
	}
	var evs eventsv1.EventList
	if err := k8s.List(ctx, &evs); err != nil {
		return err
	}
	if len(evs.Items) == 0 {
		return errors.New("no Events: the token search would prove nothing")
	}
	for _, e := range evs.Items {
		if strings.Contains(e.Note, "eyJ") {
			return fmt.Errorf("token-like text in Event %s/%s", e.Namespace, e.Name)
		}
	}

	families, err := agentMetrics.Gather()
	if err != nil {
		return err
	}
	statuses := map[string]bool{}
	for _, f := range families {
		if f.GetName() != "aadpodidentity_nmi_operations_duration_seconds" {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "status_code" {
					statuses[l.GetValue()] = true
				}
			}
		}
	}
	for _, want := range []string{"200", "400", "403", "404", "500"} {
		if !statuses[want] {
			return fmt.Errorf("no aadpodidentity_nmi_operations_duration_seconds sample with status_code %s (have %v)", want, statuses)
		}
	}
	return nil
}
