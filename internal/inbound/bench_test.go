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

package inbound

import (
	"fmt"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/weftmesh/weft/proxy/api"
)

// BenchmarkCompile: one pod in a busy namespace: 50 Servers (10 select the pod), 200
// AuthorizationPolicies each with a MeshTLSAuthentication, 20 HTTPRoutes of 3 rules.
func BenchmarkCompile(b *testing.B) {
	var docs []string
	docs = append(docs, podYAML)
	for i := range 50 {
		sel := "app: web"
		if i >= 10 {
			sel = fmt.Sprintf("app: other-%d", i)
		}
		docs = append(docs, strings.Replace(srvYAML(fmt.Sprintf("s%d", i), fmt.Sprint(8000+i), ""), "app: web", sel, 1))
	}
	for i := range 200 {
		docs = append(docs, apYAML(fmt.Sprintf("p%d", i), "Server", fmt.Sprintf("s%d", i%50),
			fmt.Sprintf("{group: policy.weft.dev, kind: MeshTLSAuthentication, name: m%d}", i)),
			mtlsYAML(fmt.Sprintf("m%d", i), "shop", fmt.Sprintf("{identities: ['spiffe://cluster.local/ns/c%d/sa/a', 'spiffe://cluster.local/ns/c%d/*']}", i, i)))
	}
	for i := range 20 {
		docs = append(docs, strings.Replace(routeYAML("HTTPRoute", fmt.Sprintf("r%d", i), "Server",
			"  rules:\n  - matches: [{path: {type: PathPrefix, value: /a}}]\n  - matches: [{path: {type: Exact, value: /b}}]\n  - {}\n"),
			"name: web}", fmt.Sprintf("name: s%d}", i%10), 1))
	}
	in := decode(b, docs...)
	b.ReportAllocs()
	b.ResetTimer()
	var p *api.InboundPolicy
	for b.Loop() {
		p = Compile(in)
	}
	b.ReportMetric(float64(proto.Size(p)), "msg-bytes")
}
