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

// Package offstack runs work off a long-lived goroutine's stack.
//
// The control plane holds one gRPC stream per proxy subscription, and each stream's
// goroutine spends its life parked. Parked, it holds grpc-go's frames (about 1.4 KB)
// and fits the 4 KiB a goroutine's stack reaches first; but anything deeper run on it
// once (decoding the request, a send: protobuf and HTTP/2 framing) grows its stack to
// 8 KiB for good, because the collector halves a stack only while less than a quarter
// of it is used. Running that work on a short-lived goroutine, whose stack is freed
// when it returns, keeps the stream's own at 4 KiB: about 4 KB saved per stream, for
// one goroutine start (about a microsecond) per message.
package offstack

// Run runs f on a goroutine of its own and waits for it.
func Run(f func()) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		f()
	}()
	<-done
}

// RunErr is Run for a function that returns an error.
func RunErr(f func() error) error {
	done := make(chan error, 1)
	go func() { done <- f() }()
	return <-done
}
