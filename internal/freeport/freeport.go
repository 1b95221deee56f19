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

// Package freeport picks loopback ports for processes that tests and the local demo
// start with a --port flag, where the process, not the caller, binds the port.
//
// A port the kernel hands out for 127.0.0.1:0 comes from the ephemeral range, and once
// that listener closes the kernel may give the same port to any outgoing connection
// (tests run in parallel packages) before the process binds it: "address already in
// use". Ports below the ephemeral range are never used as source ports, so only
// another caller of this package picking the same random port could take it. Within one
// process a port is never handed out twice: a service a test stops and restarts on its
// port must not find that port taken by a process started in between (it was: a proxy's
// admin port drawn while the destination service was down).
package freeport

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"sync"
)

var (
	mu     sync.Mutex
	handed = map[int]bool{} // ports this process was given
)

// The range ports are drawn from: below Linux's default ephemeral range (32768–60999)
// and above the ports services commonly use.
const (
	lowest  = 20000
	highest = 32000
)

// Get returns a loopback TCP port that is free now and outside the ephemeral range.
func Get() (int, error) {
	for range 200 {
		port := lowest + rand.IntN(highest-lowest)
		mu.Lock()
		taken := handed[port]
		handed[port] = true
		mu.Unlock()
		if taken {
			continue
		}
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			continue
		}
		l.Close()
		return port, nil
	}
	return 0, errors.New("no free loopback port between 20000 and 32000")
}
