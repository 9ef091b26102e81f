/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

package nmi

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// PodIPIndex is the cache index of pods by every IP in status.podIPs.
const PodIPIndex = "status.podIPs"

// IndexPodIPs is the index function for PodIPIndex. Pods on the host network share the node's address, so they are
// left out: a request from that address names no pod.
func IndexPodIPs(obj client.Object) []string {
	pod, ok := obj.(*corev1.Pod)
	if !ok || pod.Spec.HostNetwork {
		return nil
	}
	ips := make([]string, 0, len(pod.Status.PodIPs)+1)
	for _, ip := range pod.Status.PodIPs {
		ips = append(ips, ip.IP)
	}
	if pod.Status.PodIP != "" && !slices.Contains(ips, pod.Status.PodIP) {
		ips = append(ips, pod.Status.PodIP)
	}
	return ips
}

// errNoPod says no running pod on this node has the caller's address (or the one the cache named is gone).
var errNoPod = errors.New("no pod")

// PodLocator finds the pod behind a source address.
//
// The informer's view is only a hint. Upstream trusted it, so a pod that got an address a deleted pod still held in
// a stale cache received that pod's identity. Here the candidate is read again from the apiserver and must still be
// the same pod (UID), on this node, holding the address, not finished and not being deleted.
type PodLocator struct {
	// Cache is indexed by PodIPIndex and holds this node's pods.
	Cache client.Reader
	// Live reads from the apiserver.
	Live client.Reader
	// Node is this node's name.
	Node string
	// Attempts and Interval: a pod that has just started may not be in the cache yet.
	Attempts int
	Interval time.Duration
	// Metrics counts failed attempts as upstream's get_pod_list errors; nil counts nothing.
	Metrics *Metrics
}

// ByIP returns the one live pod on this node with address ip.
func (l *PodLocator) ByIP(ctx context.Context, ip string) (*corev1.Pod, error) {
	var lastErr error
	for attempt := 0; attempt < max(l.Attempts, 1); attempt++ {
		if attempt > 0 {
			select {
			case <-ctx.Done():
				return nil, ctx.Err()
			case <-time.After(l.Interval):
			}
		}
		pod, err := l.byIPOnce(ctx, ip)
		if err == nil {
			return pod, nil
		}
		lastErr = err
		l.Metrics.kubeError(opGetPodList)
		if !errors.Is(err, errNoPod) {
			return nil, err
		}
	}
	return nil, lastErr
}

func (l *PodLocator) byIPOnce(ctx context.Context, ip string) (*corev1.Pod, error) {
	var pods corev1.PodList
	if err := l.Cache.List(ctx, &pods, client.MatchingFields{PodIPIndex: ip}); err != nil {
		return nil, fmt.Errorf("listing pods by address: %w", err)
	}
	var candidates []*corev1.Pod
	for i := range pods.Items {
		if l.acceptable(&pods.Items[i], ip) {
			candidates = append(candidates, &pods.Items[i])
		}
	}
	switch len(candidates) {
	case 0:
		return nil, fmt.Errorf("%w: no running pod on node %s has address %s", errNoPod, l.Node, ip)
	case 1:
	default:
		return nil, fmt.Errorf("%w: %d pods on node %s claim address %s", errNoPod, len(candidates), l.Node, ip)
	}
	cached := candidates[0]
	live := &corev1.Pod{}
	if err := l.Live.Get(ctx, types.NamespacedName{Namespace: cached.Namespace, Name: cached.Name}, live); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, fmt.Errorf("%w: pod %s/%s at %s is gone", errNoPod, cached.Namespace, cached.Name, ip)
		}
		return nil, fmt.Errorf("reading pod %s/%s: %w", cached.Namespace, cached.Name, err)
	}
	if live.UID != cached.UID || !l.acceptable(live, ip) {
		return nil, fmt.Errorf("%w: pod %s/%s no longer holds %s on node %s", errNoPod, cached.Namespace, cached.Name, ip, l.Node)
	}
	return live, nil
}

// acceptable says whether pod may be the caller at ip: on this node, off the host network, not finished, not being
// deleted, and holding ip in its status.
func (l *PodLocator) acceptable(pod *corev1.Pod, ip string) bool {
	if pod.Spec.NodeName != l.Node || pod.Spec.HostNetwork {
		return false
	}
	// A deleted pod may stay Running, with its address, for its grace period or while finalizers hold it; the
	// network may meanwhile give the address to a new pod whose status does not show it yet. Its requests would get
	// the leaving pod's tokens.
	if pod.DeletionTimestamp != nil {
		return false
	}
	if pod.Status.Phase != corev1.PodRunning && pod.Status.Phase != corev1.PodPending {
		return false
	}
	return slices.Contains(IndexPodIPs(pod), ip)
}
