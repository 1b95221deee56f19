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

// Package apis_test checks Weft's API schemas against a real kube-apiserver: every bound
// and every CEL rule has an object the server rejects, with the message asserted, and
// the defaults are asserted on created objects.
package apis_test

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/weftmesh/weft/internal/testenv"
)

var (
	cfg       *rest.Config
	k8sClient client.Client
)

func TestMain(m *testing.M) {
	env, err := testenv.New()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	cfg, err = env.Start()
	if err != nil {
		fmt.Fprintln(os.Stderr, "starting the test API server:", err)
		os.Exit(1)
	}
	k8sClient, err = client.New(cfg, client.Options{Scheme: testenv.Scheme})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	if err := env.Stop(); err != nil {
		fmt.Fprintln(os.Stderr, "stopping the test API server:", err)
	}
	os.Exit(code)
}

// schemaCase is one object and what the API server must say about it: nothing (it is
// valid) or an error containing every string in wantErr.
type schemaCase struct {
	name    string
	yaml    string
	wantErr []string
}

// runSchemaCases creates each object with a server-side dry run, so cases do not
// interfere (several Meshes named default, for example) and nothing is left behind.
func runSchemaCases(t *testing.T, cases []schemaCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			obj := decode(t, tc.yaml)
			err := k8sClient.Create(context.Background(), obj, client.DryRunAll)
			if len(tc.wantErr) == 0 {
				if err != nil {
					t.Fatalf("want the object accepted, got: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("want the object rejected with %q, it was accepted", tc.wantErr)
			}
			for _, want := range tc.wantErr {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("want the error to contain %q, got: %v", want, err)
				}
			}
		})
	}
}

func decode(t *testing.T, doc string) *unstructured.Unstructured {
	t.Helper()
	obj := &unstructured.Unstructured{}
	if err := yaml.Unmarshal([]byte(doc), &obj.Object); err != nil {
		t.Fatalf("test object is not YAML: %v", err)
	}
	return obj
}

// create creates the object for real and returns it as the server stored it, defaults
// applied; it deletes it when the test ends.
func create(t *testing.T, doc string) *unstructured.Unstructured {
	t.Helper()
	obj := decode(t, doc)
	if err := k8sClient.Create(context.Background(), obj); err != nil {
		t.Fatalf("creating %s: %v", obj.GetKind(), err)
	}
	t.Cleanup(func() { _ = k8sClient.Delete(context.Background(), obj) })
	return obj
}

// field reads a nested field of an unstructured object, failing the test if it is absent.
func field(t *testing.T, obj *unstructured.Unstructured, path ...string) any {
	t.Helper()
	v, found, err := unstructured.NestedFieldNoCopy(obj.Object, path...)
	if err != nil || !found {
		t.Fatalf("%s has no field %s (err %v)", obj.GetKind(), strings.Join(path, "."), err)
	}
	return v
}

// repeat renders n YAML list items made by item(i), indented by indent spaces.
func repeat(n, indent int, item func(i int) string) string {
	var b strings.Builder
	for i := range n {
		b.WriteString(strings.Repeat(" ", indent) + "- " + item(i) + "\n")
	}
	return b.String()
}
