package netns

import (
	"fmt"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"

	"github.com/weftmesh/weft/internal/inject"
)

// TestInjectedInboundSkipsProxyPorts runs weft-init with exactly the arguments injection
// writes (Mesh defaults) in a real network namespace: the proxy's tap port 4190 and admin
// port 4191 are reached directly (the control plane's tap API and the kubelet's probes
// talk to the proxy there), every other port only through the proxy's inbound port,
// where policy applies. The proxy holds 4190 and 4191 itself (here, stand-ins listen in
// its place), so no app can listen behind the skipped ports.
func TestInjectedInboundSkipsProxyPorts(t *testing.T) {
	RequireRoot(t)
	tpl := &corev1.PodTemplateSpec{Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "app:1"}}}}
	ns := inject.Namespace{Name: "shop", Annotations: map[string]string{inject.AnnotationInject: inject.InjectEnabled}}
	if errs := inject.Inject(tpl, ns, inject.DefaultMeshSpec(), inject.Env{}); len(errs) > 0 {
		t.Fatal(errs)
	}
	initc := tpl.Spec.InitContainers[0]
	if initc.Name != inject.InitContainerName {
		t.Fatalf("first init container is %s", initc.Name)
	}

	a, b := twoPods(t)
	runInit(t, b, initc.Args...)
	for _, l := range []struct{ addr, name string }{{":4143", "b-inbound"}, {":4190", "b-tap"}, {":4191", "b-admin"}, {":4192", "b-app-4192"}} {
		ln, err := b.Listen("tcp", l.addr)
		if err != nil {
			t.Fatal(err)
		}
		serveName(t, ln, l.name)
	}
	for i, tc := range []struct{ dst, want string }{
		{addrB + ":4190", "b-tap"},
		{"[" + addrB6 + "]:4190", "b-tap"},
		{addrB + ":4191", "b-admin"},
		{addrB + ":4192", "b-inbound"},
	} {
		line := fmt.Sprintf("probe-%d", i)
		got, err := dialRoot(a, tc.dst, line)
		if err != nil {
			t.Fatalf("dial %s: %v", tc.dst, err)
		}
		if f := strings.Fields(got); len(f) != 3 || f[0] != tc.want {
			t.Errorf("dial %s answered %q, want %s (weft-init args %v)", tc.dst, got, tc.want, initc.Args)
		}
	}
}
