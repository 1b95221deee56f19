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

package gatewayapi

import (
	"strings"
	"testing"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestCompatible(t *testing.T) {
	for v, want := range map[string]bool{
		"v1.2.0": true, "v1.6.3": true, "v1.9.0": true, "v1.7.0-rc.1": true,
		"v1.1.1": false, "v1.0.0": false, "v0.8.0": false, "v2.0.0": false,
		"1.6.3": false, "": false, "latest": false,
	} {
		if got := Compatible(v); got != want {
			t.Errorf("Compatible(%q) = %v, want %v", v, got, want)
		}
	}
}

// installed builds what Inspect would return for CRDs with these annotations.
func installed(version string, channel Channel) *Installed {
	in := &Installed{CRDs: map[string]*apiextensionsv1.CustomResourceDefinition{}}
	if version == "absent" {
		return in
	}
	in.CRDs[HTTPRouteCRD] = &apiextensionsv1.CustomResourceDefinition{ObjectMeta: metav1.ObjectMeta{Name: HTTPRouteCRD}}
	in.Version, in.Channel = version, channel
	return in
}

// TestDecide: never a downgrade, never experimental -> standard, install when absent,
// upgrade an older compatible install in its own channel, leave an incompatible one
// alone unless a channel is asked for.
func TestDecide(t *testing.T) {
	const ours = "v1.6.3"
	for _, tc := range []struct {
		name       string
		in         *Installed
		mode       Mode
		action     Action
		channel    Channel
		messageHas string
	}{
		{"absent, auto", installed("absent", ""), Auto, Install, Standard, "absent"},
		{"absent, experimental", installed("absent", ""), ModeExperimental, Install, Experimental, "experimental"},
		{"absent, none", installed("absent", ""), None, Skip, "", "none"},
		{"same standard, auto", installed("v1.6.3", Standard), Auto, Skip, "", "the same as"},
		{"same standard, experimental asked", installed("v1.6.3", Standard), ModeExperimental, Upgrade, Experimental, "experimental channel"},
		{"same experimental, standard asked", installed("v1.6.3", Experimental), ModeStandard, Skip, "", "the same as"},
		{"newer standard", installed("v1.7.0", Standard), Auto, Skip, "", "newer than"},
		{"newer, experimental asked", installed("v1.9.0", Standard), ModeExperimental, Skip, "", "newer than"},
		{"older compatible standard", installed("v1.4.0", Standard), Auto, Upgrade, Standard, "upgrading"},
		{"older compatible experimental keeps its channel", installed("v1.4.0", Experimental), Auto, Upgrade, Experimental, "experimental channel"},
		{"older experimental, standard asked", installed("v1.4.0", Experimental), ModeStandard, Upgrade, Experimental, "experimental channel"},
		{"incompatible, auto", installed("v1.0.0", Standard), Auto, Skip, "", "older than v1.2.0"},
		{"incompatible, standard asked", installed("v1.0.0", Standard), ModeStandard, Upgrade, Standard, "upgrading"},
		{"no bundle-version", installed("", ""), Auto, Skip, "", "without a bundle-version"},
		{"no bundle-version, standard asked", installed("", ""), ModeStandard, Skip, "", "left alone"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := Decide(tc.in, ours, tc.mode)
			if d.Action != tc.action || d.Channel != tc.channel {
				t.Errorf("Decide = %s %q (%s), want %s %q", d.Action, d.Channel, d.Message, tc.action, tc.channel)
			}
			if !strings.Contains(d.Message, tc.messageHas) {
				t.Errorf("message %q does not say %q", d.Message, tc.messageHas)
			}
		})
	}
}
