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

package main

import (
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/spf13/cobra"
	"k8s.io/cli-runtime/pkg/printers"
	"sigs.k8s.io/yaml"
)

// addOutputFlag adds kubectl's -o/--output with the formats a command supports; the
// first is the default. The formats are completed by the shell.
func addOutputFlag(cmd *cobra.Command, dst *string, formats ...string) {
	cmd.Flags().StringVarP(dst, "output", "o", formats[0], "output format: "+strings.Join(formats, ", "))
	_ = cmd.RegisterFlagCompletionFunc("output", cobra.FixedCompletions(formats, cobra.ShellCompDirectiveNoFileComp))
}

// checkOutput refuses a format the command does not support (a usage error).
func checkOutput(format string, formats ...string) error {
	if !slices.Contains(formats, format) {
		return usageErrorf("-o %q: want one of %s", format, strings.Join(formats, ", "))
	}
	return nil
}

// printStructured writes v as one JSON document on a line (a stream of them reads
// with any JSON decoder, as --watch writes it), or as a YAML document that starts
// with ---, so that several make one YAML stream. The field names are v's json tags
// in both formats.
func printStructured(w io.Writer, format string, v any) error {
	if format == "yaml" {
		b, err := yaml.Marshal(v)
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(w, "---\n%s", b)
		return err
	}
	return json.NewEncoder(w).Encode(v)
}

// newTable is the tab writer kubectl's tables use (cli-runtime's printers), so the
// tables of weft's newer commands line up as kubectl's do.
func newTable(w io.Writer) table { return printers.GetNewTabWriter(w) }

// table is a tab writer: cells separated by tabs, aligned on Flush.
type table interface {
	io.Writer
	Flush() error
}

// row writes one table row of cells separated by tabs. Cells may carry what a
// workload wrote (an authority is a request's Host), so control characters are
// escaped: a cell never moves the cursor or recolours the terminal.
func row(w io.Writer, cells ...string) {
	for i, c := range cells {
		cells[i] = printable(c)
	}
	fmt.Fprintln(w, strings.Join(cells, "\t"))
}

// printable escapes the control characters of s (C0 but for tab and newline when
// keepLines, DEL, C1) and the bytes of invalid UTF-8 as \xNN; anything else is kept.
func printable(s string) string { return escapeControls(s, false) }

func escapeControls(s string, keepLines bool) string {
	var b strings.Builder
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			fmt.Fprintf(&b, "\\x%02x", s[i])
		case isControl(r, keepLines):
			fmt.Fprintf(&b, "\\x%02x", r)
		default:
			b.WriteString(s[i : i+size])
		}
		i += size
	}
	return b.String()
}

func isControl(r rune, keepLines bool) bool {
	if keepLines && (r == '\n' || r == '\t') {
		return false
	}
	return r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0)
}
