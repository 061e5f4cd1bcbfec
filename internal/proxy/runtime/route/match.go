package route

import (
	"bytes"
	"regexp"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
)

type strKind uint8

const (
	strExact strKind = iota
	strPrefix
	strSuffix
	strContains
	strRegex
)

// StringMatcher is a compiled envoy.type.matcher.v3.StringMatcher. Regexes
// are RE2 (Go regexp), compiled once, and must match the whole input.
type StringMatcher struct {
	kind       strKind
	value      string
	lower      string
	re         *regexp.Regexp
	ignoreCase bool
}

// NewStringMatcher compiles an envoy.type.matcher.v3.StringMatcher.
func NewStringMatcher(m *matcherv3.StringMatcher) (StringMatcher, error) {
	sm := StringMatcher{ignoreCase: m.GetIgnoreCase()}
	switch p := m.GetMatchPattern().(type) {
	case *matcherv3.StringMatcher_Exact:
		sm.kind, sm.value = strExact, p.Exact
	case *matcherv3.StringMatcher_Prefix:
		sm.kind, sm.value = strPrefix, p.Prefix
	case *matcherv3.StringMatcher_Suffix:
		sm.kind, sm.value = strSuffix, p.Suffix
	case *matcherv3.StringMatcher_Contains:
		sm.kind, sm.value = strContains, p.Contains
	case *matcherv3.StringMatcher_SafeRegex:
		re, err := compileFullRegex(p.SafeRegex)
		if err != nil {
			return sm, err
		}
		sm.kind, sm.re = strRegex, re
	default:
		return sm, errf("match pattern %T is not supported", p)
	}
	sm.lower = string(bytes.ToLower([]byte(sm.value)))
	return sm, nil
}

func compileFullRegex(r *matcherv3.RegexMatcher) (*regexp.Regexp, error) {
	re, err := regexp.Compile("^(?:" + r.GetRegex() + ")$")
	if err != nil {
		return nil, errf("invalid RE2 regex %q: %v", r.GetRegex(), err)
	}
	return re, nil
}

// Match reports whether b matches. It does not allocate.
func (m *StringMatcher) Match(b []byte) bool {
	switch m.kind {
	case strExact:
		if m.ignoreCase {
			return len(b) == len(m.value) && equalFold(b, m.value)
		}
		return string(b) == m.value
	case strPrefix:
		if len(b) < len(m.value) {
			return false
		}
		if m.ignoreCase {
			return equalFold(b[:len(m.value)], m.value)
		}
		return string(b[:len(m.value)]) == m.value
	case strSuffix:
		if len(b) < len(m.value) {
			return false
		}
		t := b[len(b)-len(m.value):]
		if m.ignoreCase {
			return equalFold(t, m.value)
		}
		return string(t) == m.value
	case strContains:
		if m.ignoreCase {
			return containsFold(b, m.lower)
		}
		return containsString(b, m.value)
	case strRegex:
		return m.re.Match(b)
	}
	return false
}

// MatchString is Match for a string.
func (m *StringMatcher) MatchString(s string) bool {
	if m.kind == strRegex {
		return m.re.MatchString(s)
	}
	return m.Match([]byte(s))
}

// equalFold is ASCII case-insensitive equality of b and s without converting
// s (a conversion of a long string would allocate on the hot path).
func equalFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := 0; i < len(b); i++ {
		x, y := b[i], s[i]
		if x == y {
			continue
		}
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

func containsString(b []byte, s string) bool {
	if len(s) == 0 {
		return true
	}
	for i := 0; i+len(s) <= len(b); i++ {
		if b[i] == s[0] && string(b[i:i+len(s)]) == s {
			return true
		}
	}
	return false
}

func containsFold(b []byte, lower string) bool {
	n := len(lower)
	for i := 0; i+n <= len(b); i++ {
		ok := true
		for j := 0; j < n; j++ {
			c := b[i+j]
			if 'A' <= c && c <= 'Z' {
				c += 'a' - 'A'
			}
			if c != lower[j] {
				ok = false
				break
			}
		}
		if ok {
			return true
		}
	}
	return false
}

type pseudo uint8

const (
	pseudoNone pseudo = iota
	pseudoMethod
	pseudoAuthority
	pseudoPath
)

type headerMatcher struct {
	name    string
	pseudo  pseudo
	sm      StringMatcher
	present int8 // 0: string match; 1: must be present; -1: must be absent
	invert  bool
	missing bool // treat_missing_header_as_empty
}

func compileHeaderMatcher(h *routev3.HeaderMatcher) (headerMatcher, error) {
	hm := headerMatcher{name: h.GetName(), invert: h.GetInvertMatch(), missing: h.GetTreatMissingHeaderAsEmpty()}
	switch h.GetName() {
	case ":method":
		hm.pseudo = pseudoMethod
	case ":authority", "host":
		hm.pseudo = pseudoAuthority
	case ":path":
		hm.pseudo = pseudoPath
	}
	var err error
	switch s := h.GetHeaderMatchSpecifier().(type) {
	case *routev3.HeaderMatcher_StringMatch:
		hm.sm, err = NewStringMatcher(s.StringMatch)
	case *routev3.HeaderMatcher_ExactMatch:
		hm.sm = StringMatcher{kind: strExact, value: s.ExactMatch}
	case *routev3.HeaderMatcher_PrefixMatch:
		hm.sm = StringMatcher{kind: strPrefix, value: s.PrefixMatch}
	case *routev3.HeaderMatcher_SuffixMatch:
		hm.sm = StringMatcher{kind: strSuffix, value: s.SuffixMatch}
	case *routev3.HeaderMatcher_ContainsMatch:
		hm.sm = StringMatcher{kind: strContains, value: s.ContainsMatch}
	case *routev3.HeaderMatcher_SafeRegexMatch:
		var re *regexp.Regexp
		re, err = compileFullRegex(s.SafeRegexMatch)
		hm.sm = StringMatcher{kind: strRegex, re: re}
	case *routev3.HeaderMatcher_PresentMatch:
		hm.present = -1
		if s.PresentMatch {
			hm.present = 1
		}
	case nil:
		hm.present = 1 // Envoy: no specifier means "header is present"
	default:
		err = errf("header match %T is not supported", s)
	}
	return hm, err
}

func (hm *headerMatcher) match(host, path, method []byte, header func(string) ([]byte, bool)) bool {
	var v []byte
	ok := true
	switch hm.pseudo {
	case pseudoMethod:
		v = method
	case pseudoAuthority:
		v = host
	case pseudoPath:
		v = path
	default:
		if header == nil {
			ok = false
		} else {
			v, ok = header(hm.name)
		}
	}
	var r bool
	switch {
	case hm.present == 1:
		r = ok
	case hm.present == -1:
		r = !ok
	case !ok && !hm.missing:
		r = false
	default:
		r = hm.sm.Match(v)
	}
	return r != hm.invert
}

type queryMatcher struct {
	name    string
	sm      StringMatcher
	present bool
}

func compileQueryMatcher(q *routev3.QueryParameterMatcher) (queryMatcher, error) {
	qm := queryMatcher{name: q.GetName()}
	switch s := q.GetQueryParameterMatchSpecifier().(type) {
	case *routev3.QueryParameterMatcher_StringMatch:
		sm, err := NewStringMatcher(s.StringMatch)
		if err != nil {
			return qm, err
		}
		qm.sm = sm
	case *routev3.QueryParameterMatcher_PresentMatch:
		qm.present = s.PresentMatch
		if !s.PresentMatch {
			return qm, errf("present_match: false is not supported")
		}
	default:
		return qm, errf("query parameter match %T is not supported", s)
	}
	return qm, nil
}

func (qm *queryMatcher) match(query []byte) bool {
	v, ok := QueryParam(query, qm.name)
	if !ok {
		return false
	}
	if qm.present {
		return true
	}
	return qm.sm.Match(v)
}

// QueryParam returns the raw (undecoded) value of the first parameter named
// name in a query string without its leading '?'. It does not allocate.
func QueryParam(query []byte, name string) ([]byte, bool) {
	for len(query) > 0 {
		var kv []byte
		if i := bytes.IndexByte(query, '&'); i >= 0 {
			kv, query = query[:i], query[i+1:]
		} else {
			kv, query = query, nil
		}
		k, v := kv, []byte(nil)
		if i := bytes.IndexByte(kv, '='); i >= 0 {
			k, v = kv[:i], kv[i+1:]
		}
		if string(k) == name {
			return v, true
		}
	}
	return nil, false
}
