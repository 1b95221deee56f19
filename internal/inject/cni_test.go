package inject_test

import (
	"slices"
	"strings"
	"testing"

	apiequality "k8s.io/apimachinery/pkg/api/equality"

	meshv1alpha1 "github.com/weftmesh/weft/apis/mesh/v1alpha1"
	"github.com/weftmesh/weft/internal/inject"
	"github.com/weftmesh/weft/internal/iptables"
)

// In CNI mode the validator replaces weft-init, carries exactly weft-init's rule
// arguments (the contract the weft-cni plugin reads), and uninjection removes it.
func TestCNIModeInjectsTheValidator(t *testing.T) {
	mesh := inject.DefaultMeshSpec()
	tpl := template(map[string]string{inject.AnnotationSkipOutboundPorts: "5432", inject.AnnotationProxyUID: "3000"}, nil)
	tpl.Spec.ServiceAccountName = "web" // injection would set "default" and uninjection cannot know
	original := tpl.DeepCopy()
	withInit := tpl.DeepCopy()
	if errs := inject.Inject(withInit, enabledNS("shop"), mesh, inject.Env{}); len(errs) > 0 {
		t.Fatal(errs)
	}
	mesh.Proxy.RedirectMode = meshv1alpha1.RedirectCNI
	if errs := inject.Inject(tpl, enabledNS("shop"), mesh, inject.Env{}); len(errs) > 0 {
		t.Fatal(errs)
	}
	var names []string
	for _, c := range tpl.Spec.InitContainers {
		names = append(names, c.Name)
	}
	if !slices.Equal(names, []string{inject.ValidatorContainerName, inject.ProxyContainerName}) {
		t.Fatalf("init containers %v", names)
	}
	v := tpl.Spec.InitContainers[0]
	initArgs := withInit.Spec.InitContainers[0].Args
	if !slices.Equal(v.Args, append(slices.Clone(initArgs), "--validate")) {
		t.Errorf("validator args %v, want weft-init's %v plus --validate", v.Args, initArgs)
	}
	if cfg, err := iptables.ParseRuleArgs(v.Args, "validate"); err != nil || cfg.ProxyUID != 3000 {
		t.Errorf("the validator's args do not parse as rule flags: %+v %v", cfg, err)
	}
	if uid := *v.SecurityContext.RunAsUser; uid == 0 || uid == 3000 {
		t.Errorf("validator runs as %d: must be neither root nor the proxy's UID", uid)
	}
	if !strings.Contains(tpl.Annotations[inject.AnnotationInjected], inject.ValidatorContainerName) {
		t.Errorf("status %s does not record the validator", tpl.Annotations[inject.AnnotationInjected])
	}
	if !inject.Uninject(tpl) || !apiequality.Semantic.DeepEqual(original, tpl) {
		t.Errorf("uninjection did not restore the template:\n got %+v\nwant %+v", tpl, original)
	}
}
