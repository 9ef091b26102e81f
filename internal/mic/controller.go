/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

package mic

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"golang.org/x/sync/errgroup"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"

	aadv1 "github.com/acrpull/acrpull/api/aadpodidentity/v1"
	"github.com/acrpull/acrpull/internal/azauth"
	"github.com/acrpull/acrpull/internal/azauth/armidentity"
)

// ARM is the part of Azure Resource Manager the controller uses: the user-assigned identities of a VM or scale set,
// read and changed. armidentity.Client implements it.
type ARM interface {
	// HostIdentities returns the lowercased resource IDs of the user-assigned identities on the host.
	HostIdentities(ctx context.Context, hostID string) ([]string, error)
	// UpdateHostIdentities adds and removes identities in one PATCH and waits for it to complete; current is what
	// HostIdentities returned this cycle.
	UpdateHostIdentities(ctx context.Context, hostID string, current, add, remove []string) error
}

// Config is the controller's behaviour, mostly upstream MIC's flags.
type Config struct {
	ForceNamespaced bool
	Policy          Policy
	// ReconcileInterval is how often every assigned identity is checked on its host and re-added if someone removed
	// it (--identity-assignment-reconcile-interval, default 3 minutes).
	ReconcileInterval time.Duration
	// UpdateRetries is how often a PATCH is retried without the identities ARM refused to assign.
	UpdateRetries int
	// RecordWriters is how many record writes run at once (--createDeleteBatch, default 20).
	RecordWriters int
	// AssignPodsCreatedBefore, when set, leaves pods created later to the node agent's federation: the controller
	// stops assigning new pods while keeping what it assigned, so a cluster migrates pod by pod.
	AssignPodsCreatedBefore time.Time
}

// Reconciler runs assignment cycles. Every relevant change (pods, bindings, identities, nodes, records) queues the one
// cycle key; the queue folds changes that arrive during a cycle into the next one, so pods landing on a scale set
// together are assigned in one PATCH, and a pod waits one ARM round trip, not a fixed polling grid.
type Reconciler struct {
	Client   client.Client
	ARM      ARM
	Config   Config
	Clock    clock.PassiveClock
	Recorder events.EventRecorder
	Metrics  *Metrics

	mu            sync.Mutex
	lastFullCheck time.Time
	// probing is set by a 429 and cleared by the next host step that gets through.
	probing bool
	// busy holds the hosts whose step is running; wake queues a cycle when one finishes.
	busy map[string]bool
	wake chan event.GenericEvent
	// throttledUntil is when ARM allows calls again after a 429: every event queues a cycle, and without this the
	// cycles would call ARM again at once, as upstream's MIC did until ARM blocked whole clusters.
	throttledUntil time.Time
	// deniedUntil holds identities ARM refused to assign on a host (host ID|identity ID) until the next full check:
	// retrying them on every cycle would spend a write per event on a refusal that only a role assignment changes.
	deniedUntil map[string]time.Time
	// added remembers identities this process put on hosts (host ID|identity ID): the cache may not show their
	// records as Assigned yet when the next cycle runs, and they must not pass for someone else's.
	added map[string]bool
	// written holds the record writes the cache may not show yet; cycles read the records through it.
	written writtenRecords
}

// cycleKey is the single queue item: a cycle looks at everything.
var cycleKey = reconcile.Request{NamespacedName: types.NamespacedName{Name: "assignment-cycle"}}

// SetupWithManager registers the controller: one worker, every watched event mapped to the cycle key.
func (r *Reconciler) SetupWithManager(mgr ctrl.Manager) error {
	toCycle := handler.EnqueueRequestsFromMapFunc(func(context.Context, client.Object) []reconcile.Request {
		return []reconcile.Request{cycleKey}
	})
	r.wake = make(chan event.GenericEvent, 1)
	return ctrl.NewControllerManagedBy(mgr).
		WatchesRawSource(source.Channel(r.wake, toCycle)).
		Named("azureassignedidentity").
		Watches(&corev1.Pod{}, toCycle).
		Watches(&aadv1.AzureIdentity{}, toCycle).
		Watches(&aadv1.AzureIdentityBinding{}, toCycle).
		Watches(&aadv1.AzureAssignedIdentity{}, toCycle).
		Watches(&corev1.Node{}, toCycle).
		// Name validation guards against two controllers sharing metrics by mistake; leader-election tests and the
		// bench run several assignment controllers in one process on purpose.
		WithOptions(controller.Options{MaxConcurrentReconciles: 1, SkipNameValidation: ptrTo(true)}).
		Complete(r)
}

// Reconcile runs one cycle: desired records, their diff with the current ones, one GET and at most one PATCH per
// touched host, then the record writes that follow from what ARM did.
func (r *Reconciler) Reconcile(ctx context.Context, _ reconcile.Request) (ctrl.Result, error) {
	log := ctrl.LoggerFrom(ctx)
	start := r.Clock.Now()
	defer func() { r.Metrics.cycle(r.Clock.Since(start)) }()
	state, err := r.observe(ctx)
	if err != nil {
		return ctrl.Result{}, err
	}
	desired := Desired(r.assignable(state.pods), state.bindings, state.identities, r.Config.ForceNamespaced)
	changes := Diff(desired, state.current)
	if wait := r.throttled(); wait > 0 {
		return ctrl.Result{RequeueAfter: wait}, nil
	}
	full := r.fullCheckDue()

	// Each host's step runs on its own: it waits for its long-running update (40-60 s on a real scale set), and
	// neither the cycle nor other hosts wait with it. A host whose update is still running is skipped; when it
	// finishes it queues a cycle, which sees every change that arrived meanwhile and starts the host's next update.
	// After a 429 one host goes first; the others follow once it got through, so a throttled controller sends one
	// request per Retry-After instead of one per host.
	probing := r.isProbing()
	for host, work := range r.hostWork(changes, desired, state, full) {
		if !r.claim(host) {
			continue
		}
		go func() {
			defer r.release(host)
			wait, err := r.assignHost(ctx, log, host, work)
			if err != nil {
				log.Error(err, "Assignment failed", "host", host.ID())
			}
			r.mu.Lock()
			defer r.mu.Unlock()
			switch {
			case wait > 0:
				// Throttling is per caller, not per host: no host calls ARM until it allows again.
				r.throttledUntil = later(r.throttledUntil, r.Clock.Now().Add(wait))
				r.probing = true
			case err == nil:
				r.probing = false
			}
		}()
		if probing {
			break
		}
	}
	// Records of nodes that are gone: their VM went with them, nothing to unassign.
	for _, d := range changes.Delete {
		if _, ok := state.hosts[d.Spec.NodeName]; !ok {
			r.deleteRecord(ctx, log, &d)
		}
	}
	if full {
		r.mu.Lock()
		r.lastFullCheck = r.Clock.Now()
		r.mu.Unlock()
	}
	return ctrl.Result{RequeueAfter: r.interval()}, nil
}

// claim marks host busy, reporting false if it already was.
func (r *Reconciler) claim(host Host) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.busy[host.ID()] {
		return false
	}
	if r.busy == nil {
		r.busy = map[string]bool{}
	}
	r.busy[host.ID()] = true
	return true
}

// release frees host and queues a cycle for what arrived while it was busy.
func (r *Reconciler) release(host Host) {
	r.mu.Lock()
	delete(r.busy, host.ID())
	r.mu.Unlock()
	select {
	case r.wake <- event.GenericEvent{Object: &aadv1.AzureAssignedIdentity{}}:
	default: // a cycle is queued already
	}
}

func (r *Reconciler) isProbing() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.probing
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

func (r *Reconciler) throttled() time.Duration {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.throttledUntil.Sub(r.Clock.Now())
}

// assignable are the pods the controller assigns identities for: all, or those created before the migration cutoff.
func (r *Reconciler) assignable(pods []corev1.Pod) []corev1.Pod {
	if r.Config.AssignPodsCreatedBefore.IsZero() {
		return pods
	}
	return slices.DeleteFunc(slices.Clone(pods), func(p corev1.Pod) bool {
		return !p.CreationTimestamp.Time.Before(r.Config.AssignPodsCreatedBefore)
	})
}

type observed struct {
	pods       []corev1.Pod
	bindings   []aadv1.AzureIdentityBinding
	identities []aadv1.AzureIdentity
	current    []aadv1.AzureAssignedIdentity
	hosts      map[string]Host
}

func (r *Reconciler) observe(ctx context.Context) (*observed, error) {
	var (
		pods       corev1.PodList
		bindings   aadv1.AzureIdentityBindingList
		identities aadv1.AzureIdentityList
		records    aadv1.AzureAssignedIdentityList
		nodes      corev1.NodeList
	)
	for _, l := range []client.ObjectList{&pods, &bindings, &identities, &records, &nodes} {
		if err := r.Client.List(ctx, l); err != nil {
			return nil, fmt.Errorf("listing %T: %w", l, err)
		}
	}
	s := &observed{pods: pods.Items, bindings: bindings.Items, identities: identities.Items, hosts: map[string]Host{}}
	for _, rec := range r.written.overlay(records.Items, r.Clock.Now()) {
		// Records being deleted are finished with, whatever their finalizer still says.
		if rec.DeletionTimestamp == nil {
			s.current = append(s.current, rec)
		} else if controllerutil.ContainsFinalizer(&rec, aadv1.AssignedIdentityFinalizer) {
			s.current = append(s.current, rec)
		}
	}
	for _, n := range nodes.Items {
		if h, err := HostOf(n.Spec.ProviderID); err == nil {
			s.hosts[n.Name] = h
		}
	}
	return s, nil
}

func (r *Reconciler) interval() time.Duration {
	if r.Config.ReconcileInterval > 0 {
		return r.Config.ReconcileInterval
	}
	return 3 * time.Minute
}

func (r *Reconciler) fullCheckDue() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.lastFullCheck.IsZero() || r.Clock.Since(r.lastFullCheck) >= r.interval()
}

// hostWork is what one host's step handles.
type hostWork struct {
	change HostChange
	// required are the identities every desired record on the host needs present (re-added if someone removed them).
	required []string
	create   []aadv1.AzureAssignedIdentity
	update   []aadv1.AzureAssignedIdentity
	delete   []aadv1.AzureAssignedIdentity
	// assigned are records already Assigned on the host, to tell identities acrpull added from preexisting ones.
	assigned map[string]bool
}

// hostWork groups the cycle by host. A host is visited when records on it change, and on the periodic full check
// when it holds any record.
func (r *Reconciler) hostWork(ch Changes, desired []aadv1.AzureAssignedIdentity, s *observed, full bool) map[Host]*hostWork {
	work := map[Host]*hostWork{}
	get := func(node string) *hostWork {
		h, ok := s.hosts[node]
		if !ok {
			return nil
		}
		if work[h] == nil {
			work[h] = &hostWork{assigned: map[string]bool{}}
		}
		return work[h]
	}
	for _, c := range ch.Create {
		if w := get(c.Spec.NodeName); w != nil {
			w.create = append(w.create, c)
		}
	}
	for _, u := range ch.Update {
		if w := get(u.Spec.NodeName); w != nil {
			w.update = append(w.update, u)
		}
	}
	for _, d := range ch.Delete {
		if w := get(d.Spec.NodeName); w != nil {
			w.delete = append(w.delete, d)
		}
	}
	if full {
		for _, d := range desired {
			get(d.Spec.NodeName)
		}
	}
	for host, w := range work {
		for _, d := range desired {
			if s.hosts[d.Spec.NodeName] == host {
				w.required = append(w.required, strings.ToLower(d.Spec.AzureIdentityRef.Spec.ResourceID))
			}
		}
		for _, c := range s.current {
			if s.hosts[c.Spec.NodeName] == host && c.Status.Status == aadv1.AssignedIDAssigned && c.Spec.AzureIdentityRef != nil {
				w.assigned[strings.ToLower(c.Spec.AzureIdentityRef.Spec.ResourceID)] = true
			}
		}
		w.change = PlanHosts(Changes{Create: w.create, Update: w.update, Delete: w.delete}, desired, s.hosts, r.Config.Policy)[host]
	}
	return work
}

// assignHost makes one host's identity block match the cycle's plan and records the outcome. It returns how long ARM
// asked to wait when it throttled.
func (r *Reconciler) assignHost(ctx context.Context, log logr.Logger, host Host, w *hostWork) (time.Duration, error) {
	log = log.WithValues("host", host.ID())
	readStart := r.Clock.Now()
	present, err := r.ARM.HostIdentities(ctx, host.ID())
	if err != nil {
		r.Metrics.armError(host, false)
		return azauth.RetryAfterOf(err), fmt.Errorf("reading identities: %w", err)
	}
	r.Metrics.armDone(host, false, r.Clock.Since(readStart))
	has := map[string]bool{}
	for _, id := range present {
		has[strings.ToLower(id)] = true
	}
	// Identities someone else put on the host are marked, so acrpull never removes them. Only new records are
	// judged: a retried one was judged when it was created.
	for i := range w.create {
		rid := strings.ToLower(w.create[i].Spec.AzureIdentityRef.Spec.ResourceID)
		if w.create[i].ResourceVersion == "" && has[rid] && !w.assigned[rid] && !r.addedByUs(host, rid) {
			setAnnotation(&w.create[i], PreexistingAnnotation, "true")
		}
	}
	if err := r.each(len(w.create), func(i int) error { return r.ensureRecord(ctx, &w.create[i]) }); err != nil {
		return 0, err
	}
	var add, remove []string
	for _, id := range dedupe(append(slices.Clone(w.change.Add), w.required...)) {
		if !has[id] && !r.deniedRecently(host, id) {
			add = append(add, id)
		}
	}
	for _, id := range w.change.Remove {
		if has[id] && !slices.Contains(w.required, id) {
			remove = append(remove, id)
		}
	}
	after, wait, err := r.patch(ctx, host, present, add, remove)
	if err != nil {
		return wait, err
	}
	onHost := map[string]bool{}
	for _, id := range after {
		onHost[id] = true
	}
	written := append(slices.Clone(w.create), w.update...)
	err = r.each(len(written), func(i int) error {
		rec := &written[i]
		rid := strings.ToLower(rec.Spec.AzureIdentityRef.Spec.ResourceID)
		// Only what is on the host now is Assigned; a refused identity stays Created and is tried again after the
		// next full check.
		if !onHost[rid] {
			r.event(rec.Spec.AzureBindingRef, corev1.EventTypeWarning, "BindingApplyError",
				"identity %s could not be assigned to %s for pod %s/%s: the controller may not assign it (LinkedAuthorizationFailed) or it does not exist (FailedIdentityOperation)",
				rid, host.ID(), rec.Spec.PodNamespace, rec.Spec.Pod)
			return nil
		}
		// Records of this cycle's changed bindings or identities are upstream's updates; new ones only change state.
		op := opRecordStatus
		if i >= len(w.create) {
			op = opRecordUpdate
		}
		if err := r.setStatus(ctx, rec, aadv1.AssignedIDAssigned, op); err != nil {
			return err
		}
		r.event(rec.Spec.AzureBindingRef, corev1.EventTypeNormal, "BindingApplied",
			"identity %s assigned to %s for pod %s/%s", rid, host.ID(), rec.Spec.PodNamespace, rec.Spec.Pod)
		return nil
	})
	if err != nil {
		return 0, err
	}
	_ = r.each(len(w.delete), func(i int) error {
		r.deleteRecord(ctx, log, &w.delete[i])
		r.event(w.delete[i].Spec.AzureBindingRef, corev1.EventTypeNormal, "BindingRemoved",
			"identity record for pod %s/%s removed", w.delete[i].Spec.PodNamespace, w.delete[i].Spec.Pod)
		return nil
	})
	return 0, nil
}

// each runs fn for 0..n-1 with at most RecordWriters at once (upstream's --createDeleteBatch), returning the first
// error: a few thousand records are written in seconds, not one round trip after another.
func (r *Reconciler) each(n int, fn func(i int) error) error {
	var g errgroup.Group
	g.SetLimit(max(r.Config.RecordWriters, 1))
	for i := range n {
		g.Go(func() error { return fn(i) })
	}
	return g.Wait()
}

// patch sends the host's PATCHes (at most MaxIdentitiesPerPatch identities each) and returns the identities on the
// host afterwards. Identities ARM refuses to assign (LinkedAuthorizationFailed, or FailedIdentityOperation for ones
// that do not exist) are dropped and the rest retried, so one bad binding does not block a scale set.
func (r *Reconciler) patch(ctx context.Context, host Host, present, add, remove []string) ([]string, time.Duration, error) {
	denied := map[string]bool{}
	if len(add)+len(remove) == 0 {
		return present, 0, nil
	}
	for _, batch := range Batches(HostChange{Add: add, Remove: remove}, MaxIdentitiesPerPatch) {
		for attempt := 0; ; attempt++ {
			updateStart := r.Clock.Now()
			err := r.ARM.UpdateHostIdentities(ctx, host.ID(), present, batch.Add, batch.Remove)
			if err == nil {
				r.Metrics.armDone(host, true, r.Clock.Since(updateStart))
				present = applied(present, batch)
				r.remember(host, batch)
				break
			}
			if azauth.KindOf(err) == armidentity.HostDeleting {
				// Nothing was sent: the host is going away. Its records stay as they are and are tried again next
				// cycle, as upstream's MIC left them; other hosts' steps do not wait for it.
				return present, 0, fmt.Errorf("updating identities: %w", err)
			}
			r.Metrics.armError(host, true)
			bad := armidentity.DeniedResourceIDsOf(err)
			if len(bad) == 0 || attempt >= max(r.Config.UpdateRetries, 1) {
				return present, azauth.RetryAfterOf(err), fmt.Errorf("updating identities: %w", err)
			}
			for _, id := range bad {
				denied[strings.ToLower(id)] = true
				r.rememberDenied(host, strings.ToLower(id))
			}
			batch.Add = slices.DeleteFunc(batch.Add, func(id string) bool { return denied[id] })
			if len(batch.Add)+len(batch.Remove) == 0 {
				break
			}
		}
	}
	return present, 0, nil
}

func (r *Reconciler) ensureRecord(ctx context.Context, rec *aadv1.AzureAssignedIdentity) error {
	if rec.ResourceVersion != "" {
		return nil // retried record, already there
	}
	controllerutil.AddFinalizer(rec, aadv1.AssignedIdentityFinalizer)
	rec.Status.Status = aadv1.AssignedIDCreated
	start := r.Clock.Now()
	err := r.Client.Create(ctx, rec)
	if !apierrors.IsAlreadyExists(err) {
		r.Metrics.recordWrite(opRecordAddition, r.Clock.Since(start), err)
	}
	switch {
	case err == nil:
		r.written.wrote(rec, r.Clock.Now())
	case !apierrors.IsAlreadyExists(err):
		return fmt.Errorf("creating record %s/%s: %w", rec.Namespace, rec.Name, err)
	}
	return nil
}

func setAnnotation(rec *aadv1.AzureAssignedIdentity, key, value string) {
	if rec.Annotations == nil {
		rec.Annotations = map[string]string{}
	}
	rec.Annotations[key] = value
}

func (r *Reconciler) deniedRecently(host Host, rid string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.Clock.Now().Before(r.deniedUntil[host.ID()+"|"+rid])
}

func (r *Reconciler) rememberDenied(host Host, rid string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.deniedUntil == nil {
		r.deniedUntil = map[string]time.Time{}
	}
	r.deniedUntil[host.ID()+"|"+rid] = r.Clock.Now().Add(r.interval())
}

func (r *Reconciler) addedByUs(host Host, rid string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.added[host.ID()+"|"+rid]
}

// remember records what a successful PATCH changed on host.
func (r *Reconciler) remember(host Host, c HostChange) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.added == nil {
		r.added = map[string]bool{}
	}
	for _, id := range c.Add {
		r.added[host.ID()+"|"+id] = true
	}
	for _, id := range c.Remove {
		delete(r.added, host.ID()+"|"+id)
	}
}

// setStatus writes the record's state, spec and labels with one merge patch. Records have no status subresource
// (upstream's shape), and the patch needs no read first: the cache may not have the record just created.
func (r *Reconciler) setStatus(ctx context.Context, rec *aadv1.AzureAssignedIdentity, status, op string) error {
	body, err := json.Marshal(map[string]any{
		"metadata": map[string]any{"labels": rec.Labels, "finalizers": []string{aadv1.AssignedIdentityFinalizer}},
		"spec":     rec.Spec,
		"status":   map[string]any{"status": status},
	})
	if err != nil {
		return err
	}
	target := &aadv1.AzureAssignedIdentity{}
	target.Namespace, target.Name = rec.Namespace, rec.Name
	start := r.Clock.Now()
	err = r.Client.Patch(ctx, target, client.RawPatch(types.MergePatchType, body))
	if !apierrors.IsNotFound(err) {
		r.Metrics.recordWrite(op, r.Clock.Since(start), err)
	}
	switch {
	case err == nil:
		r.written.wrote(target, r.Clock.Now())
	case !apierrors.IsNotFound(err):
		return fmt.Errorf("recording %s on %s/%s: %w", status, rec.Namespace, rec.Name, err)
	}
	return nil
}

// deleteRecord retires a record as upstream does: Unassigned first (watchers see the identity is gone from the host),
// then the finalizer off and the object deleted. Each step works on the apiserver's answer to the one before, not
// on the cache, which may not have caught up.
func (r *Reconciler) deleteRecord(ctx context.Context, log logr.Logger, rec *aadv1.AzureAssignedIdentity) {
	start := r.Clock.Now()
	var failed error
	defer func() {
		if failed != nil && !apierrors.IsNotFound(failed) {
			r.Metrics.recordWrite(opRecordDeletion, 0, failed)
		}
	}()
	cur := &aadv1.AzureAssignedIdentity{}
	cur.Namespace, cur.Name = rec.Namespace, rec.Name
	body := []byte(`{"status":{"status":"` + aadv1.AssignedIDUnAssigned + `"}}`)
	if err := r.Client.Patch(ctx, cur, client.RawPatch(types.MergePatchType, body)); err != nil {
		failed = err
		if !apierrors.IsNotFound(err) {
			log.Error(err, "Marking the record Unassigned", "record", rec.Name)
		}
		return
	}
	if controllerutil.RemoveFinalizer(cur, aadv1.AssignedIdentityFinalizer) {
		if err := r.Client.Update(ctx, cur); err != nil {
			failed = err
			log.Error(err, "Removing the record's finalizer", "record", rec.Name)
			return
		}
	}
	if err := r.Client.Delete(ctx, cur); err != nil && !apierrors.IsNotFound(err) {
		failed = err
		log.Error(err, "Deleting the record", "record", rec.Name)
		return
	}
	r.Metrics.recordWrite(opRecordDeletion, r.Clock.Since(start), nil)
	r.written.deleted(client.ObjectKeyFromObject(cur), r.Clock.Now())
}

func (r *Reconciler) event(b *aadv1.AzureIdentityBinding, kind, reason, format string, args ...any) {
	if b == nil || r.Recorder == nil {
		return
	}
	r.Recorder.Eventf(b, nil, kind, reason, "Assign", format, args...)
}

// applied is a host's identities after a successful PATCH of c.
func applied(present []string, c HostChange) []string {
	out := slices.DeleteFunc(slices.Clone(present), func(id string) bool { return slices.Contains(c.Remove, id) })
	return dedupe(append(out, c.Add...))
}

func dedupe(ids []string) []string {
	slices.Sort(ids)
	return slices.Compact(ids)
}

func ptrTo[T any](v T) *T { return &v }
