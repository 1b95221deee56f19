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

package controllers

import (
	"strings"
	"testing"
	"unicode/utf8"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestConditionMessageFitsTheSchema: a validation message longer than the condition
// schema's 32768 bytes would fail the status write; it is cut, at a character
// boundary, keeping its head.
func TestConditionMessageFitsTheSchema(t *testing.T) {
	var list []metav1.Condition
	c := conditions{list: &list}
	long := "spec.routes[0].condition.pathRegex: " + strings.Repeat("é", maxConditionMessage)
	c.set("Accepted", false, "Invalid", long)
	got := list[0].Message
	if len(got) > maxConditionMessage || !utf8.ValidString(got) {
		t.Fatalf("message is %d bytes (valid UTF-8: %v), want at most %d", len(got), utf8.ValidString(got), maxConditionMessage)
	}
	if !strings.HasPrefix(got, "spec.routes[0].condition.pathRegex: é") || !strings.HasSuffix(got, "(truncated)") {
		t.Errorf("message = %.60q ... %q", got, got[len(got)-20:])
	}
	c.set("Accepted", true, "Accepted", "The profile is valid")
	if list[0].Message != "The profile is valid" {
		t.Errorf("a short message was changed: %q", list[0].Message)
	}
}

func TestEventNoteFitsTheAPI(t *testing.T) {
	got := truncateMessage(strings.Repeat("spec.routes[0].condition: bad; ", 100), maxEventNote)
	if len(got) > maxEventNote || !strings.HasPrefix(got, "spec.routes[0].condition: bad;") {
		t.Errorf("note of %d bytes: %.40q", len(got), got)
	}
}
