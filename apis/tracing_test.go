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

package apis_test

import (
	"fmt"
	"reflect"
	"strings"
	"testing"
)

// TestMeshTracingSchema: every rule of spec.tracing, each with a failing example, against
// the real API server. An invalid sampling rate is refused with a message that names the
// field (issue 20, "Bad input").
func TestMeshTracingSchema(t *testing.T) {
	tracing := func(body string) string { return meshHeader + "spec:\n  tracing:\n" + body }
	rate := func(r string) string {
		return tracing("    collector: jaeger.tracing:4317\n    samplingRate: " + r + "\n")
	}
	collector := func(c string) string { return tracing(fmt.Sprintf("    collector: %q\n", c)) }
	const rateMsg = "samplingRate must be a decimal from 0 to 1"
	const collectorMsg = "collector must be host:port"
	runSchemaCases(t, []schemaCase{
		{name: "full tracing spec is valid", yaml: tracing(`    collector: jaeger.tracing.svc.cluster.local:4317
    samplingRate: "0.000001"
    serviceName: shop-proxy
    attributes:
    - {name: deployment.environment, value: production}
    - {name: team, value: payments}
`)},
		{name: "collector only is valid", yaml: collector("otel-collector.observability:4317")},
		{name: "IPv4 collector", yaml: collector("10.96.0.20:4317")},
		{name: "IPv6 collector", yaml: collector("[fd00::20]:4317")},
		{name: "rate 0", yaml: rate(`"0"`)},
		{name: "rate 1", yaml: rate(`"1"`)},
		{name: "rate 1.0", yaml: rate(`"1.0"`)},
		{name: "rate 0.5", yaml: rate(`"0.5"`)},

		{name: "no collector", yaml: tracing("    samplingRate: \"0.5\"\n"),
			wantErr: []string{"spec.tracing.collector", "Required"}},
		{name: "collector without port", yaml: collector("jaeger.tracing"),
			wantErr: []string{"spec.tracing.collector", collectorMsg}},
		{name: "collector port zero", yaml: collector("jaeger:0"),
			wantErr: []string{"spec.tracing.collector", collectorMsg}},
		{name: "collector port above 65535", yaml: collector("jaeger:65536"),
			wantErr: []string{"spec.tracing.collector", collectorMsg}},
		{name: "collector URL", yaml: collector("http://jaeger:4317"),
			wantErr: []string{"spec.tracing.collector", collectorMsg}},
		{name: "collector with upper case", yaml: collector("Jaeger:4317"),
			wantErr: []string{"spec.tracing.collector", collectorMsg}},
		{name: "collector IPv6 without brackets", yaml: collector("fd00::20:4317"),
			wantErr: []string{"spec.tracing.collector", collectorMsg}},
		{name: "collector too long", yaml: collector(strings.Repeat("a", 256) + ".b:4317"),
			wantErr: []string{"spec.tracing.collector", "261"}},

		{name: "rate above 1", yaml: rate(`"1.5"`), wantErr: []string{"spec.tracing.samplingRate", rateMsg}},
		{name: "rate as percent", yaml: rate(`"1%"`), wantErr: []string{"spec.tracing.samplingRate", rateMsg}},
		{name: "negative rate", yaml: rate(`"-0.1"`), wantErr: []string{"spec.tracing.samplingRate", rateMsg}},
		{name: "rate finer than a millionth", yaml: rate(`"0.0000001"`), wantErr: []string{"spec.tracing.samplingRate"}},
		{name: "rate in exponent form", yaml: rate(`"1e-2"`), wantErr: []string{"spec.tracing.samplingRate", rateMsg}},
		{name: "rate without leading zero", yaml: rate(`".5"`), wantErr: []string{"spec.tracing.samplingRate", rateMsg}},
		{name: "rate as a number", yaml: rate(`0.5`), wantErr: []string{"spec.tracing.samplingRate"}},
		{name: "empty rate", yaml: rate(`""`), wantErr: []string{"spec.tracing.samplingRate", rateMsg}},

		{name: "empty service name", yaml: tracing("    collector: j:4317\n    serviceName: \"\"\n"),
			wantErr: []string{"spec.tracing.serviceName"}},
		{name: "service name with spaces", yaml: tracing("    collector: j:4317\n    serviceName: \"my proxy\"\n"),
			wantErr: []string{"spec.tracing.serviceName", "should match"}},
		{name: "service name too long", yaml: tracing("    collector: j:4317\n    serviceName: " + strings.Repeat("s", 129) + "\n"),
			wantErr: []string{"spec.tracing.serviceName", "128"}},
		{name: "attribute sets service.name", yaml: tracing("    collector: j:4317\n    attributes: [{name: service.name, value: x}]\n"),
			wantErr: []string{"spec.tracing.attributes[0]", "attributes cannot set service.name"}},
		{name: "attribute sets k8s.pod.name", yaml: tracing("    collector: j:4317\n    attributes: [{name: k8s.pod.name, value: x}]\n"),
			wantErr: []string{"spec.tracing.attributes[0]", "or k8s.*"}},
		{name: "duplicate attribute", yaml: tracing("    collector: j:4317\n    attributes: [{name: team, value: a}, {name: team, value: b}]\n"),
			wantErr: []string{"spec.tracing.attributes[1]", "Duplicate"}},
		{name: "attribute value too long", yaml: tracing("    collector: j:4317\n    attributes: [{name: team, value: " + strings.Repeat("v", 257) + "}]\n"),
			wantErr: []string{"spec.tracing.attributes[0].value", "256"}},
		{name: "too many attributes", yaml: tracing("    collector: j:4317\n    attributes:\n" +
			repeat(17, 4, func(i int) string { return fmt.Sprintf("{name: a%d, value: v}", i) })),
			wantErr: []string{"spec.tracing.attributes", "17"}},
	})
}

// TestMeshTracingDefaults: a Mesh that names only a collector gets 1% sampling and the
// service name weft-proxy; a Mesh without tracing gets none (tracing stays off).
func TestMeshTracingDefaults(t *testing.T) {
	m := create(t, meshHeader+"spec:\n  tracing:\n    collector: jaeger.tracing:4317\n")
	for path, want := range map[string]any{
		"spec.tracing.collector":    "jaeger.tracing:4317",
		"spec.tracing.samplingRate": "0.01",
		"spec.tracing.serviceName":  "weft-proxy",
	} {
		if got := field(t, m, splitPath(path)...); !reflect.DeepEqual(got, want) {
			t.Errorf("%s: want %v, got %v", path, want, got)
		}
	}
}
