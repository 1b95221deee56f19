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

// Package replicacache adds a cache of its own to a manager so that it runs on every
// replica, not only on the leader.
//
// The services of weft-controller (identity, destination) serve on every replica and
// read through caches of their own. controller-runtime starts a cache added with
// mgr.Add before leader election only when the cache says it does not need the lease;
// the cache cache.New returns when ByObject is set does not say so, and without this
// wrapper the non-leader replicas wait for a lease they never get: their services
// never start and their readiness checks never pass.
package replicacache

import (
	"fmt"

	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/manager"
)

// everyReplica is a cache that does not need the leader lease.
type everyReplica struct{ cache.Cache }

// NeedLeaderElection is false: the cache runs on every replica.
func (everyReplica) NeedLeaderElection() bool { return false }

// Add adds c to mgr so that it starts on every replica, leader or not.
func Add(mgr manager.Manager, c cache.Cache) error {
	if err := mgr.Add(everyReplica{c}); err != nil {
		return fmt.Errorf("adding a cache: %w", err)
	}
	return nil
}
