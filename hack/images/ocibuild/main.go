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

// Command ocibuild writes a single-layer OCI image as an image-layout tarball, the format
// `ctr images import` reads, without a container engine:
//
//	ocibuild -name docker.io/library/weft-proxy:dev -o weft-proxy.tar \
//	  -entrypoint /weft-proxy -user 2102:2102 -add bin/weft-proxy:/weft-proxy
//
// The output is reproducible: entries are sorted, owned by root and dated at the epoch,
// so the same inputs give the same digests and a rebuilt image need not be re-imported.
package main

import (
	"flag"
	"fmt"
	"os"
	"strings"
)

// multiFlag collects a repeated string flag.
type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }

func main() {
	var (
		spec       Spec
		adds, envs multiFlag
		entrypoint string
		out        string
	)
	flag.StringVar(&spec.Name, "name", "", "image reference recorded in the index, e.g. docker.io/library/pause:dev (required)")
	flag.StringVar(&out, "o", "", "output tarball (required)")
	flag.StringVar(&entrypoint, "entrypoint", "", "entrypoint, words separated by spaces")
	flag.StringVar(&spec.User, "user", "", "user[:group] the container runs as by default")
	flag.StringVar(&spec.WorkingDir, "workdir", "/", "working directory")
	flag.Var(&adds, "add", "SRC:DST: copy a host file, symlink or directory tree into the image (repeatable)")
	flag.Var(&envs, "env", "KEY=VALUE environment variable (repeatable)")
	flag.Parse()
	if spec.Name == "" || out == "" || flag.NArg() > 0 {
		flag.Usage()
		os.Exit(2)
	}
	if entrypoint != "" {
		spec.Entrypoint = strings.Fields(entrypoint)
	}
	spec.Env = envs
	for _, a := range adds {
		src, dst, ok := strings.Cut(a, ":")
		if !ok || src == "" || !strings.HasPrefix(dst, "/") {
			fmt.Fprintf(os.Stderr, "ocibuild: -add %q: want SRC:/ABSOLUTE/DST\n", a)
			os.Exit(2)
		}
		spec.Adds = append(spec.Adds, Add{Src: src, Dst: dst})
	}
	digest, err := Write(out, spec)
	if err != nil {
		fmt.Fprintf(os.Stderr, "ocibuild: %v\n", err)
		os.Exit(1)
	}
	fmt.Println(digest)
}
