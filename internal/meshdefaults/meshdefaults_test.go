package meshdefaults

import (
	"slices"
	"testing"
)

func TestInjected(t *testing.T) {
	cases := []struct {
		name        string
		annotations map[string]string
		containers  []string
		want        bool
	}{
		{"annotation", map[string]string{AnnotationInjected: "{}"}, nil, true},
		{"empty annotation value still counts", map[string]string{AnnotationInjected: ""}, []string{"app"}, true},
		{"proxy container without the annotation", nil, []string{"weft-init", "weft-proxy", "app"}, true},
		{"neither", map[string]string{AnnotationInject: "enabled"}, []string{"app", "weft-init"}, false},
		{"nothing", nil, nil, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := Injected(tc.annotations, slices.Values(tc.containers)); got != tc.want {
				t.Fatalf("Injected = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestOpaquePortsIsACopy(t *testing.T) {
	a := OpaquePorts()
	a[0] = 1
	if OpaquePorts()[0] == 1 {
		t.Fatal("OpaquePorts shares its storage with a caller")
	}
}
