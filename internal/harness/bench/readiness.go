/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

package bench

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/cache"

	acrv1beta2 "github.com/acrpull/acrpull/api/v1beta2"
	"github.com/acrpull/acrpull/internal/dockerconfig"
)

// bindingLabel and expiryAnnotation are what both msi-acrpull and acrpull put on a binding's pull secret, and
// bindingFinalizer what both put on the binding.
const (
	bindingLabel     = "acr.microsoft.com/binding"
	expiryAnnotation = "acr.microsoft.com/token.expiry"
	bindingFinalizer = "msi-acrpull.microsoft.com"
)

// readiness decides, from watches of bindings, their labelled secrets and service accounts, when a binding is
// usable by any controller's standard: a secret labelled with the binding's name holds a token for the binding's
// registry, the binding's service account lists that secret, and status.tokenExpirationTime is set (what
// msi-acrpull writes; it has no Ready condition). acrpull's Ready condition is tracked too, as a second figure.
// A binding is "current" when it is usable, its status has no error and status.tokenExpirationTime is the expiry
// its secret's annotation names: nothing is left for the controller to write.
type readiness struct {
	cancel context.CancelFunc

	mu       sync.Mutex
	bindings map[string]bindingView           // ns/name
	secrets  map[string]map[string]secretView // ns/binding -> secret name -> view
	accounts map[string]map[string]bool       // ns/name -> pull secret names
	// byAccount lists the bindings targeting a service account, so its update re-evaluates only them.
	byAccount map[string]map[string]bool // ns/account -> ns/binding keys

	usable, ready, current map[string]bool
	// usableAt and readyAt are when a binding was first seen usable and Ready; currentAt the last time it was seen
	// current (so a binding that was current at some moment since T counts, though a refresh has since begun).
	usableAt, readyAt, currentAt map[string]time.Time
	// secretAt is when a binding's secret was first seen; refreshes counts changes of a secret's expiry annotation.
	secretAt map[string]time.Time
	// finalizedAt is when a binding was first seen with the controller's finalizer.
	finalizedAt map[string]time.Time
	refreshes   int64
	// log, while a scenario keeps one, records when each secret's token changed.
	log *refreshLog
}

// refreshLog is when secrets' tokens changed (their expiry annotation), per secret and per second of the clock.
type refreshLog struct {
	perSec map[int64]int64
	times  map[string][]time.Time // ns/secret name
}

type bindingView struct {
	namespace, account string
	expiry             *metav1.Time
	statusError        string
	readyCondition     bool
}

type secretView struct {
	token  bool
	expiry string
}

// startReadiness starts the watches and returns once their caches are filled.
func (b *bench) startReadiness(ctx context.Context) (*readiness, error) {
	ctx, cancel := context.WithCancel(ctx)
	r := &readiness{cancel: cancel, bindings: map[string]bindingView{}, secrets: map[string]map[string]secretView{},
		accounts: map[string]map[string]bool{}, byAccount: map[string]map[string]bool{},
		usable: map[string]bool{}, ready: map[string]bool{}, current: map[string]bool{},
		usableAt: map[string]time.Time{}, readyAt: map[string]time.Time{}, currentAt: map[string]time.Time{}, secretAt: map[string]time.Time{},
		finalizedAt: map[string]time.Time{}}
	fail := func(err error) (*readiness, error) { cancel(); return nil, err }

	bindingCache, err := cache.New(b.env.Config, cache.Options{Scheme: b.c.Scheme()})
	if err != nil {
		return fail(err)
	}
	bindingInformer, err := bindingCache.GetInformer(ctx, &acrv1beta2.AcrPullBinding{})
	if err != nil {
		return fail(err)
	}
	if _, err := bindingInformer.AddEventHandler(handlers(r.observeBinding)); err != nil {
		return fail(err)
	}
	go func() { _ = bindingCache.Start(ctx) }()

	// Protobuf for the core types: the secrets carry tokens, and the bench shares the cores with what it measures.
	cfg := rest.CopyConfig(b.env.Config)
	cfg.ContentType = runtime.ContentTypeProtobuf
	cfg.AcceptContentTypes = runtime.ContentTypeProtobuf + "," + runtime.ContentTypeJSON
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return fail(err)
	}
	labelled := informers.NewSharedInformerFactoryWithOptions(cs, 0,
		informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.LabelSelector = bindingLabel }))
	if _, err := labelled.Core().V1().Secrets().Informer().AddEventHandler(handlers(r.observeSecret)); err != nil {
		return fail(err)
	}
	all := informers.NewSharedInformerFactory(cs, 0)
	if _, err := all.Core().V1().ServiceAccounts().Informer().AddEventHandler(handlers(r.observeAccount)); err != nil {
		return fail(err)
	}
	labelled.Start(ctx.Done())
	all.Start(ctx.Done())
	if !bindingCache.WaitForCacheSync(ctx) {
		return fail(errors.New("binding watch did not sync"))
	}
	for typ, ok := range labelled.WaitForCacheSync(ctx.Done()) {
		if !ok {
			return fail(fmt.Errorf("%v watch did not sync", typ))
		}
	}
	for typ, ok := range all.WaitForCacheSync(ctx.Done()) {
		if !ok {
			return fail(fmt.Errorf("%v watch did not sync", typ))
		}
	}
	return r, nil
}

func (r *readiness) stop() { r.cancel() }

// handlers calls observe with each object and whether it is gone.
func handlers(observe func(obj any, deleted bool)) toolscache.ResourceEventHandlerFuncs {
	return toolscache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { observe(obj, false) },
		UpdateFunc: func(_, obj any) { observe(obj, false) },
		DeleteFunc: func(obj any) {
			if tomb, ok := obj.(toolscache.DeletedFinalStateUnknown); ok {
				obj = tomb.Obj
			}
			observe(obj, true)
		},
	}
}

func (r *readiness) observeBinding(obj any, deleted bool) {
	bnd, ok := obj.(*acrv1beta2.AcrPullBinding)
	if !ok {
		return
	}
	key := bnd.Namespace + "/" + bnd.Name
	r.mu.Lock()
	defer r.mu.Unlock()
	if old, ok := r.bindings[key]; ok {
		delete(r.byAccount[old.namespace+"/"+old.account], key)
	}
	if deleted || !bnd.DeletionTimestamp.IsZero() {
		delete(r.bindings, key)
		if deleted {
			// A binding created again under the same name (the next controller's burst) starts afresh.
			delete(r.usableAt, key)
			delete(r.readyAt, key)
			delete(r.currentAt, key)
			delete(r.secretAt, key)
			delete(r.finalizedAt, key)
		}
	} else {
		r.bindings[key] = bindingView{namespace: bnd.Namespace, account: bnd.Spec.ServiceAccountName,
			expiry: bnd.Status.TokenExpirationTime, statusError: bnd.Status.Error,
			readyCondition: meta.IsStatusConditionTrue(bnd.Status.Conditions, acrv1beta2.ConditionReady)}
		if _, seen := r.finalizedAt[key]; !seen && slices.Contains(bnd.Finalizers, bindingFinalizer) {
			r.finalizedAt[key] = time.Now()
		}
		account := bnd.Namespace + "/" + bnd.Spec.ServiceAccountName
		if r.byAccount[account] == nil {
			r.byAccount[account] = map[string]bool{}
		}
		r.byAccount[account][key] = true
	}
	r.evaluate(key, time.Now())
}

func (r *readiness) observeSecret(obj any, deleted bool) {
	s, ok := obj.(*corev1.Secret)
	if !ok {
		return
	}
	key := s.Namespace + "/" + s.Labels[bindingLabel]
	r.mu.Lock()
	defer r.mu.Unlock()
	if deleted || !s.DeletionTimestamp.IsZero() {
		delete(r.secrets[key], s.Name)
	} else {
		if r.secrets[key] == nil {
			r.secrets[key] = map[string]secretView{}
		}
		if _, seen := r.secretAt[key]; !seen {
			r.secretAt[key] = time.Now()
		}
		view := secretView{token: holdsToken(s), expiry: s.Annotations[expiryAnnotation]}
		if old, ok := r.secrets[key][s.Name]; ok && old.expiry != view.expiry {
			r.refreshes++
			if r.log != nil {
				now := time.Now()
				r.log.perSec[now.Unix()]++
				name := s.Namespace + "/" + s.Name
				r.log.times[name] = append(r.log.times[name], now)
			}
		}
		r.secrets[key][s.Name] = view
	}
	r.evaluate(key, time.Now())
}

func (r *readiness) observeAccount(obj any, deleted bool) {
	sa, ok := obj.(*corev1.ServiceAccount)
	if !ok {
		return
	}
	account := sa.Namespace + "/" + sa.Name
	r.mu.Lock()
	defer r.mu.Unlock()
	if deleted {
		delete(r.accounts, account)
	} else {
		names := make(map[string]bool, len(sa.ImagePullSecrets))
		for _, ref := range sa.ImagePullSecrets {
			names[ref.Name] = true
		}
		r.accounts[account] = names
	}
	now := time.Now()
	for key := range r.byAccount[account] {
		r.evaluate(key, now)
	}
}

// holdsToken says whether a pull secret has a token for the bench's registry.
func holdsToken(s *corev1.Secret) bool {
	e, err := dockerconfig.Lookup(s.Data[corev1.DockerConfigJsonKey], registryHost)
	return err == nil && e.Password != ""
}

// evaluate decides one binding's state; r.mu is held.
func (r *readiness) evaluate(key string, now time.Time) {
	bnd, alive := r.bindings[key]
	usable, current := false, false
	if alive && bnd.expiry != nil {
		attached := r.accounts[bnd.namespace+"/"+bnd.account]
		for name, s := range r.secrets[key] {
			if s.token && attached[name] {
				usable = true
				if bnd.statusError == "" && s.expiry != "" {
					if t, err := time.Parse(time.RFC3339, s.expiry); err == nil && t.Equal(bnd.expiry.Time.Truncate(time.Second)) {
						current = true
					}
				}
			}
		}
	}
	set := func(m map[string]bool, at map[string]time.Time, v bool) {
		if !v {
			delete(m, key)
			return
		}
		m[key] = true
		if at != nil {
			if _, seen := at[key]; !seen {
				at[key] = now
			}
		}
	}
	set(r.usable, r.usableAt, usable)
	// currentAt is the last moment the binding was seen current: now if it is, or now if it just stopped being.
	if current || r.current[key] {
		r.currentAt[key] = now
	}
	set(r.current, nil, current)
	set(r.ready, r.readyAt, alive && bnd.readyCondition)
}

// counts returns how many bindings whose names start with prefix are usable, Ready and current now.
func (r *readiness) counts(prefix string) (usable, ready, current int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	count := func(m map[string]bool) int {
		n := 0
		for key := range m {
			if strings.HasPrefix(key[strings.IndexByte(key, '/')+1:], prefix) {
				n++
			}
		}
		return n
	}
	return count(r.usable), count(r.ready), count(r.current)
}

// currentSince is how many bindings whose names start with prefix are current now or were at some moment since t.
// With thousands of bindings refreshing, some are always between their secret's update and their status's, so
// "all current at once" may never be seen; "each current since t" is what a restart has to reach.
func (r *readiness) currentSince(prefix string, t time.Time) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for key := range r.bindings {
		if !strings.HasPrefix(key[strings.IndexByte(key, '/')+1:], prefix) {
			continue
		}
		if r.current[key] || !r.currentAt[key].Before(t) {
			n++
		}
	}
	return n
}

// finalized is how many bindings whose names start with prefix have had the controller's finalizer, and when the
// last of them got it.
func (r *readiness) finalized(prefix string) (n int, last time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for key, at := range r.finalizedAt {
		if strings.HasPrefix(key[strings.IndexByte(key, '/')+1:], prefix) {
			n++
			last = later(last, at)
		}
	}
	return n, last
}

// firstSecret is when a secret labelled with the binding (namespace/name) was first seen.
func (r *readiness) firstSecret(key string) (time.Time, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	t, ok := r.secretAt[key]
	return t, ok
}

// refreshCount is how many times a watched secret's expiry annotation has changed.
func (r *readiness) refreshCount() int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.refreshes
}

// startRefreshLog starts recording token changes afresh; stopRefreshLog ends the recording and returns it.
func (r *readiness) startRefreshLog() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.log = &refreshLog{perSec: map[int64]int64{}, times: map[string][]time.Time{}}
}

func (r *readiness) stopRefreshLog() *refreshLog {
	r.mu.Lock()
	defer r.mu.Unlock()
	log := r.log
	r.log = nil
	return log
}

// count is how many token changes the log holds.
func (l *refreshLog) count() (n int64) {
	for _, c := range l.perSec {
		n += c
	}
	return n
}

// intervals returns the gaps between consecutive token changes of each secret, and how many are shorter than tooSoon.
func (l *refreshLog) intervals(tooSoon time.Duration) (mean time.Duration, duplicates int) {
	var total time.Duration
	var n int
	for _, ts := range l.times {
		for i := 1; i < len(ts); i++ {
			gap := ts[i].Sub(ts[i-1])
			total += gap
			n++
			if gap < tooSoon {
				duplicates++
			}
		}
	}
	if n > 0 {
		mean = total / time.Duration(n)
	}
	return mean, duplicates
}

// live is how many bindings exist and are not being deleted.
func (r *readiness) live() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.bindings)
}

// firstUsable and firstReady are when a binding was first seen usable or Ready.
func (r *readiness) firstUsable(key string) (time.Time, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	t, ok := r.usableAt[key]
	return t, ok
}

func (r *readiness) firstReady(key string) (time.Time, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	t, ok := r.readyAt[key]
	return t, ok
}

// waitUsable waits until n bindings whose names start with prefix are usable.
func (b *bench) waitUsable(ctx context.Context, prefix string, n int, timeout time.Duration) error {
	return b.waitFor(ctx, n, timeout, "usable", func() int { u, _, _ := b.ready.counts(prefix); return u })
}

// waitCurrentSince waits until n bindings whose names start with prefix have each been current at some moment since t.
func (b *bench) waitCurrentSince(ctx context.Context, prefix string, n int, t time.Time, timeout time.Duration) error {
	return b.waitFor(ctx, n, timeout, "current since "+t.Format("15:04:05"), func() int { return b.ready.currentSince(prefix, t) })
}

// errNotReached is waitFor's error when the count did not reach n in time (not when the controller exited or the
// run was interrupted): a scenario that can report a slower controller's partial figures checks for it.
var errNotReached = errors.New("not reached in time")

func (b *bench) waitFor(ctx context.Context, n int, timeout time.Duration, what string, count func() int) error {
	deadline := time.Now().Add(timeout)
	last := -1
	for {
		c := count()
		if c >= n {
			return nil
		}
		if c != last {
			b.logf("%d/%d %s", c, n, what)
			last = c
		}
		select {
		case <-b.exited:
			return errors.New("the controller exited")
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Second):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%w: only %d/%d %s after %s", errNotReached, c, n, what, timeout)
		}
	}
}
