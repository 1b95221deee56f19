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

// Package validation checks what the CRD schemas cannot express, with field.ErrorList
// errors that name the field. It is the one home of these rules: the reconcilers report
// the result in status conditions and the validating webhooks reject with it, so both say
// the same thing, and the webhooks keep only admission plumbing (decoding, reading the
// cluster, turning errors into responses). Every function here is pure: what it needs
// from the cluster (other objects, the cluster domain) is passed in, so the rules are
// tested by table in milliseconds, without an API server.
package validation

import (
	"fmt"
	"regexp"
	"time"

	"k8s.io/apimachinery/pkg/util/validation/field"

	meshv1alpha1 "github.com/weftmesh/weft/apis/mesh/v1alpha1"
)

// ServiceProfile checks what the CRD schema cannot: that regular expressions
// compile, durations parse, and override weights are usable.
func ServiceProfile(sp *meshv1alpha1.ServiceProfile) field.ErrorList {
	var errs field.ErrorList
	spec := field.NewPath("spec")
	for i, rt := range sp.Spec.Routes {
		p := spec.Child("routes").Index(i)
		errs = append(errs, validateRequestMatch(p.Child("condition"), rt.Condition)...)
		if rt.Timeout != "" {
			errs = append(errs, validatePositiveDuration(p.Child("timeout"), rt.Timeout)...)
		}
	}
	if b := sp.Spec.RetryBudget; b != nil {
		errs = append(errs, validatePositiveDuration(spec.Child("retryBudget", "ttl"), b.TTL)...)
	}
	var total int64
	for i, d := range sp.Spec.DstOverrides {
		p := spec.Child("dstOverrides").Index(i).Child("weight")
		if d.Weight.Sign() < 0 {
			errs = append(errs, field.Invalid(p, d.Weight.String(), "must not be negative"))
		}
		total += d.Weight.MilliValue()
	}
	if len(sp.Spec.DstOverrides) > 0 && total <= 0 {
		errs = append(errs, field.Invalid(spec.Child("dstOverrides"), total, "the weights must add up to more than 0, or the service would receive no traffic"))
	}
	return errs
}

// validateRequestMatch walks the three levels of a request condition and checks that
// every pathRegex compiles.
func validateRequestMatch(p *field.Path, m meshv1alpha1.RequestMatch) field.ErrorList {
	errs := validatePathRegex(p.Child("pathRegex"), m.PathRegex)
	sub := func(p *field.Path, s meshv1alpha1.RequestSubMatch) {
		errs = append(errs, validatePathRegex(p.Child("pathRegex"), s.PathRegex)...)
		for i, l := range s.All {
			errs = append(errs, validatePathRegex(p.Child("all").Index(i).Child("pathRegex"), l.PathRegex)...)
		}
		for i, l := range s.Any {
			errs = append(errs, validatePathRegex(p.Child("any").Index(i).Child("pathRegex"), l.PathRegex)...)
		}
		if s.Not != nil {
			errs = append(errs, validatePathRegex(p.Child("not", "pathRegex"), s.Not.PathRegex)...)
		}
	}
	for i, s := range m.All {
		sub(p.Child("all").Index(i), s)
	}
	for i, s := range m.Any {
		sub(p.Child("any").Index(i), s)
	}
	if m.Not != nil {
		sub(p.Child("not"), *m.Not)
	}
	return errs
}

func validatePathRegex(p *field.Path, expr string) field.ErrorList {
	if expr == "" {
		return nil
	}
	if _, err := regexp.Compile("^(?:" + expr + ")$"); err != nil {
		return field.ErrorList{field.Invalid(p, expr, fmt.Sprintf("not a valid RE2 regular expression: %v", err))}
	}
	return nil
}

func validatePositiveDuration(p *field.Path, s string) field.ErrorList {
	d, err := time.ParseDuration(s)
	if err != nil {
		return field.ErrorList{field.Invalid(p, s, "not a duration such as 300ms or 10s")}
	}
	if d <= 0 {
		return field.ErrorList{field.Invalid(p, s, "must be greater than 0")}
	}
	return nil
}
