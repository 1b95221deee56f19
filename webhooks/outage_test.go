package webhooks_test

import (
	"context"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/weftmesh/weft/internal/inject"
	"github.com/weftmesh/weft/webhooks/webhooktest"
)

// With weft-controller down, the selectors and failure policies decide what still
// works: pods in unmeshed namespaces and the control-plane namespace are created as if
// Weft were not installed, namespaces can still be written, and only pods that would be
// meshed are refused (failurePolicy Fail) instead of starting without their proxy.
func TestWebhookOutage(t *testing.T) {
	// Its own API server: stopping the webhooks must not disturb the other tests.
	e, err := webhooktest.Start()
	if err != nil {
		t.Fatalf("starting the test environment: %v", err)
	}
	t.Cleanup(func() { _ = e.Stop() })
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	mk := func(name string, labels map[string]string) {
		ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}}
		if err := e.Client.Create(ctx, ns); err != nil {
			t.Fatalf("creating namespace %s: %v", name, err)
		}
	}
	enabled := map[string]string{inject.AnnotationInject: inject.InjectEnabled}
	mk("meshed", enabled)
	mk("plain", nil)
	mk(webhooktest.ControlPlaneNamespace, enabled)

	if err := e.StopWebhooks(); err != nil {
		t.Fatal(err)
	}

	cases := []struct {
		name      string
		namespace string
		labels    map[string]string
		wantError bool
	}{
		{"pod in an unmeshed namespace", "plain", nil, false},
		{"pod opted out in a meshed namespace", "meshed", map[string]string{inject.AnnotationInject: inject.InjectDisabled}, false},
		{"pod in the control-plane namespace", webhooktest.ControlPlaneNamespace, nil, false},
		{"pod in a meshed namespace", "meshed", nil, true},
		{"pod opted in in an unmeshed namespace", "plain", enabled, true},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := appPod(tc.namespace, "p"+string(rune('a'+i)), nil, tc.labels)
			err := e.Client.Create(ctx, p)
			switch {
			case tc.wantError && err == nil:
				t.Fatal("the pod was created without its proxy while the injector was down")
			case tc.wantError && !strings.Contains(err.Error(), "inject.weft.dev"):
				t.Fatalf("error %v does not come from the injector", err)
			case !tc.wantError && err != nil:
				t.Fatalf("the pod depends on weft-controller: %v", err)
			}
			if err == nil {
				assertUntouched(t, p)
			}
		})
	}

	t.Run("namespaces can still be written", func(t *testing.T) {
		ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "later",
			Annotations: map[string]string{inject.AnnotationInject: inject.InjectEnabled}}}
		if err := e.Client.Create(ctx, ns); err != nil {
			t.Fatalf("creating a namespace: %v", err)
		}
		if _, ok := ns.Labels[inject.AnnotationInject]; ok {
			t.Errorf("the label was set although the labeler is down")
		}
	})
}
