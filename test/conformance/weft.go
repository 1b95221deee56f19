package conformance

import (
	"embed"
	"testing"

	"sigs.k8s.io/gateway-api/conformance/utils/echo"
	"sigs.k8s.io/gateway-api/conformance/utils/http"
	"sigs.k8s.io/gateway-api/conformance/utils/suite"
	"sigs.k8s.io/gateway-api/pkg/features"
)

// weftManifests holds the manifests of Weft's own mesh tests, read by the suite's
// applier next to upstream's (paths under weft/).
//
//go:embed weft
var weftManifests embed.FS

// weftTests are Weft's own mesh tests, for route features the pinned suite tests on
// Gateways only: v1.6.3's HTTPRouteCORS needs a Gateway, although the CORS filter is
// in the standard channel and means the same on a mesh route. They run after the
// suite's tests with either CRD channel, in the same cluster, namespaces and echo
// pods, with the suite's client and helpers, but are not part of upstream's report:
// they print their own result line.
var weftTests = []suite.ConformanceTest{weftMeshHTTPRouteCORS}

var weftMeshHTTPRouteCORS = suite.ConformanceTest{
	ShortName:   "WeftMeshHTTPRouteCORS",
	Description: "A mesh HTTPRoute's CORS filter: the client's proxy answers preflights and adds the CORS headers for allowed origins only",
	Features:    []features.FeatureName{features.SupportMesh, features.SupportHTTPRoute},
	Manifests:   []string{"weft/mesh-httproute-cors.yaml"},
	Test: func(t *testing.T, s *suite.ConformanceTestSuite) {
		ns := suite.MeshNamespace
		client := echo.ConnectToApp(t, s, echo.MeshAppEchoV1)
		preflight := func(path, origin string) http.Request {
			return http.Request{Host: "echo", Path: path, Method: "OPTIONS", Headers: map[string]string{
				"Origin": origin, "Access-Control-Request-Method": "GET", "Access-Control-Request-Headers": "x-header-1"}}
		}
		actual := func(path, origin string) http.Request {
			return http.Request{Host: "echo", Path: path, Headers: map[string]string{"Origin": origin}}
		}
		cases := []http.ExpectedResponse{{
			TestCaseName: "preflight from an exact origin is answered with the route's policy",
			Request:      preflight("/cors-credentials", "https://www.foo.com"),
			Response: http.Response{StatusCodes: []int{200, 204}, Headers: map[string]string{
				"Access-Control-Allow-Origin": "https://www.foo.com", "Access-Control-Allow-Methods": "GET, OPTIONS",
				"Access-Control-Allow-Headers": "x-header-1, x-header-2", "Access-Control-Expose-Headers": "x-header-3",
				"Access-Control-Max-Age": "3600", "Access-Control-Allow-Credentials": "true"}},
		}, {
			TestCaseName: "preflight from an origin the wildcard matches, several labels deep",
			Request:      preflight("/cors-credentials", "https://a.www.bar.com"),
			Response: http.Response{StatusCodes: []int{200, 204}, Headers: map[string]string{
				"Access-Control-Allow-Origin": "https://a.www.bar.com", "Access-Control-Allow-Credentials": "true"}},
		}, {
			TestCaseName: "preflight from another origin gets no CORS headers",
			Request:      preflight("/cors-credentials", "https://foobar.com"),
			Response: http.Response{StatusCodes: []int{200, 204, 403},
				AbsentHeaders: []string{"Access-Control-Allow-Origin", "Access-Control-Allow-Credentials", "Access-Control-Allow-Methods"}},
		}, {
			TestCaseName: "request from an allowed origin reaches the backend and carries the headers",
			Request:      actual("/cors-credentials", "https://www.foo.com"),
			Backend:      "echo-v1", Namespace: ns,
			Response: http.Response{StatusCode: 200, Headers: map[string]string{
				"Access-Control-Allow-Origin": "https://www.foo.com", "Access-Control-Allow-Credentials": "true",
				"Access-Control-Expose-Headers": "x-header-3"}},
		}, {
			TestCaseName: "request from another origin reaches the backend without the headers",
			Request:      actual("/cors-credentials", "https://www.foo.com.example"),
			Backend:      "echo-v1", Namespace: ns,
			Response: http.Response{StatusCode: 200, AbsentHeaders: []string{"Access-Control-Allow-Origin", "Access-Control-Allow-Credentials"}},
		}, {
			TestCaseName: "wildcard origin and methods without credentials",
			Request:      preflight("/cors-any", "https://foobar.com:12345"),
			Response: http.Response{StatusCodes: []int{200, 204}, Headers: map[string]string{
				"Access-Control-Allow-Origin": "*", "Access-Control-Allow-Methods": "GET", "Access-Control-Max-Age": "5"},
				AbsentHeaders: []string{"Access-Control-Allow-Credentials"}},
		}, {
			TestCaseName: "wildcard origin on a request",
			Request:      actual("/cors-any", "https://foobar.com"),
			Backend:      "echo-v2", Namespace: ns,
			Response: http.Response{StatusCode: 200, Headers: map[string]string{"Access-Control-Allow-Origin": "*"},
				AbsentHeaders: []string{"Access-Control-Allow-Credentials"}},
		}}
		for i := range cases {
			tc := cases[i]
			t.Run(tc.GetTestCaseName(i), func(t *testing.T) {
				t.Parallel()
				client.MakeRequestAndExpectEventuallyConsistentResponse(t, tc, s.TimeoutConfig)
			})
		}
	},
}
