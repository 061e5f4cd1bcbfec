package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/reflect/protoreflect"
	"sigs.k8s.io/yaml"
)

// maxDecodeSize bounds one input; config files are small, and a bound keeps a
// hostile or accidental huge file from exhausting memory in the YAML parser.
const maxDecodeSize = 8 << 20

// document is one YAML document of a file, with where it starts.
type document struct {
	data []byte
	line int // one-based line of the first content line
}

// rawObject is the Kubernetes envelope of a document, read before the kind is known.
type rawObject struct {
	APIVersion string            `json:"apiVersion"`
	Kind       string            `json:"kind"`
	Metadata   json.RawMessage   `json:"metadata"`
	Spec       json.RawMessage   `json:"spec"`
	Items      []json.RawMessage `json:"items"`
}

// wireMeta is Meta as it appears in YAML; pointers and strings let absent
// fields stay absent on Encode (time.Time has no useful omitempty).
type wireMeta struct {
	Name              string            `json:"name"`
	Namespace         string            `json:"namespace,omitempty"`
	Labels            map[string]string `json:"labels,omitempty"`
	Annotations       map[string]string `json:"annotations,omitempty"`
	ResourceVersion   string            `json:"resourceVersion,omitempty"`
	Generation        int64             `json:"generation,omitempty"`
	CreationTimestamp *time.Time        `json:"creationTimestamp,omitempty"`
}

// Decode parses one file's worth of config: multi-document YAML separated by
// "---" lines, a single JSON object, or a Kubernetes "kind: List" (YAML or
// JSON). Each document that decodes becomes an Object whose Origin records the
// document index (counting non-empty documents from zero) and its start line.
// Documents that fail produce error diagnostics and no object; Decode never
// panics and never stops at the first bad document.
func Decode(data []byte, origin Origin) ([]*Object, Diagnostics) {
	if len(data) > maxDecodeSize {
		return nil, Diagnostics{{Severity: SeverityError, Origin: origin,
			Message: fmt.Sprintf("input is %d bytes, more than the %d byte limit", len(data), maxDecodeSize)}}
	}
	var (
		objs  []*Object
		diags Diagnostics
	)
	for i, doc := range splitDocuments(data) {
		o := origin
		o.Doc, o.Line = i, doc.line
		os, ds := decodeDocument(doc.data, o)
		objs = append(objs, os...)
		diags = append(diags, ds...)
	}
	return objs, diags
}

// splitDocuments splits YAML on "---" separator lines and drops documents
// holding only blanks and comments. JSON input is one document.
func splitDocuments(data []byte) []document {
	trimmed := bytes.TrimLeft(data, " \t\r\n")
	if len(trimmed) > 0 && (trimmed[0] == '{' || trimmed[0] == '[') {
		return []document{{data: data, line: 1 + bytes.Count(data[:len(data)-len(trimmed)], []byte("\n"))}}
	}
	var (
		docs  []document
		cur   []byte
		first int // first content line of cur, 0 while none
	)
	flush := func() {
		if first > 0 {
			docs = append(docs, document{data: cur, line: first})
		}
		cur, first = nil, 0
	}
	lines := bytes.SplitAfter(data, []byte("\n"))
	for n, l := range lines {
		text := strings.TrimRight(string(l), " \t\r\n")
		if text == "---" || strings.HasPrefix(text, "--- ") || strings.HasPrefix(text, "---\t") {
			flush()
			continue
		}
		if text == "..." { // YAML end-of-document marker
			continue
		}
		if first == 0 {
			t := strings.TrimSpace(text)
			if t == "" || strings.HasPrefix(t, "#") {
				continue
			}
			first = n + 1
		}
		cur = append(cur, l...)
	}
	flush()
	return docs
}

func decodeDocument(data []byte, origin Origin) (objs []*Object, diags Diagnostics) {
	// The YAML parser is third-party code fed user input; a panic there must
	// become a diagnostic, not take down weftd.
	defer func() {
		if r := recover(); r != nil {
			objs, diags = nil, Diagnostics{{Severity: SeverityError, Origin: origin, Message: fmt.Sprintf("malformed document: parser failure: %v", r)}}
		}
	}()
	errDiag := func(field, format string, args ...any) Diagnostics {
		return Diagnostics{{Severity: SeverityError, Origin: origin, Field: field, Message: fmt.Sprintf(format, args...)}}
	}
	js, err := yaml.YAMLToJSON(data)
	if err != nil {
		return nil, errDiag("", "malformed YAML: %v", err)
	}
	js = bytes.TrimSpace(js)
	if len(js) == 0 || string(js) == "null" {
		return nil, nil
	}
	if js[0] == '[' { // a bare JSON array is treated like a List
		var items []json.RawMessage
		if err := json.Unmarshal(js, &items); err != nil {
			return nil, errDiag("", "malformed document: %v", err)
		}
		return decodeItems(items, origin)
	}
	if js[0] != '{' {
		return nil, errDiag("", "document is not an object (a YAML mapping with apiVersion, kind, metadata and spec)")
	}
	var raw rawObject
	if err := json.Unmarshal(js, &raw); err != nil {
		return nil, errDiag("", "malformed document: %v", err)
	}
	if raw.Kind == "List" || strings.HasSuffix(raw.Kind, "List") && raw.Items != nil {
		return decodeItems(raw.Items, origin)
	}
	obj, diags := decodeObject(raw, origin)
	if obj == nil {
		return nil, diags
	}
	return []*Object{obj}, diags
}

func decodeItems(items []json.RawMessage, origin Origin) ([]*Object, Diagnostics) {
	var (
		objs  []*Object
		diags Diagnostics
	)
	for i, item := range items {
		var raw rawObject
		if err := json.Unmarshal(item, &raw); err != nil {
			diags = append(diags, Diagnostic{Severity: SeverityError, Origin: origin,
				Field: fmt.Sprintf("items[%d]", i), Message: fmt.Sprintf("malformed item: %v", err)})
			continue
		}
		obj, ds := decodeObject(raw, origin)
		for j := range ds {
			ds[j].Field = joinField(fmt.Sprintf("items[%d]", i), ds[j].Field)
		}
		diags = append(diags, ds...)
		if obj != nil {
			objs = append(objs, obj)
		}
	}
	return objs, diags
}

func joinField(prefix, field string) string {
	if field == "" {
		return prefix
	}
	return prefix + "." + field
}

// acceptedAPIVersions lists what Decode accepts, for error messages.
func acceptedAPIVersions() string {
	var parts []string
	for _, k := range Kinds() {
		vs := append([]string{k.Version}, k.Aliases...)
		parts = append(parts, fmt.Sprintf("%s (%s/{%s})", k.Kind, k.Group, strings.Join(vs, ",")))
	}
	return strings.Join(parts, ", ")
}

func decodeObject(raw rawObject, origin Origin) (*Object, Diagnostics) {
	var key Key
	errDiag := func(field, format string, args ...any) Diagnostics {
		return Diagnostics{{Severity: SeverityError, Origin: origin, Key: key, Field: field, Message: fmt.Sprintf(format, args...)}}
	}
	if raw.APIVersion == "" || raw.Kind == "" {
		return nil, errDiag("", "apiVersion and kind are required; accepted: %s", acceptedAPIVersions())
	}
	info, ok := LookupAPIVersion(raw.APIVersion, raw.Kind)
	if !ok {
		return nil, errDiag("kind", "unknown kind %q in apiVersion %q; accepted: %s", raw.Kind, raw.APIVersion, acceptedAPIVersions())
	}
	key.Kind = info.Kind

	var wm wireMeta
	if len(raw.Metadata) == 0 || string(raw.Metadata) == "null" {
		return nil, errDiag("metadata.name", "metadata.name is required")
	}
	if err := json.Unmarshal(raw.Metadata, &wm); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) && te.Field != "" {
			msg := fmt.Sprintf("must be a %s, not a %s", jsonTypeName(te.Type.Kind().String()), te.Value)
			if te.Value == "bool" {
				// YAML 1.1 reads y/n/yes/no/on/off as booleans, a classic trap.
				msg += " (quote the value: YAML reads y, n, yes, no, on and off as booleans)"
			}
			return nil, errDiag("metadata."+te.Field, "%s", msg)
		}
		return nil, errDiag("metadata", "malformed metadata: %v", err)
	}
	if wm.Namespace == "" {
		wm.Namespace = "default"
	}
	key.Name, key.Namespace = wm.Name, wm.Namespace
	if wm.Name == "" {
		return nil, errDiag("metadata.name", "metadata.name is required")
	}
	if msg := dns1123Subdomain(wm.Name); msg != "" {
		return nil, errDiag("metadata.name", "invalid name %q: %s", wm.Name, msg)
	}
	if msg := dns1123Label(wm.Namespace); msg != "" {
		return nil, errDiag("metadata.namespace", "invalid namespace %q: %s", wm.Namespace, msg)
	}

	spec := info.New()
	if len(raw.Spec) > 0 && string(raw.Spec) != "null" {
		js, err := normalizeSpec(raw.Spec, spec.ProtoReflect().Descriptor())
		if err != nil {
			return nil, errDiag("spec", "malformed spec: %v", err)
		}
		if err := (protojson.UnmarshalOptions{DiscardUnknown: false}).Unmarshal(js, spec); err != nil {
			field, msg := protojsonErrorField(js, err)
			return nil, errDiag(joinField("spec", field), "%s", msg)
		}
	}
	obj := &Object{
		Kind:       info.Kind,
		APIVersion: raw.APIVersion,
		Meta: Meta{
			Name: wm.Name, Namespace: wm.Namespace, Labels: wm.Labels, Annotations: wm.Annotations,
			ResourceVersion: wm.ResourceVersion, Generation: wm.Generation,
		},
		Spec:   spec,
		Origin: origin,
	}
	if wm.CreationTimestamp != nil {
		obj.CreationTimestamp = *wm.CreationTimestamp
	}
	return obj, nil
}

// normalizeSpec returns spec as compact single-line JSON (so protojson error
// columns are byte offsets) with Go-style durations ("500ms", "1m30s")
// rewritten to protojson's seconds form ("0.5s", "90s"): users copy Istio
// examples and Kubernetes habits, and protojson alone accepts only seconds.
func normalizeSpec(spec json.RawMessage, md protoreflect.MessageDescriptor) ([]byte, error) {
	dec := json.NewDecoder(bytes.NewReader(spec))
	dec.UseNumber() // keep 64-bit integers exact
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	return json.Marshal(normalizeDurations(v, md, 0))
}

// maxNormalizeDepth bounds recursion on hostile, deeply nested input; protojson
// enforces its own limit on what is left.
const maxNormalizeDepth = 64

func normalizeDurations(v any, md protoreflect.MessageDescriptor, depth int) any {
	obj, ok := v.(map[string]any)
	if !ok || depth > maxNormalizeDepth {
		return v
	}
	fields := md.Fields()
	for k, val := range obj {
		fd := fields.ByJSONName(k)
		if fd == nil {
			fd = fields.ByTextName(k)
		}
		if fd == nil || fd.Message() == nil {
			continue
		}
		if fd.IsMap() {
			if m, ok := val.(map[string]any); ok && fd.MapValue().Message() != nil {
				for mk, mv := range m {
					m[mk] = normalizeValue(mv, fd.MapValue().Message(), depth)
				}
			}
			continue
		}
		if l, ok := val.([]any); ok && fd.IsList() {
			for i := range l {
				l[i] = normalizeValue(l[i], fd.Message(), depth)
			}
			continue
		}
		obj[k] = normalizeValue(val, fd.Message(), depth)
	}
	return obj
}

func normalizeValue(v any, md protoreflect.MessageDescriptor, depth int) any {
	if md.FullName() == "google.protobuf.Duration" {
		if s, ok := v.(string); ok {
			return normalizeDuration(s)
		}
		return v
	}
	return normalizeDurations(v, md, depth+1)
}

// normalizeDuration rewrites a Go duration to protojson form; anything else
// is left for protojson to accept or reject with its own message.
func normalizeDuration(s string) string {
	if strings.HasSuffix(s, "s") && !strings.HasSuffix(s, "ms") && !strings.HasSuffix(s, "us") && !strings.HasSuffix(s, "ns") && !strings.HasSuffix(s, "µs") {
		if _, err := strconv.ParseFloat(strings.TrimSuffix(s, "s"), 64); err == nil {
			return s
		}
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return s
	}
	sign := ""
	if d < 0 {
		sign, d = "-", -d
	}
	secs, nanos := int64(d/time.Second), int64(d%time.Second)
	if nanos == 0 {
		return fmt.Sprintf("%s%ds", sign, secs)
	}
	return strings.TrimRight(fmt.Sprintf("%s%d.%09d", sign, secs, nanos), "0") + "s"
}

// jsonTypeName names a Go kind the way a YAML author thinks of it.
func jsonTypeName(kind string) string {
	switch kind {
	case "map":
		return "mapping"
	case "int64", "int", "int32":
		return "number"
	}
	return kind
}

var (
	protojsonPos     = regexp.MustCompile(`\(line (\d+):(\d+)\):?\s*`)
	protojsonUnknown = regexp.MustCompile(`unknown field "([^"]+)"`)
)

// protojsonErrorField turns a protojson error into a field path relative to
// spec and a message without protojson's "proto:" noise. protojson reports
// only a position, so the path is recovered by re-scanning the (compact,
// single-line) JSON up to that position.
func protojsonErrorField(js []byte, err error) (field, msg string) {
	msg = strings.TrimPrefix(err.Error(), "proto: ")
	m := protojsonPos.FindStringSubmatchIndex(msg)
	if m == nil {
		return "", msg
	}
	col, _ := strconv.Atoi(msg[m[4]:m[5]])
	msg = strings.TrimSpace(msg[:m[0]] + msg[m[1]:])
	field = jsonPathAt(js, col-1)
	if u := protojsonUnknown.FindStringSubmatch(msg); u != nil {
		// The position points at the unknown key itself, so the path already
		// ends with it; say plainly what is wrong.
		if !strings.HasSuffix(field, u[1]) {
			field = joinField(field, u[1])
		}
		msg = fmt.Sprintf("unknown field %q (misspelled, or not in this kind's schema)", u[1])
	}
	return field, msg
}

// jsonPathAt returns the path ("http[0].route[1].weight") of the value or key
// at byte offset off in js. It is best effort: any scan error ends the search.
func jsonPathAt(js []byte, off int) string {
	type frame struct {
		array   bool
		idx     int
		key     string
		wantKey bool
	}
	var stack []frame
	path := func() string {
		var b strings.Builder
		for _, f := range stack {
			if f.array {
				fmt.Fprintf(&b, "[%d]", f.idx)
				continue
			}
			if f.key == "" {
				continue
			}
			if b.Len() > 0 {
				b.WriteByte('.')
			}
			b.WriteString(f.key)
		}
		return b.String()
	}
	// valueDone advances the parent after a complete value.
	valueDone := func() {
		if len(stack) == 0 {
			return
		}
		top := &stack[len(stack)-1]
		if top.array {
			top.idx++
		} else {
			top.wantKey = true
		}
	}
	dec := json.NewDecoder(bytes.NewReader(js))
	best := ""
	for {
		if int(dec.InputOffset()) > off {
			return best
		}
		tok, err := dec.Token()
		if err != nil {
			return best
		}
		switch t := tok.(type) {
		case json.Delim:
			switch t {
			case '{':
				stack = append(stack, frame{wantKey: true})
			case '[':
				stack = append(stack, frame{array: true})
			case '}', ']':
				if len(stack) > 0 {
					stack = stack[:len(stack)-1]
				}
				valueDone()
			}
		default:
			if n := len(stack); n > 0 && !stack[n-1].array && stack[n-1].wantKey {
				s, _ := t.(string)
				stack[n-1].key, stack[n-1].wantKey = s, false
			} else {
				valueDone()
			}
		}
		best = path()
	}
}

// Encode renders obj as Kubernetes-style YAML (apiVersion, kind, metadata,
// spec). The spec uses protojson's lowerCamelCase names, as Istio documents
// and kubectl show them, so Decode(Encode(x)) reproduces x.
func Encode(obj *Object) ([]byte, error) {
	if obj == nil || obj.Spec == nil {
		return nil, fmt.Errorf("config: encode: object or spec is nil")
	}
	apiVersion := obj.APIVersion
	if apiVersion == "" {
		info, ok := LookupKind(obj.Kind)
		if !ok {
			return nil, fmt.Errorf("config: encode %s: unknown kind", obj.Key())
		}
		apiVersion = info.APIVersion()
	}
	spec, err := protojson.Marshal(obj.Spec)
	if err != nil {
		return nil, fmt.Errorf("config: encode %s: spec: %w", obj.Key(), err)
	}
	wm := wireMeta{
		Name: obj.Name, Namespace: obj.Namespace, Labels: obj.Labels, Annotations: obj.Annotations,
		ResourceVersion: obj.ResourceVersion, Generation: obj.Generation,
	}
	if !obj.CreationTimestamp.IsZero() {
		ts := obj.CreationTimestamp.UTC()
		wm.CreationTimestamp = &ts
	}
	js, err := json.Marshal(struct {
		APIVersion string          `json:"apiVersion"`
		Kind       Kind            `json:"kind"`
		Metadata   wireMeta        `json:"metadata"`
		Spec       json.RawMessage `json:"spec"`
	}{apiVersion, obj.Kind, wm, spec})
	if err != nil {
		return nil, fmt.Errorf("config: encode %s: %w", obj.Key(), err)
	}
	out, err := yaml.JSONToYAML(js)
	if err != nil {
		return nil, fmt.Errorf("config: encode %s: yaml: %w", obj.Key(), err)
	}
	return out, nil
}

var (
	dns1123LabelRe     = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)
	dns1123SubdomainRe = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`)
)

// dns1123Subdomain returns why s is not a DNS-1123 subdomain, or "".
func dns1123Subdomain(s string) string {
	if len(s) > 253 {
		return "must be no more than 253 characters"
	}
	if !dns1123SubdomainRe.MatchString(s) {
		return "must be a lower case DNS-1123 subdomain (letters, digits, '-' and '.')"
	}
	return ""
}

// dns1123Label returns why s is not a DNS-1123 label, or "".
func dns1123Label(s string) string {
	if len(s) > 63 {
		return "must be no more than 63 characters"
	}
	if !dns1123LabelRe.MatchString(s) {
		return "must be a lower case DNS-1123 label (letters, digits and '-')"
	}
	return ""
}
