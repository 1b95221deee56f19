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

package validation

import (
	"fmt"
	"slices"

	"github.com/weftmesh/weft/internal/meshdefaults"
	"github.com/weftmesh/weft/internal/trustbundle"
)

// TrustRootsCopy checks a namespace's copy of the trust bundle (the data of its
// weft-trust-roots ConfigMap) against the bundle weft-controller publishes in the
// control-plane namespace, named by publishedAt for the message. The proxy trusts
// whatever its namespace's copy says, so a copy that a namespace user wrote with their
// own CA would make it trust that CA: the injector refuses pods that would read one.
//
// The check is on content, not on the managed-by label or the owner reference: anyone
// who can create a ConfigMap can write those too. A subset is accepted, not only an
// equal bundle, because copies follow the published bundle by a reconcile: while an
// anchor is being added, the copies still hold only the old one.
//
// It returns what is wrong with the copy ("" when nothing is), phrased to follow
// "ConfigMap <ns>/<name>", and an error only when the published bundle cannot be read.
func TrustRootsCopy(copyData, publishedData map[string]string, publishedAt string) (string, error) {
	want, err := trustbundle.ParsePEM([]byte(publishedData[meshdefaults.TrustRootsKey]))
	if err != nil {
		return "", fmt.Errorf("parsing the published trust bundle %s: %w", publishedAt, err)
	}
	got, err := trustbundle.ParsePEM([]byte(copyData[meshdefaults.TrustRootsKey]))
	if err != nil || len(got) == 0 {
		return fmt.Sprintf("holds no readable trust bundle under %s", meshdefaults.TrustRootsKey), nil
	}
	for _, c := range got {
		if !slices.ContainsFunc(want, c.Equal) {
			return fmt.Sprintf("holds a certificate (%s) that is not in the trust bundle weft-controller publishes (%s): it was not written by Weft, and the proxy would trust it",
				c.Subject, publishedAt), nil
		}
	}
	return "", nil
}
