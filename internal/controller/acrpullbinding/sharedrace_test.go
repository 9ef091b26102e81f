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
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	acrv1beta2 "github.com/acrpull/acrpull/api/v1beta2"
	"github.com/acrpull/acrpull/internal/controller/acrpullbinding"
)

// siblingDeletedMidShare is a transport that stages the race of the crash-consistency soak: a pass creates a waiting
// sibling's secret (shareCredential), and before it attaches it, the sibling is deleted and its deletion handled by
// the controller (nothing referenced yet, the secret deleted, the finalizer removed). The sibling's own first
// create of its secret is held, so that the other binding's pass is the one to create it; the attach is held until
// the sibling is gone.
type siblingDeletedMidShare struct {
	next              http.RoundTripper
	namespace, secret string
	deleteSibling     func() // deletes the sibling and waits until the controller has let it go

	once          sync.Once
	held          chan struct{} // closed when the sibling's own create of its secret is held
	fail          chan struct{} // closed to answer it with an error
	staged        chan struct{} // closed once the attach went through after the deletion
	attachedStage sync.Once
}

func (s *siblingDeletedMidShare) RoundTrip(req *http.Request) (*http.Response, error) {
	var body []byte
	if req.Body != nil {
		body, _ = io.ReadAll(req.Body)
		req.Body = io.NopCloser(bytes.NewReader(body))
	}
	switch {
	case req.Method == http.MethodPost && req.URL.Path == "/api/v1/namespaces/"+s.namespace+"/secrets" &&
		bytes.Contains(body, []byte(s.secret)): // JSON or protobuf: the name is in either as it is
		first := false
		s.once.Do(func() { first = true })
		if first {
			close(s.held)
			<-s.fail
			return &http.Response{StatusCode: http.StatusServiceUnavailable, Status: "503 Service Unavailable",
				Header: http.Header{"Content-Type": {"application/json"}}, Request: req,
				Body: io.NopCloser(strings.NewReader(`{"kind":"Status","apiVersion":"v1","status":"Failure","reason":"ServiceUnavailable","code":503}`))}, nil
		}
	case req.Method == http.MethodPatch && req.URL.Path == "/api/v1/namespaces/"+s.namespace+"/serviceaccounts/default" &&
		strings.Contains(string(body), s.secret):
		s.attachedStage.Do(func() {
			s.deleteSibling()
			close(s.staged)
		})
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
	// With the finalizer from the start, as after its first passes: its deletion is the controller's full one.
	sibling.Finalizers = []string{acrpullbinding.Finalizer}
	stage := &siblingDeletedMidShare{namespace: ns, secret: "acr-pull-" + sibling.Name,
		held: make(chan struct{}), fail: make(chan struct{}), staged: make(chan struct{})}
	stage.deleteSibling = func() {
		g.Expect(k8s.Delete(ctx, sibling)).To(Succeed())
		close(stage.fail)
		g.Eventually(func() bool {
			return apierrors.IsNotFound(k8s.Get(ctx, client.ObjectKeyFromObject(sibling), &acrv1beta2.AcrPullBinding{}))
		}).WithTimeout(30*time.Second).Should(BeTrue(), "the controller let the sibling go")
	}
	cfg := rest.CopyConfig(env.Config)
	cfg.WrapTransport = func(rt http.RoundTripper) http.RoundTripper { stage.next = rt; return stage }
	stop := startShardController(t, cfg, labels.SelectorFromSet(labels.Set{shardLabel: shard}))
	defer stop()

	create(t, sibling)
	select {
	case <-stage.held:
	case <-time.After(60 * time.Second):
		t.Fatal("the sibling's pass never created its secret")
	}
	sharer := managedIdentityBinding(ns, "sharer", "default", "repository:alice:pull")
	sharer.Labels = map[string]string{pausedLabel: "true", shardLabel: shard}
	create(t, sharer)
	deleteAtEnd(t, sharer)

	eventuallyReady(t, sharer, metav1.ConditionTrue, acrv1beta2.ReasonTokenMinted)
	select {
	case <-stage.staged:
	case <-time.After(30 * time.Second):
		t.Fatal("the race was not staged: the sharer's pass did not attach a secret for its sibling")
	}
	g.Eventually(func(g Gomega) {
		g.Expect(pullSecretNames(g, ns, "default")).To(Equal([]string{"theirs", "acr-pull-sharer"}))
	}).WithTimeout(30*time.Second).Should(Succeed(), "no reference to the deleted sibling's secret is left")
}
