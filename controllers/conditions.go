/*
Copyright 2026 The Weft Authors.

Licensed under the Apache License, Version 2.0 (the "License");
you may not use this file except in compliance with the License.
You may obtain a copy of the License at

    http://www.apache.org/licenses/LICENSE-2.0

Unless required by applicable law or agreed to in writing, software
distributed under the License is distributed on an "AS IS" BASIS,
WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
See the License for the specific language governing permissions and
limitations under the License.
*/

package controllers

import (
	"fmt"
	"time"
	"unicode/utf8"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	meshv1alpha1 "github.com/weftmesh/weft/apis/mesh/v1alpha1"
)

// Reasons of the Mesh's TrustAnchorReady and IssuerReady conditions when cert-manager
// did not keep a certificate renewed; each message says what to check.
const (
	// ReasonRenewalOverdue: cert-manager's renewal time of the certificate passed more
	// than a grace ago (an hour at most) and it was not renewed.
	ReasonRenewalOverdue = "RenewalOverdue"
	// ReasonTooCloseToExpiry: the identity issuer has less than one workload
	// certificate lifetime left, so the identity service refuses to sign.
	ReasonTooCloseToExpiry = "TooCloseToExpiry"
	// ReasonExpired: the certificate expired.
	ReasonExpired = "Expired"
	// ReasonNotYetValid: the certificate's notBefore is in the future (clocks).
	ReasonNotYetValid = "NotYetValid"
	// ReasonSigningStopped (IdentityReady): the identity service refuses to sign with
	// the current issuer.
	ReasonSigningStopped = "SigningStopped"
)

// kstatus's abnormal-true conditions (sigs.k8s.io/cli-utils/pkg/kstatus), which Flux,
// kubectl wait and Argo CD's checks (config/gitops) read before Ready. They are present
// only while they are True, as kstatus recommends: an object that is neither stalled nor
// reconciling carries neither.
const (
	// ConditionStalled (kstatus Failed): the controller cannot make progress until the
	// user changes something; the reason and message say what.
	ConditionStalled = "Stalled"
	// ConditionReconciling (kstatus InProgress): the controller is still working toward
	// the spec, e.g. waiting out the grace a missing reference gets before it stalls.
	ConditionReconciling = "Reconciling"
)

// conditions collects the conditions of one reconcile, each stamped with the generation
// the reconcile observed, so that Flux and Argo CD can tell stale status from fresh.
type conditions struct {
	list       *[]metav1.Condition
	generation int64
}

// maxConditionMessage is metav1.Condition's schema bound on message. A longer message
// fails the whole status write, leaving every condition stale; an invalid
// ServiceProfile can produce one (256 routes, each quoting a 1 KiB pathRegex, or
// conditions nested 128 wide).
const maxConditionMessage = 32768

// maxEventNote is the API server's bound on an events.k8s.io Event's note.
const maxEventNote = 1024

// truncateMessage keeps the head of a message (the first errors, which name their
// fields) within max bytes, cut at a character boundary, and says it was cut.
func truncateMessage(msg string, max int) string {
	if len(msg) <= max {
		return msg
	}
	const more = " ... (truncated)"
	cut := max - len(more)
	for cut > 0 && !utf8.RuneStart(msg[cut]) {
		cut--
	}
	return msg[:cut] + more
}

func (c conditions) set(condType string, ok bool, reason, message string) {
	message = truncateMessage(message, maxConditionMessage)
	status := metav1.ConditionFalse
	if ok {
		status = metav1.ConditionTrue
	}
	meta.SetStatusCondition(c.list, metav1.Condition{
		Type:               condType,
		Status:             status,
		Reason:             reason,
		Message:            message,
		ObservedGeneration: c.generation,
	})
}

// summarizeReady sets Ready from the given conditions: True when all are True, otherwise
// False with the reason and message of the first that is not.
func (c conditions) summarizeReady(condTypes ...string) {
	for _, t := range condTypes {
		cond := meta.FindStatusCondition(*c.list, t)
		if cond == nil || cond.Status != metav1.ConditionTrue {
			reason, message := meshv1alpha1.ReasonNotReady, t+" is not yet known"
			if cond != nil {
				reason, message = cond.Reason, cond.Message
			}
			c.set(meshv1alpha1.ConditionReady, false, reason, message)
			return
		}
	}
	c.set(meshv1alpha1.ConditionReady, true, meshv1alpha1.ReasonReady, "Ready")
}

// stalled sets Stalled True (and drops Reconciling): a terminal error that waits for the
// user.
func (c conditions) stalled(reason, message string) {
	meta.RemoveStatusCondition(c.list, ConditionReconciling)
	c.set(ConditionStalled, true, reason, message)
}

// reconciling sets Reconciling True (and drops Stalled): progress is still expected
// without the user.
func (c conditions) reconciling(reason, message string) {
	meta.RemoveStatusCondition(c.list, ConditionStalled)
	c.set(ConditionReconciling, true, reason, message)
}

// settled drops Stalled and Reconciling: the controller has done what the spec asks.
func (c conditions) settled() {
	meta.RemoveStatusCondition(c.list, ConditionStalled)
	meta.RemoveStatusCondition(c.list, ConditionReconciling)
}

// stallIfRejected sets Stalled from the Accepted condition when the spec was rejected
// (a spec error only the user can fix), and settles otherwise. It reports whether the
// object stalled.
func (c conditions) stallIfRejected() bool {
	if acc := meta.FindStatusCondition(*c.list, meshv1alpha1.ConditionAccepted); acc != nil && acc.Status == metav1.ConditionFalse {
		c.stalled(acc.Reason, acc.Message)
		return true
	}
	c.settled()
	return false
}

// stallAfterGrace is for a condition that is False because something it names is
// missing: Reconciling until grace has passed since the condition turned False, Stalled
// after that (the missing object waits for the user). It returns how long until the
// grace ends (0 once stalled), so the caller can wake then: no event will.
func (c conditions) stallAfterGrace(cond *metav1.Condition, grace time.Duration, now time.Time) time.Duration {
	left := cond.LastTransitionTime.Add(grace).Sub(now)
	if left <= 0 {
		c.stalled(cond.Reason, cond.Message)
		return 0
	}
	c.reconciling(cond.Reason, fmt.Sprintf("Waiting up to %s for the reference to resolve: %s", grace, cond.Message))
	return left
}
