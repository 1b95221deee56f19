package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"
	corev1 "k8s.io/api/core/v1"

	meshv1alpha1 "github.com/weftmesh/weft/apis/mesh/v1alpha1"
	"github.com/weftmesh/weft/internal/inject"
)

// transformer injects or uninjects the workloads of a YAML stream. It edits the YAML
// tree in place and touches only what injection changed (annotations, labels,
// serviceAccountName, initContainers, volumes), so the rest of a changed document keeps
// its field order and comments; unchanged documents are copied byte for byte.
type transformer struct {
	verb string
	env  inject.Env
	mesh meshv1alpha1.MeshSpec
}

type result struct {
	out    bytes.Buffer
	report []string
}

// document is one YAML document of a stream: its text and, once parsed, its tree.
type document struct {
	raw   []byte
	index int // 1-based, counting non-empty documents, as a reader counts them
	line  int // the stream's line the document starts on, 1-based
	node  *yaml.Node
}

func (t *transformer) stream(data []byte) (*result, error) {
	docs := splitDocuments(data)
	namespaces := map[string]inject.Namespace{}
	for _, d := range docs {
		var n yaml.Node
		if err := yaml.Unmarshal(d.raw, &n); err != nil {
			// yaml reports lines within the document; say where it starts in the file.
			return nil, fmt.Errorf("document %d (starting at line %d): invalid YAML: %w", d.index, d.line, err)
		}
		if n.Kind != yaml.DocumentNode || len(n.Content) == 0 || n.Content[0].Kind != yaml.MappingNode {
			continue // comments only, or not an object: passes through
		}
		d.node = &n
		// A Namespace in the same stream lends its config.weft.dev/* annotations to
		// the workloads in it, as the cluster would.
		if obj := n.Content[0]; scalar(obj, "kind") == "Namespace" && scalar(obj, "apiVersion") == "v1" {
			var ns corev1.Namespace
			if err := decodeNode(obj, &ns); err != nil {
				return nil, fmt.Errorf("document %d: %w", d.index, err)
			}
			namespaces[ns.Name] = inject.Namespace{Name: ns.Name, Labels: ns.Labels, Annotations: ns.Annotations}
		}
	}

	res := &result{}
	for i, d := range docs {
		changed := false
		if d.node != nil {
			var err error
			changed, err = t.object(d.node.Content[0], namespaces, fmt.Sprintf("document %d", d.index), res)
			if err != nil {
				return nil, err
			}
		}
		if i > 0 {
			res.out.WriteString("---\n")
		}
		if !changed {
			res.out.Write(d.raw)
			continue
		}
		var buf bytes.Buffer
		enc := yaml.NewEncoder(&buf)
		enc.SetIndent(2)
		if err := enc.Encode(d.node); err != nil {
			return nil, fmt.Errorf("document %d: encoding: %w", d.index, err)
		}
		if err := enc.Close(); err != nil {
			return nil, fmt.Errorf("document %d: encoding: %w", d.index, err)
		}
		res.out.Write(buf.Bytes())
	}
	return res, nil
}

// splitDocuments cuts a stream at its "---" lines. Empty documents (nothing but
// whitespace) are dropped; each kept document ends with a newline.
func splitDocuments(data []byte) []*document {
	var docs []*document
	var cur bytes.Buffer
	lineNo, start := 0, 1
	flush := func() {
		if strings.TrimSpace(cur.String()) != "" {
			raw := bytes.Clone(cur.Bytes())
			if !bytes.HasSuffix(raw, []byte("\n")) {
				raw = append(raw, '\n')
			}
			docs = append(docs, &document{raw: raw, index: len(docs) + 1, line: start})
		}
		cur.Reset()
		start = lineNo + 1
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 64*1024), len(data)+1)
	for sc.Scan() {
		lineNo++
		line := sc.Text()
		if line == "---" || strings.HasPrefix(line, "--- ") || strings.HasPrefix(line, "---\t") {
			flush()
			continue
		}
		cur.WriteString(line)
		cur.WriteByte('\n')
	}
	flush()
	return docs
}

// object transforms one Kubernetes object (recursing into Lists) and reports whether it
// changed.
func (t *transformer) object(obj *yaml.Node, namespaces map[string]inject.Namespace, where string, res *result) (bool, error) {
	kind := scalar(obj, "kind")
	if kind == "List" || (strings.HasSuffix(kind, "List") && get(obj, "items") != nil) {
		items := get(obj, "items")
		if items == nil || items.Kind != yaml.SequenceNode {
			return false, nil
		}
		changed := false
		for i, item := range items.Content {
			if item.Kind != yaml.MappingNode {
				continue
			}
			c, err := t.object(item, namespaces, fmt.Sprintf("%s, items[%d]", where, i), res)
			if err != nil {
				return false, err
			}
			changed = changed || c
		}
		return changed, nil
	}
	path, ok := inject.TemplatePath(scalar(obj, "apiVersion"), kind)
	if !ok {
		return false, nil
	}
	label := fmt.Sprintf("%s/%s", strings.ToLower(kind), name(obj))
	tplNode := obj
	for _, k := range path {
		if tplNode = get(tplNode, k); tplNode == nil || tplNode.Kind != yaml.MappingNode {
			return false, fmt.Errorf("%s (%s): has no %s", where, label, strings.Join(path, "."))
		}
	}
	meta := get(obj, "metadata")
	nsName := "default"
	if meta != nil && scalar(meta, "namespace") != "" {
		nsName = scalar(meta, "namespace")
	}
	return t.template(tplNode, nsName, namespaces, fmt.Sprintf("%s (%s)", where, label), label, res)
}

// template injects or uninjects one pod template node.
func (t *transformer) template(node *yaml.Node, nsName string, namespaces map[string]inject.Namespace, where, label string, res *result) (bool, error) {
	var before corev1.PodTemplateSpec
	if err := decodeNode(node, &before); err != nil {
		return false, fmt.Errorf("%s: %w", where, err)
	}
	after := *before.DeepCopy()
	switch t.verb {
	case "uninject":
		if !inject.Uninject(&after) {
			res.report = append(res.report, label+" not injected, left as is")
			return false, nil
		}
		res.report = append(res.report, label+" uninjected")
	default:
		ns, known := namespaces[nsName]
		if !known {
			ns = inject.Namespace{Name: nsName}
		}
		// Asking the CLI to inject is the opt-in: behave as if the namespace were
		// enabled, while a pod's own "disabled" still wins.
		ns.Annotations = maps.Clone(ns.Annotations)
		if ns.Annotations == nil {
			ns.Annotations = map[string]string{}
		}
		ns.Annotations[inject.AnnotationInject] = inject.InjectEnabled
		if ok, reason := inject.Decide(&after, ns, t.env); !ok {
			res.report = append(res.report, fmt.Sprintf("%s skipped: %s", label, reason))
			return false, nil
		}
		if errs := inject.Inject(&after, ns, t.mesh, t.env); len(errs) > 0 {
			return false, fmt.Errorf("%s: %w", where, errs.ToAggregate())
		}
		res.report = append(res.report, label+" injected")
	}
	if err := writeBack(node, &before, &after); err != nil {
		return false, fmt.Errorf("%s: %w", where, err)
	}
	return true, nil
}

// writeBack edits the template node so that it says what after says, changing only the
// fields injection touches and keeping the original nodes of unchanged entries.
func writeBack(node *yaml.Node, before, after *corev1.PodTemplateSpec) error {
	meta := get(node, "metadata")
	if meta == nil {
		// A new metadata goes first, where people expect it.
		meta = &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
		node.Content = append([]*yaml.Node{{Kind: yaml.ScalarNode, Tag: "!!str", Value: "metadata"}, meta}, node.Content...)
	}
	if err := syncMap(meta, "labels", before.Labels, after.Labels); err != nil {
		return err
	}
	if err := syncMap(meta, "annotations", before.Annotations, after.Annotations); err != nil {
		return err
	}
	if len(meta.Content) == 0 {
		del(node, "metadata")
	}
	spec := get(node, "spec")
	if spec == nil {
		return fmt.Errorf("the pod template has no spec")
	}
	if before.Spec.ServiceAccountName != after.Spec.ServiceAccountName {
		set(spec, "serviceAccountName", &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: after.Spec.ServiceAccountName})
	}
	if err := syncList(spec, "initContainers", before.Spec.InitContainers, after.Spec.InitContainers,
		func(c corev1.Container) string { return c.Name }); err != nil {
		return err
	}
	return syncList(spec, "volumes", before.Spec.Volumes, after.Spec.Volumes,
		func(v corev1.Volume) string { return v.Name })
}

// syncMap makes the string map under key equal to after, keeping the nodes (and their
// comments) of entries that did not change.
func syncMap(parent *yaml.Node, key string, before, after map[string]string) error {
	if maps.Equal(before, after) {
		return nil
	}
	if len(after) == 0 {
		del(parent, key)
		return nil
	}
	m := get(parent, key)
	if m == nil || m.Kind != yaml.MappingNode {
		m = &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
		set(parent, key, m)
	}
	for k := range before {
		if _, keep := after[k]; !keep {
			del(m, k)
		}
	}
	for _, k := range sortedKeys(after) {
		if v, had := before[k]; !had || v != after[k] {
			set(m, k, &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: after[k]})
		}
	}
	return nil
}

// syncList makes the list under key equal to after, reusing the original node of each
// element that is unchanged (matched by name).
func syncList[T any](parent *yaml.Node, key string, before, after []T, nameOf func(T) string) error {
	if reflect.DeepEqual(before, after) {
		return nil
	}
	if len(after) == 0 {
		del(parent, key)
		return nil
	}
	old := map[string]*yaml.Node{}
	if seq := get(parent, key); seq != nil && seq.Kind == yaml.SequenceNode && len(seq.Content) == len(before) {
		for i, b := range before {
			old[nameOf(b)] = seq.Content[i]
		}
	}
	seq := &yaml.Node{Kind: yaml.SequenceNode, Tag: "!!seq"}
	for _, a := range after {
		n := nameOf(a)
		if orig, ok := old[n]; ok && equalByName(before, a, nameOf) {
			seq.Content = append(seq.Content, orig)
			continue
		}
		fresh, err := encodeNode(a)
		if err != nil {
			return err
		}
		seq.Content = append(seq.Content, fresh)
	}
	set(parent, key, seq)
	return nil
}

func equalByName[T any](before []T, a T, nameOf func(T) string) bool {
	for _, b := range before {
		if nameOf(b) == nameOf(a) {
			return reflect.DeepEqual(b, a)
		}
	}
	return false
}

// decodeNode reads a YAML node into a Kubernetes type through JSON, as kubectl does, so
// the types' JSON tags and custom unmarshalers (quantities, int-or-string) apply.
func decodeNode(n *yaml.Node, into any) error {
	var v any
	if err := n.Decode(&v); err != nil {
		return fmt.Errorf("decoding: %w", err)
	}
	raw, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("decoding: %w", err)
	}
	if err := json.Unmarshal(raw, into); err != nil {
		return fmt.Errorf("decoding: %w", err)
	}
	return nil
}

// encodeNode renders a Kubernetes value as a block-style YAML node whose fields are in
// the type's declaration order (name first, as people write them).
func encodeNode(v any) (*yaml.Node, error) {
	raw, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("encoding: %w", err)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		return nil, fmt.Errorf("encoding: %w", err)
	}
	n := doc.Content[0]
	blockStyle(n)
	return n, nil
}

// blockStyle undoes JSON's flow style and quoting; the encoder quotes again whatever
// would otherwise read as another type ("8080", "true").
func blockStyle(n *yaml.Node) {
	n.Style = 0
	for _, c := range n.Content {
		blockStyle(c)
	}
}

func get(m *yaml.Node, key string) *yaml.Node {
	if m == nil || m.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			return m.Content[i+1]
		}
	}
	return nil
}

func set(m *yaml.Node, key string, v *yaml.Node) {
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			m.Content[i+1] = v
			return
		}
	}
	m.Content = append(m.Content, &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: key}, v)
}

func del(m *yaml.Node, key string) {
	if m == nil {
		return
	}
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			m.Content = append(m.Content[:i], m.Content[i+2:]...)
			return
		}
	}
}

func scalar(m *yaml.Node, key string) string {
	if n := get(m, key); n != nil && n.Kind == yaml.ScalarNode {
		return n.Value
	}
	return ""
}

func name(obj *yaml.Node) string {
	if n := scalar(get(obj, "metadata"), "name"); n != "" {
		return n
	}
	if n := scalar(get(obj, "metadata"), "generateName"); n != "" {
		return n + "*"
	}
	return "<unnamed>"
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
