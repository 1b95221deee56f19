package inject_test

import (
	"strings"
	"testing"

	"github.com/weftmesh/weft/internal/inject"
)

// TestInjectedProxyNeverAllowsLoopbackApps: weft-proxy's --unsafe-loopback-apps lets
// any client of the inbound port into the pod's loopback. The injector must never
// pass it, whatever the pod's annotations say; the flag has no environment variable,
// so the arguments are the only way in.
func TestInjectedProxyNeverAllowsLoopbackApps(t *testing.T) {
	annotations := map[string]string{}
	for _, a := range []string{inject.AnnotationLogLevel, inject.AnnotationOpaquePorts, inject.AnnotationSkipInboundPorts,
		inject.AnnotationDefaultInboundPolicy, inject.AnnotationConnectTimeout, inject.AnnotationDetectTimeout} {
		annotations[a] = "--unsafe-loopback-apps"
	}
	for _, tc := range []struct {
		name        string
		annotations map[string]string
	}{
		{"defaults", nil},
		{"annotations trying to smuggle the flag", annotations},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tpl := template(tc.annotations, nil)
			errs := inject.Inject(tpl, enabledNS("shop"), inject.DefaultMeshSpec(), inject.Env{})
			if tc.annotations == nil {
				// The check below must look at a real proxy container.
				if len(errs) > 0 {
					t.Fatal(errs)
				}
				if _, proxy := proxyOf(t, tpl); proxy.Name != inject.ProxyContainerName || len(proxy.Args) == 0 {
					t.Fatalf("no injected proxy: %+v", proxy)
				}
			}
			for _, c := range append(tpl.Spec.InitContainers, tpl.Spec.Containers...) {
				for _, a := range append(append([]string{}, c.Command...), c.Args...) {
					if strings.Contains(a, "unsafe") {
						t.Errorf("container %s has argument %q", c.Name, a)
					}
				}
				for _, e := range c.Env {
					if strings.Contains(e.Value, "unsafe") {
						t.Errorf("container %s has %s=%q", c.Name, e.Name, e.Value)
					}
				}
			}
		})
	}
}
