/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

package acrpullbinding_test

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	acrv1beta2 "github.com/acrpull/acrpull/api/v1beta2"
)

// siblingDeletedMidShare is a transport that stages the race of the crash-consistency soak: a pass creates a waiting
// sibling's secret (shareCredential), and before it attaches it, the sibling is deleted and its deletion handled
// (its secret deleted, nothing yet to unreference). The sibling's own first write (its finalizer) is held, so that
// the pass of the other binding is the one to create its secret; the attach is held until the controller has
// handled the deletion, which it shows by reading the sibling's secret (cleanUpVanished).
type siblingDeletedMidShare struct {
	next                       http.RoundTripper
	namespace, sibling, secret string
	deleteSibling              func()

	once            sync.Once
	finalizerHeld   chan struct{} // closed when the sibling's first write arrives
	releaseSibling  chan struct{} // closed to let it through
	deletionHandled chan struct{} // closed when the controller reads the sibling's secret after the deletion
	deleted         chan struct{}
	handledOnce     sync.Once
}

func (s *siblingDeletedMidShare) RoundTrip(req *http.Request) (*http.Response, error) {
	path := req.URL.Path
	switch {
	case req.Method == http.MethodPatch && path == "/apis/acrpull.microsoft.com/v1beta2/namespaces/"+s.namespace+"/acrpullbindings/"+s.sibling:
		first := false
		s.once.Do(func() { first = true })
		if first {
			close(s.finalizerHeld)
			<-s.releaseSibling
		}
	case req.Method == http.MethodPatch && path == "/api/v1/namespaces/"+s.namespace+"/serviceaccounts/default" && req.Body != nil:
		body, _ := io.ReadAll(req.Body)
		req.Body = io.NopCloser(bytes.NewReader(body))
		if strings.Contains(string(body), s.secret) {
			s.deleteSibling()
			close(s.deleted)
			close(s.releaseSibling)
			select {
			case <-s.deletionHandled:
			case <-time.After(30 * time.Second):
			}
		}
	case req.Method == http.MethodGet && path == "/api/v1/namespaces/"+s.namespace+"/secrets/"+s.secret:
		select {
		case <-s.deleted:
			s.handledOnce.Do(func() { close(s.deletionHandled) })
		default:
		}
	}
	return s.next.RoundTrip(req)
}

// A sibling deleted between the pass that creates its secret and the patch that attaches it leaves no reference
// to a secret that no longer exists: the pass sees the deletion after its attach and takes the reference back.
func TestASiblingDeletedWhileItsSecretIsSharedLeavesNoReference(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	const shardLabel, shard = "acrpull.test/shard", "shared-race"
	ns := newNamespace(t)
	serviceAccount(t, ns, "default", "", "theirs")
	sibling := managedIdentityBinding(ns, "sibling", "default", "repository:alice:pull")
	sibling.Labels = map[string]string{pausedLabel: "true", shardLabel: shard}
	stage := &siblingDeletedMidShare{
		namespace: ns, sibling: sibling.Name, secret: "acr-pull-" + sibling.Name,
		finalizerHeld: make(chan struct{}), releaseSibling: make(chan struct{}), deletionHandled: make(chan struct{}),
		deleted: make(chan struct{}),
		deleteSibling: func() {
			// Its deletion, as the controller's would run it on another worker: nothing referenced yet, the secret
			// deleted, the binding gone (it has no finalizer yet).
			g.Expect(k8s.Delete(ctx, sibling)).To(Succeed())
			g.Expect(client.IgnoreNotFound(k8s.Delete(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "acr-pull-sibling"}}))).To(Succeed())
		},
	}
	cfg := rest.CopyConfig(env.Config)
	cfg.WrapTransport = func(rt http.RoundTripper) http.RoundTripper { stage.next = rt; return stage }
	stop := startShardController(t, cfg, labels.SelectorFromSet(labels.Set{shardLabel: shard}))
	defer stop()

	create(t, sibling)
	<-stage.finalizerHeld
	sharer := managedIdentityBinding(ns, "sharer", "default", "repository:alice:pull")
	sharer.Labels = map[string]string{pausedLabel: "true", shardLabel: shard}
	create(t, sharer)
	deleteAtEnd(t, sharer)

	eventuallyReady(t, sharer, metav1.ConditionTrue, acrv1beta2.ReasonTokenMinted)
	select {
	case <-stage.deleted:
	default:
		t.Fatal("the race was not staged: the sharer's pass did not attach a secret for its sibling")
	}
	g.Eventually(func(g Gomega) {
		g.Expect(pullSecretNames(g, ns, "default")).To(Equal([]string{"theirs", "acr-pull-sharer"}))
		g.Expect(apierrors.IsNotFound(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "acr-pull-sibling"}, &corev1.Secret{}))).To(BeTrue())
	}).WithTimeout(30*time.Second).Should(Succeed(), "no reference to the deleted sibling's secret is left")
}
