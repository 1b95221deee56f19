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

package freeport

import (
	"fmt"
	"net"
	"testing"
)

func TestGetIsBindableAndOutsideTheEphemeralRange(t *testing.T) {
	for range 50 {
		port, err := Get()
		if err != nil {
			t.Fatal(err)
		}
		if port < lowest || port >= highest {
			t.Fatalf("port %d outside [%d, %d)", port, lowest, highest)
		}
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			t.Fatalf("port %d is not bindable: %v", port, err)
		}
		l.Close()
	}
}

// TestGetNeverRepeats: a port handed out once is not handed out again in the same
// process, even after whatever bound it has closed (a stopped service that a test
// restarts on its own port).
func TestGetNeverRepeats(t *testing.T) {
	seen := map[int]bool{}
	for range 3000 {
		port, err := Get()
		if err != nil {
			t.Fatal(err)
		}
		if seen[port] {
			t.Fatalf("port %d handed out twice", port)
		}
		seen[port] = true
	}
}
