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

package compiler

import (
	"net"
	"strconv"

	"google.golang.org/protobuf/proto"

	"github.com/weftmesh/weft/proxy/api"
)

// Update returns the message that takes a subscriber from prev (nil when it has
// nothing yet) to next, or nil when they are the same configuration.
//
// The common change — pods of one backend coming and going — is sent as an endpoint
// delta, which is small however many endpoints the backend has. Anything else (routes,
// weights, several backends at once) is sent as a new snapshot: a delta that spans
// several messages would leave the proxy, between them, in a state no version names.
func Update(prev, next *api.DestinationConfig) *api.DestinationUpdate {
	snapshot := &api.DestinationUpdate{Kind: &api.DestinationUpdate_Snapshot{Snapshot: next}}
	if prev == nil {
		return snapshot
	}
	if prev.Version == next.Version {
		return nil
	}
	if len(prev.Backends) != len(next.Backends) {
		return snapshot
	}
	changed := -1
	for i := range next.Backends {
		if prev.Backends[i].Key != next.Backends[i].Key {
			return snapshot
		}
		if !endpointsEqual(prev.Backends[i].Endpoints, next.Backends[i].Endpoints) {
			if changed >= 0 {
				return snapshot
			}
			changed = i
		}
	}
	if changed < 0 || !equalWithoutEndpoints(prev, next) {
		return snapshot
	}

	delta := &api.EndpointDelta{Version: next.Version, Backend: next.Backends[changed].Key}
	old := map[string]*api.Endpoint{}
	for _, e := range prev.Backends[changed].Endpoints {
		old[endpointID(e.Address, e.Port)] = e
	}
	seen := map[string]bool{}
	for _, e := range next.Backends[changed].Endpoints {
		id := endpointID(e.Address, e.Port)
		seen[id] = true
		if o, ok := old[id]; !ok || !proto.Equal(o, e) {
			delta.Add = append(delta.Add, e)
		}
	}
	// Removals in the order of the previous snapshot, which is sorted.
	for _, e := range prev.Backends[changed].Endpoints {
		if !seen[endpointID(e.Address, e.Port)] {
			delta.Remove = append(delta.Remove, &api.EndpointAddress{Address: e.Address, Port: e.Port})
		}
	}
	return &api.DestinationUpdate{Kind: &api.DestinationUpdate_Endpoints{Endpoints: delta}}
}

func endpointID(addr string, port uint32) string {
	return net.JoinHostPort(addr, strconv.FormatUint(uint64(port), 10))
}

func endpointsEqual(a, b []*api.Endpoint) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !proto.Equal(a[i], b[i]) {
			return false
		}
	}
	return true
}

// equalWithoutEndpoints compares two configurations ignoring their versions and the
// endpoints of their backends.
func equalWithoutEndpoints(a, b *api.DestinationConfig) bool {
	strip := func(c *api.DestinationConfig) *api.DestinationConfig {
		c = proto.CloneOf(c)
		c.Version = ""
		for _, be := range c.Backends {
			be.Endpoints = nil
		}
		return c
	}
	return proto.Equal(strip(a), strip(b))
}
