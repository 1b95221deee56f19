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

package controllers_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	cmv1 "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	cmmeta "github.com/cert-manager/cert-manager/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"

	meshv1alpha1 "github.com/weftmesh/weft/apis/mesh/v1alpha1"
	"github.com/weftmesh/weft/controllers"
)

// TestMeshSwitchToMissingExternalIssuer is the regression test of a Mesh that was Ready
// on its self-signed root and is switched to an external issuer that does not exist.
// cert-manager cannot issue the anchor the spec now asks for, yet the Mesh used to stay
// Accepted and Ready (the missing issuer was reported only while no anchor existed), so
// Flux and Argo CD called the change healthy. It must be not Accepted and not Ready at
// the new generation, Reconciling for the grace a missing reference gets and Stalled
// after it, keep publishing the anchor in use, and recover once the issuer exists.
func TestMeshSwitchToMissingExternalIssuer(t *testing.T) {
	m := startMeshEnv(t)
	ctx := context.Background()
	c := m.c
	if err := c.Create(ctx, &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": meshv1alpha1.GroupVersion.String(),
		"kind":       "Mesh",
		"metadata":   map[string]any{"name": meshv1alpha1.MeshName},
		"spec":       map[string]any{"trustDomain": meshTD},
	}}); err != nil {
		t.Fatal(err)
	}
	ready := waitMeshReady(t, c, 30*time.Second)
	if cond := meta.FindStatusCondition(ready.Status.Conditions, controllers.ConditionStalled); cond != nil {
		t.Fatalf("a Ready Mesh carries Stalled: %+v", cond)
	}
	anchorSerial := ready.Status.TrustAnchor.SerialNumber

	patch := client.RawPatch("application/merge-patch+json",
		[]byte(`{"spec":{"identity":{"externalIssuerRef":{"name":"corp-ca","kind":"Issuer"}}}}`))
	if err := c.Patch(ctx, getMesh(t, c), patch); err != nil {
		t.Fatal(err)
	}
	// Within the grace (the Issuer may be on its way in the same apply): not Accepted,
	// Reconciling.
	switched := time.Now()
	eventually(t, 10*time.Second, func() error {
		mesh := getMesh(t, c)
		if !conditionIs(mesh.Status.Conditions, meshv1alpha1.ConditionAccepted, metav1.ConditionFalse, meshv1alpha1.ReasonRefNotFound, mesh.Generation) ||
			!conditionIs(mesh.Status.Conditions, controllers.ConditionReconciling, metav1.ConditionTrue, meshv1alpha1.ReasonRefNotFound, mesh.Generation) {
			return fmt.Errorf("within the grace: %+v, want Accepted=False and Reconciling=True, RefNotFound", mesh.Status.Conditions)
		}
		return nil
	})
	if d := time.Since(switched); d >= meshMissingRefGrace {
		t.Fatalf("saw Reconciling only after %v, past the grace", d)
	}
	// After it: Stalled.
	var stalled *meshv1alpha1.Mesh
	eventually(t, meshMissingRefGrace+15*time.Second, func() error {
		mesh := getMesh(t, c)
		gen := mesh.Generation
		if gen == ready.Generation {
			return fmt.Errorf("generation did not move")
		}
		for _, want := range []struct {
			condType string
			status   metav1.ConditionStatus
		}{
			{meshv1alpha1.ConditionAccepted, metav1.ConditionFalse},
			{meshv1alpha1.ConditionReady, metav1.ConditionFalse},
			{meshv1alpha1.ConditionTrustAnchorReady, metav1.ConditionFalse},
			{controllers.ConditionStalled, metav1.ConditionTrue},
		} {
			if !conditionIs(mesh.Status.Conditions, want.condType, want.status, meshv1alpha1.ReasonRefNotFound, gen) {
				return fmt.Errorf("%s = %+v, want %s/RefNotFound at generation %d", want.condType,
					meta.FindStatusCondition(mesh.Status.Conditions, want.condType), want.status, gen)
			}
		}
		stalled = mesh
		return nil
	})
	msg := meta.FindStatusCondition(stalled.Status.Conditions, controllers.ConditionStalled).Message
	if !strings.Contains(msg, "Issuer weft-system/corp-ca") || !strings.Contains(msg, "create it or remove the reference") {
		t.Errorf("Stalled message %q does not name the issuer and what to do", msg)
	}
	anchorMsg := meta.FindStatusCondition(stalled.Status.Conditions, meshv1alpha1.ConditionTrustAnchorReady).Message
	if !strings.Contains(anchorMsg, anchorSerial) {
		t.Errorf("TrustAnchorReady message %q does not say that anchor %s stays in use", anchorMsg, anchorSerial)
	}
	// The anchor in use stays published: the workloads keep working meanwhile.
	anchors, err := m.bundle(ctx, controlPlaneNS)
	if err != nil || len(anchors) == 0 || anchors[0].SerialNumber.Text(16) != anchorSerial {
		t.Fatalf("bundle while stalled: %d anchors (%v), want anchor %s", len(anchors), err, anchorSerial)
	}

	// The user creates the issuer: the Mesh converges and Stalled goes.
	for _, o := range []client.Object{
		&cmv1.Issuer{ObjectMeta: metav1.ObjectMeta{Name: "corp-bootstrap", Namespace: controlPlaneNS},
			Spec: cmv1.IssuerSpec{IssuerConfig: cmv1.IssuerConfig{SelfSigned: &cmv1.SelfSignedIssuer{}}}},
		&cmv1.Certificate{ObjectMeta: metav1.ObjectMeta{Name: "corp-root", Namespace: controlPlaneNS}, Spec: cmv1.CertificateSpec{
			IsCA: true, CommonName: "Corp Root CA", SecretName: "corp-root",
			PrivateKey: &cmv1.CertificatePrivateKey{Algorithm: cmv1.ECDSAKeyAlgorithm, Size: 256},
			IssuerRef:  cmmeta.IssuerReference{Name: "corp-bootstrap", Kind: "Issuer"},
		}},
		&cmv1.Issuer{ObjectMeta: metav1.ObjectMeta{Name: "corp-ca", Namespace: controlPlaneNS},
			Spec: cmv1.IssuerSpec{IssuerConfig: cmv1.IssuerConfig{CA: &cmv1.CAIssuer{SecretName: "corp-root"}}}},
	} {
		if err := c.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	recovered := waitMeshReady(t, c, 60*time.Second)
	for _, ct := range []string{controllers.ConditionStalled, controllers.ConditionReconciling} {
		if cond := meta.FindStatusCondition(recovered.Status.Conditions, ct); cond != nil {
			t.Errorf("recovered Mesh still carries %s: %+v", ct, cond)
		}
	}
	if !conditionIs(recovered.Status.Conditions, meshv1alpha1.ConditionAccepted, metav1.ConditionTrue, meshv1alpha1.ReasonAccepted, recovered.Generation) {
		t.Errorf("Accepted after the issuer exists: %+v", meta.FindStatusCondition(recovered.Status.Conditions, meshv1alpha1.ConditionAccepted))
	}
}
