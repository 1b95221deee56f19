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

// Package gatewayapi is the one home of what Weft knows about the Gateway API CRDs it
// depends on but does not own: the compatible version range, what a cluster has
// installed, and whether an installer should install, upgrade or leave them alone
// (internal/install carries the CRDs themselves). Clusters often have these CRDs already (a
// gateway controller, the cloud provider installed them, maybe newer or of the
// experimental channel); replacing them breaks someone else, so Weft never downgrades
// them and never replaces a channel with a narrower one.
package gatewayapi

import (
	"context"
	"fmt"
	"slices"
	"strings"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/version"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// Group is the Gateway API's API group.
const Group = "gateway.networking.k8s.io"

// The annotations every upstream Gateway API CRD carries.
const (
	BundleVersionAnnotation = Group + "/bundle-version"
	ChannelAnnotation       = Group + "/channel"
)

// The CRDs Weft's controller watches: the GAMMA routes.
const (
	HTTPRouteCRD = "httproutes." + Group
	GRPCRouteCRD = "grpcroutes." + Group
)

// MinVersion is the oldest Gateway API release Weft works with, and MaxVersion the first
// it does not (exclusive). The controller watches HTTPRoute and GRPCRoute at v1: GRPCRoute
// is served at v1 since v1.1.0, and HTTPRoute's rules[].timeouts, which the compiler turns
// into request and backend-request timeouts, is in the standard channel only since
// v1.2.0 (a v1.1 standard-channel CRD prunes it, so timeouts would silently vanish).
// rules[].retry is read when present (experimental channel) and ignored otherwise. A
// v2 would be a new API that this build does not know.
const (
	MinVersion = "v1.2.0"
	MaxVersion = "v2.0.0"
)

// Channel is a Gateway API release channel.
type Channel string

const (
	Standard     Channel = "standard"
	Experimental Channel = "experimental"
)

// Compatible says whether a bundle-version is in [MinVersion, MaxVersion).
func Compatible(v string) bool {
	pv, err := Parse(v)
	if err != nil {
		return false
	}
	return !pv.LessThan(version.MustParseSemantic(MinVersion)) && pv.LessThan(version.MustParseSemantic(MaxVersion))
}

// Parse reads a bundle-version ("v1.6.3"; a pre-release such as "v1.7.0-rc.1" too).
func Parse(v string) (*version.Version, error) {
	if !strings.HasPrefix(v, "v") {
		return nil, fmt.Errorf("bundle-version %q does not start with v", v)
	}
	return version.ParseSemantic(v)
}

// Installed is what a cluster has of the Gateway API CRDs.
type Installed struct {
	// CRDs are the installed CRDs of the group, by name.
	CRDs map[string]*apiextensionsv1.CustomResourceDefinition
	// Version is the newest bundle-version among them ("" when none has one), and
	// Channel experimental when any of them is experimental: what an installer must not
	// go below.
	Version string
	Channel Channel
	// HTTPRouteServed and GRPCRouteServed are the served versions of the route CRDs
	// (nil when the CRD is absent).
	HTTPRouteServed, GRPCRouteServed []string
}

// Absent says whether no Gateway API CRD is installed.
func (in *Installed) Absent() bool { return len(in.CRDs) == 0 }

// RoutesServed says whether the controller can watch both route kinds at v1.
func (in *Installed) RoutesServed() bool {
	return slices.Contains(in.HTTPRouteServed, "v1") && slices.Contains(in.GRPCRouteServed, "v1")
}

// Inspect lists the cluster's Gateway API CRDs. The reader needs list on
// customresourcedefinitions (the CLI's user has it; the controller does not, and uses
// the discovery API instead: see RoutesAvailable).
func Inspect(ctx context.Context, c client.Reader) (*Installed, error) {
	list := &apiextensionsv1.CustomResourceDefinitionList{}
	if err := c.List(ctx, list); err != nil {
		return nil, fmt.Errorf("listing CustomResourceDefinitions: %w", err)
	}
	in := &Installed{CRDs: map[string]*apiextensionsv1.CustomResourceDefinition{}}
	var newest *version.Version
	for i := range list.Items {
		crd := &list.Items[i]
		if crd.Spec.Group != Group {
			continue
		}
		in.CRDs[crd.Name] = crd
		if v, err := Parse(crd.Annotations[BundleVersionAnnotation]); err == nil && (newest == nil || newest.LessThan(v)) {
			newest, in.Version = v, crd.Annotations[BundleVersionAnnotation]
		}
		switch Channel(crd.Annotations[ChannelAnnotation]) {
		case Experimental:
			in.Channel = Experimental
		case Standard:
			if in.Channel == "" {
				in.Channel = Standard
			}
		}
		served := servedVersions(crd)
		switch crd.Name {
		case HTTPRouteCRD:
			in.HTTPRouteServed = served
		case GRPCRouteCRD:
			in.GRPCRouteServed = served
		}
	}
	return in, nil
}

func servedVersions(crd *apiextensionsv1.CustomResourceDefinition) []string {
	var out []string
	for _, v := range crd.Spec.Versions {
		if v.Served {
			out = append(out, v.Name)
		}
	}
	return out
}

// Mode is what the user asked of an installer for the Gateway API CRDs.
type Mode string

const (
	// Auto installs the standard channel when absent, upgrades an older compatible
	// install in its own channel, and otherwise leaves the CRDs alone.
	Auto Mode = "auto"
	// ModeStandard and ModeExperimental ask for that channel: as Auto, and besides
	// install a release older than MinVersion over it, and move a standard install to
	// the experimental channel (a superset). Never a downgrade, nor experimental to
	// standard (that would drop fields other users' routes may hold).
	ModeStandard     Mode = "standard"
	ModeExperimental Mode = "experimental"
	// None never touches the Gateway API CRDs.
	None Mode = "none"
)

// ParseMode reads a --gateway-api flag value.
func ParseMode(s string) (Mode, error) {
	switch m := Mode(s); m {
	case Auto, ModeStandard, ModeExperimental, None:
		return m, nil
	}
	return "", fmt.Errorf("--gateway-api must be auto, standard, experimental or none, not %q", s)
}

// Action is an installer's decision about the Gateway API CRDs.
type Action string

const (
	Install Action = "install"
	Upgrade Action = "upgrade"
	Skip    Action = "skip"
)

// Decision is what to do and why, in a sentence for the user.
type Decision struct {
	Action  Action
	Channel Channel // the channel to apply (Install, Upgrade)
	Message string
}

// Decide chooses, for the whole bundle at once (mixing releases within one cluster is
// what upstream warns against), what an installer does given what is installed, the
// version it carries and the user's mode.
func Decide(in *Installed, bundled string, mode Mode) Decision {
	want := Standard
	if mode == ModeExperimental {
		want = Experimental
	}
	if mode == None {
		return Decision{Action: Skip, Message: "Gateway API CRDs left as they are (--gateway-api=none)"}
	}
	if in.Absent() {
		return Decision{Action: Install, Channel: want, Message: fmt.Sprintf("Gateway API CRDs absent: installing %s (%s channel)", bundled, want)}
	}
	have, err := Parse(in.Version)
	if err != nil {
		return Decision{Action: Skip, Message: "Gateway API CRDs are installed without a bundle-version annotation: left alone (Weft cannot tell their version; make sure HTTPRoute and GRPCRoute serve v1)"}
	}
	ours, err := Parse(bundled)
	if err != nil {
		return Decision{Action: Skip, Message: fmt.Sprintf("Gateway API CRDs left as they are: this build carries no valid bundle-version (%v)", err)}
	}
	channel := in.Channel
	if channel == "" {
		channel = Standard
	}
	if !have.LessThan(ours) {
		if have.EqualTo(ours) && channel == Standard && want == Experimental {
			return Decision{Action: Upgrade, Channel: Experimental, Message: fmt.Sprintf("Gateway API %s standard channel installed: moving it to the experimental channel (a superset)", in.Version)}
		}
		rel := "newer than"
		if have.EqualTo(ours) {
			rel = "the same as"
		}
		return Decision{Action: Skip, Message: fmt.Sprintf("Gateway API %s (%s channel) installed, %s Weft's %s: left as it is", in.Version, channel, rel, bundled)}
	}
	if !Compatible(in.Version) && mode == Auto {
		return Decision{Action: Skip, Message: fmt.Sprintf("Gateway API %s installed is older than %s, the oldest Weft supports: left alone, and HTTPRoutes and GRPCRoutes are not served until it is upgraded (weft install --gateway-api=standard upgrades it)", in.Version, MinVersion)}
	}
	// Upgrade, never narrowing the channel: experimental is a superset of standard.
	if channel == Experimental {
		want = Experimental
	}
	return Decision{Action: Upgrade, Channel: want, Message: fmt.Sprintf("Gateway API %s (%s channel) installed, older than Weft's %s: upgrading it (%s channel)", in.Version, channel, bundled, want)}
}

// RoutesAvailable returns nil when the API server serves HTTPRoute and GRPCRoute at v1,
// and otherwise an error that says what is missing and what to do. It asks discovery
// (through the REST mapper), which the controller may read without any RBAC on CRDs.
func RoutesAvailable(m Mapper) error {
	var missing []string
	for _, kind := range []string{"HTTPRoute", "GRPCRoute"} {
		if _, err := m.RESTMapping(schema.GroupKind{Group: Group, Kind: kind}, "v1"); err != nil {
			if !meta.IsNoMatchError(err) {
				return fmt.Errorf("looking up %s.%s/v1: %w", kind, Group, err)
			}
			missing = append(missing, kind)
		}
	}
	if len(missing) > 0 {
		return &RoutesMissingError{Kinds: missing}
	}
	return nil
}

// Mapper is the part of a meta.RESTMapper RoutesAvailable uses.
type Mapper interface {
	RESTMapping(gk schema.GroupKind, versions ...string) (*meta.RESTMapping, error)
}

// RoutesMissingError says which route kinds the API server does not serve at v1.
type RoutesMissingError struct{ Kinds []string }

func (e *RoutesMissingError) Error() string {
	return fmt.Sprintf("the API server does not serve %s at %s/v1: the Gateway API CRDs (%s or newer) are not installed; "+
		"HTTPRoutes and GRPCRoutes are not supported until they are (weft install --gateway-api=standard, or kubectl apply --server-side -k config/crd/gateway-api)",
		strings.Join(e.Kinds, " and "), Group, MinVersion)
}
