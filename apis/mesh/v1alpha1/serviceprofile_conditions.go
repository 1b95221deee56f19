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

package v1alpha1

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
)

// Bounds of a ServiceProfile condition (request or response), checked by
// internal/validation and again by the compiler. The schema cannot state them for the
// nested members (see RequestMatch).
const (
	// MaxConditionDepth is how deep conditions nest, the route's condition being level
	// 1. Linkerd's reference and `linkerd profile --template` go 4 deep (an any whose
	// member is an all containing a not); 8 leaves room for hand-written profiles while
	// keeping every walk over a condition short.
	MaxConditionDepth = 8
	// MaxConditionNodes is how many conditions one route's request condition, or one
	// response class's condition, may hold in all.
	MaxConditionNodes = 128
	// MaxConditionList is the longest all or any list at any level.
	MaxConditionList = 16
	// MaxProfileConditions is how many conditions (request and response) one profile
	// may hold across its routes, and MaxProfileRegexBytes how long its pathRegexes may
	// be in all. Without them 256 routes of 128 conditions, each a 1 KiB expression,
	// took 8s to validate (and as long to compile, in the controller and in every
	// client's proxy); within them, about 20ms. A profile from
	// `linkerd profile --open-api` has one or two conditions and a short expression per
	// route.
	MaxProfileConditions = 1024
	MaxProfileRegexBytes = 64 << 10
)

// DecodeError says what in the written request condition did not fit Linkerd's
// schema (unknown keys, wrong types), or is empty. Only this level: nested conditions
// carry their own.
func (m *RequestMatch) DecodeError() string { return m.decodeErr }

// DecodeError says what in the written response condition did not fit Linkerd's
// schema, or is empty. Only this level.
func (m *ResponseMatch) DecodeError() string { return m.decodeErr }

// UnmarshalJSON decodes a request condition by exact key. It never fails: what does
// not fit is kept in DecodeError for validation to refuse with the field's path,
// because a decoding error would fail the whole list an informer reads and so stop
// every ServiceProfile in the cluster, not just the bad one.
func (m *RequestMatch) UnmarshalJSON(b []byte) error {
	*m = RequestMatch{}
	m.decodeErr = decodeObject(b, "request condition", map[string]condField{
		"all":       {&m.All, "a list of conditions"},
		"any":       {&m.Any, "a list of conditions"},
		"not":       {&m.Not, "a single condition (an object, not a list)"},
		"pathRegex": {&m.PathRegex, "a string"},
		"method":    {&m.Method, "a string"},
	})
	return nil
}

// UnmarshalJSON decodes a response condition by exact key; like RequestMatch's, it
// never fails.
func (m *ResponseMatch) UnmarshalJSON(b []byte) error {
	*m = ResponseMatch{}
	var status json.RawMessage
	m.decodeErr = decodeObject(b, "response condition", map[string]condField{
		"all":    {&m.All, "a list of conditions"},
		"any":    {&m.Any, "a list of conditions"},
		"not":    {&m.Not, "a single condition (an object, not a list)"},
		"status": {&status, ""},
	})
	if len(status) == 0 || string(status) == "null" {
		return nil
	}
	var r StatusRange
	if msg := decodeObject(status, "status range", map[string]condField{
		"min": {&r.Min, "a whole number"},
		"max": {&r.Max, "a whole number"},
	}); msg != "" {
		m.decodeErr = joinMsgs(m.decodeErr, "status: "+msg)
		return nil
	}
	m.Status = &r
	return nil
}

type condField struct {
	into any
	want string
}

// decodeObject decodes a JSON object into fields by exact key (encoding/json matches
// keys case-insensitively and drops unknown ones; Linkerd's webhook refuses both),
// and returns what did not fit, or "".
func decodeObject(b []byte, what string, fields map[string]condField) string {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(b, &raw); err != nil || raw == nil {
		return fmt.Sprintf("a %s must be an object", what)
	}
	keys := make([]string, 0, len(raw))
	for k := range raw {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var msgs []string
	for _, k := range keys {
		f, ok := fields[k]
		if !ok {
			known := make([]string, 0, len(fields))
			for n := range fields {
				known = append(known, n)
			}
			slices.Sort(known)
			msgs = append(msgs, fmt.Sprintf("unknown field %q (a %s has only %s)", k, what, strings.Join(known, ", ")))
			continue
		}
		if err := json.Unmarshal(raw[k], f.into); err != nil {
			msgs = append(msgs, fmt.Sprintf("%s must be %s", k, f.want))
		}
	}
	return strings.Join(msgs, "; ")
}

func joinMsgs(a, b string) string {
	if a == "" {
		return b
	}
	return a + "; " + b
}
