// Package jwtauthn is weft-proxy's JWT authentication: it compiles Envoy's
// envoy.filters.http.jwt_authn config (JwtAuthentication: providers,
// requirement rules) and verifies the tokens of each request against it,
// the way Istio's RequestAuthentication expects. A request without a token
// passes when its requirement allows missing tokens (authorization then
// decides, e.g. on requestPrincipals); a token that does not verify is
// answered 401 with Envoy's text ("Jwt verification fails", ...).
//
// Verified claims are handed to RBAC as the filter's dynamic metadata
// (payload_in_metadata), and header outputs (forward, forward_payload_header,
// claim_to_headers) are returned as mutations for the upstream request.
// Signatures are checked with go-jose (RS, PS, ES, EdDSA); key sets come
// inline, from a file, or from a URL fetched by the proxy itself (KeyCache).
package jwtauthn

import (
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	jwtv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/jwt_authn/v3"

	"github.com/weftmesh/weft/internal/proxy/fielderr"
)

// FilterName is the HTTP filter this package implements.
const FilterName = "envoy.filters.http.jwt_authn"

// Request is what verification reads of a request; *h1.Request and
// *h2.Request implement it.
type Request interface {
	Method() []byte
	Path() []byte
	RawQuery() []byte
	Host() []byte
	Header(name string) ([]byte, bool)
}

// FieldError names the field of a JwtAuthentication weft-proxy cannot honour.
type FieldError = fielderr.Error

func fieldErr(field, format string, args ...any) *FieldError {
	return fielderr.New(field, format, args...)
}

// Filter is one compiled JwtAuthentication.
type Filter struct {
	providers    map[string]*provider
	all          []*provider // sorted by name: allow_missing looks at every provider
	rules        []rule
	bypassCORS   bool
	stripFailure bool
}

type rule struct {
	prefix, path string // exactly one set; prefix "" with path "" never happens
	req          *requirement
	providers    []*provider // every provider whose tokens the requirement looks at
}

type reqKind uint8

const (
	reqProvider reqKind = iota
	reqAny
	reqAll
	reqAllowMissing
	reqAllowMissingOrFailed
)

type requirement struct {
	kind     reqKind
	provider *provider
	children []*requirement
}

// location is where a provider looks for its token.
type location struct {
	kind   locKind
	name   string // header (lower case), query parameter or cookie name
	prefix string // header value prefix
}

type locKind uint8

const (
	locHeader locKind = iota
	locParam
	locCookie
)

type provider struct {
	name           string
	issuer         string
	audiences      []string
	keys           keySource
	forward        bool
	locations      []location
	payloadHeader  string
	metadataKey    string
	spaceDelimited []string
	claimHeaders   []claimHeader
	clockSkew      time.Duration
	requireExp     bool
	cache          *tokenCache
}

type claimHeader struct {
	header string
	claim  string
}

// Envoy's defaults.
const (
	defaultClockSkew = 60 * time.Second
	defaultTimeout   = time.Second // HttpUri.timeout is required by Envoy; used when 0
)

// Compile compiles a JwtAuthentication. Remote key sets are registered
// with cache (which starts fetching them); cache may be nil only when the
// config has no remote_jwks.
func Compile(pb *jwtv3.JwtAuthentication, cache *KeyCache) (*Filter, error) {
	switch {
	case pb.GetFilterStateRules() != nil:
		return nil, fieldErr("filter_state_rules", "not supported")
	case len(pb.GetRequirementMap()) > 0:
		return nil, fieldErr("requirement_map", "not supported (use rules with requires)")
	}
	f := &Filter{providers: map[string]*provider{}, bypassCORS: pb.GetBypassCorsPreflight(), stripFailure: pb.GetStripFailureResponse()}
	for name, p := range pb.GetProviders() {
		cp, err := compileProvider("providers["+strconv.Quote(name)+"]", name, p, cache)
		if err != nil {
			return nil, err
		}
		f.providers[name] = cp
		f.all = append(f.all, cp)
	}
	sort.Slice(f.all, func(i, j int) bool { return f.all[i].name < f.all[j].name })
	for i, r := range pb.GetRules() {
		field := fmt.Sprintf("rules[%d]", i)
		cr, err := f.compileRule(field, r)
		if err != nil {
			return nil, err
		}
		f.rules = append(f.rules, cr)
	}
	return f, nil
}

func compileProvider(field, name string, p *jwtv3.JwtProvider, cache *KeyCache) (*provider, error) {
	switch {
	case p.GetIssuer() == "":
		// Envoy accepts any issuer then; Istio always sets one, and a
		// provider without one could not be told apart from others.
		return nil, fieldErr(field+".issuer", "an issuer is required")
	case p.GetSubjects() != nil:
		return nil, fieldErr(field+".subjects", "not supported")
	case p.GetMaxLifetime() != nil:
		return nil, fieldErr(field+".max_lifetime", "not supported")
	case p.GetHeaderInMetadata() != "":
		return nil, fieldErr(field+".header_in_metadata", "not supported")
	case p.GetFailedStatusInMetadata() != "":
		return nil, fieldErr(field+".failed_status_in_metadata", "not supported")
	case p.GetClearRouteCache():
		return nil, fieldErr(field+".clear_route_cache", "not supported (routes are matched on the request as received)")
	case p.GetPadForwardPayloadHeader():
		return nil, fieldErr(field+".pad_forward_payload_header", "not supported")
	}
	cp := &provider{
		name: name, issuer: p.GetIssuer(), audiences: p.GetAudiences(), forward: p.GetForward(),
		payloadHeader: strings.ToLower(p.GetForwardPayloadHeader()), metadataKey: p.GetPayloadInMetadata(),
		clockSkew: defaultClockSkew, requireExp: p.GetRequireExpiration(), cache: newTokenCache(),
	}
	if s := p.GetClockSkewSeconds(); s > 0 {
		cp.clockSkew = time.Duration(s) * time.Second
	}
	cp.spaceDelimited = p.GetNormalizePayloadInMetadata().GetSpaceDelimitedClaims()
	for i, h := range p.GetFromHeaders() {
		if h.GetName() == "" {
			return nil, fieldErr(fmt.Sprintf("%s.from_headers[%d].name", field, i), "header name is required")
		}
		cp.locations = append(cp.locations, location{kind: locHeader, name: strings.ToLower(h.GetName()), prefix: h.GetValuePrefix()})
	}
	for _, q := range p.GetFromParams() {
		cp.locations = append(cp.locations, location{kind: locParam, name: q})
	}
	for _, c := range p.GetFromCookies() {
		cp.locations = append(cp.locations, location{kind: locCookie, name: c})
	}
	if len(cp.locations) == 0 {
		// Envoy's (and RFC 6750's) defaults.
		cp.locations = []location{{kind: locHeader, name: "authorization", prefix: "Bearer "}, {kind: locParam, name: "access_token"}}
	}
	for i, ch := range p.GetClaimToHeaders() {
		cf := fmt.Sprintf("%s.claim_to_headers[%d]", field, i)
		switch {
		case ch.GetHeaderName() == "":
			return nil, fieldErr(cf+".header_name", "header name is required")
		case len(ch.GetClaimPath()) > 0:
			return nil, fieldErr(cf+".claim_path", "not supported (use claim_name with dots)")
		case ch.GetClaimName() == "":
			return nil, fieldErr(cf+".claim_name", "claim name is required")
		}
		cp.claimHeaders = append(cp.claimHeaders, claimHeader{header: strings.ToLower(ch.GetHeaderName()), claim: ch.GetClaimName()})
	}
	switch src := p.GetJwksSourceSpecifier().(type) {
	case *jwtv3.JwtProvider_LocalJwks:
		b, err := dataSource(src.LocalJwks)
		if err != nil {
			return nil, fieldErr(field+".local_jwks", "%v", err)
		}
		ks, err := parseJWKS(b)
		if err != nil {
			return nil, fieldErr(field+".local_jwks", "%v", err)
		}
		cp.keys = staticKeys{ks}
	case *jwtv3.JwtProvider_RemoteJwks:
		r := src.RemoteJwks
		uri := r.GetHttpUri().GetUri()
		switch {
		case uri == "" || !(strings.HasPrefix(uri, "http://") || strings.HasPrefix(uri, "https://")):
			return nil, fieldErr(field+".remote_jwks.http_uri.uri", "want an http(s) URL, got %q", uri)
		case r.GetRetryPolicy() != nil:
			return nil, fieldErr(field+".remote_jwks.retry_policy", "not supported (failed fetches are retried after 1s)")
		case cache == nil:
			return nil, fieldErr(field+".remote_jwks", "this proxy has no JWKS fetcher")
		}
		timeout := defaultTimeout
		if t := r.GetHttpUri().GetTimeout(); t != nil && t.AsDuration() > 0 {
			timeout = t.AsDuration()
		}
		dur := DefaultCacheDuration
		if d := r.GetCacheDuration(); d != nil && d.AsDuration() > 0 {
			dur = d.AsDuration()
		}
		cp.keys = cache.remote(uri, timeout, dur)
	default:
		return nil, fieldErr(field+".jwks_source_specifier", "local_jwks or remote_jwks is required")
	}
	return cp, nil
}

func dataSource(ds *corev3.DataSource) ([]byte, error) {
	switch s := ds.GetSpecifier().(type) {
	case *corev3.DataSource_InlineString:
		return []byte(s.InlineString), nil
	case *corev3.DataSource_InlineBytes:
		return s.InlineBytes, nil
	case *corev3.DataSource_Filename:
		fi, err := os.Stat(s.Filename)
		if err != nil {
			return nil, err
		}
		if fi.Size() > maxJWKSBytes {
			return nil, fmt.Errorf("%s is larger than %d bytes", s.Filename, maxJWKSBytes)
		}
		return os.ReadFile(s.Filename)
	}
	return nil, fmt.Errorf("data source %T is not supported (inline_string, inline_bytes, filename are)", ds.GetSpecifier())
}

func (f *Filter) compileRule(field string, r *jwtv3.RequirementRule) (rule, error) {
	var cr rule
	m := r.GetMatch()
	switch {
	case len(m.GetHeaders()) > 0 || len(m.GetQueryParameters()) > 0 || m.GetGrpc() != nil || m.GetRuntimeFraction() != nil ||
		m.GetTlsContext() != nil || len(m.GetDynamicMetadata()) > 0:
		return cr, fieldErr(field+".match", "only prefix and path matches are supported")
	case m.GetCaseSensitive() != nil && !m.GetCaseSensitive().GetValue():
		return cr, fieldErr(field+".match.case_sensitive", "case-insensitive matches are not supported")
	}
	switch {
	case m.GetPrefix() != "":
		cr.prefix = m.GetPrefix()
	case m.GetPath() != "":
		cr.path = m.GetPath()
	default:
		return cr, fieldErr(field+".match", "a prefix or path is required")
	}
	req, ok := r.GetRequirementType().(*jwtv3.RequirementRule_Requires)
	if !ok {
		return cr, fieldErr(field+".requirement_type", "only requires is supported")
	}
	var err error
	cr.req, err = f.compileRequirement(field+".requires", req.Requires, 0)
	if err != nil {
		return cr, err
	}
	seen := map[*provider]bool{}
	f.collectProviders(cr.req, &cr.providers, seen)
	sort.Slice(cr.providers, func(i, j int) bool { return cr.providers[i].name < cr.providers[j].name })
	return cr, nil
}

// collectProviders lists the providers whose token locations a requirement
// reads: the named ones, and every provider for allow_missing(_or_failed)
// (Envoy extracts with all of them there).
func (f *Filter) collectProviders(r *requirement, out *[]*provider, seen map[*provider]bool) {
	add := func(p *provider) {
		if !seen[p] {
			seen[p] = true
			*out = append(*out, p)
		}
	}
	switch r.kind {
	case reqProvider:
		add(r.provider)
	case reqAllowMissing, reqAllowMissingOrFailed:
		for _, p := range f.all {
			add(p)
		}
	}
	for _, c := range r.children {
		f.collectProviders(c, out, seen)
	}
}

const maxRequirementDepth = 16

func (f *Filter) compileRequirement(field string, r *jwtv3.JwtRequirement, depth int) (*requirement, error) {
	if depth > maxRequirementDepth {
		return nil, fieldErr(field, "requirements nested deeper than %d", maxRequirementDepth)
	}
	switch t := r.GetRequiresType().(type) {
	case *jwtv3.JwtRequirement_ProviderName:
		p := f.providers[t.ProviderName]
		if p == nil {
			return nil, fieldErr(field+".provider_name", "unknown provider %q", t.ProviderName)
		}
		return &requirement{kind: reqProvider, provider: p}, nil
	case *jwtv3.JwtRequirement_RequiresAny:
		return f.compileList(field+".requires_any", reqAny, t.RequiresAny.GetRequirements(), depth)
	case *jwtv3.JwtRequirement_RequiresAll:
		return f.compileList(field+".requires_all", reqAll, t.RequiresAll.GetRequirements(), depth)
	case *jwtv3.JwtRequirement_AllowMissing:
		return &requirement{kind: reqAllowMissing}, nil
	case *jwtv3.JwtRequirement_AllowMissingOrFailed:
		return &requirement{kind: reqAllowMissingOrFailed}, nil
	case nil:
		return nil, fieldErr(field, "requirement is empty")
	default:
		return nil, fieldErr(field, "requirement %T is not supported", t)
	}
}

func (f *Filter) compileList(field string, k reqKind, rs []*jwtv3.JwtRequirement, depth int) (*requirement, error) {
	if len(rs) < 2 {
		return nil, fieldErr(field+".requirements", "at least two requirements are required")
	}
	out := &requirement{kind: k}
	for i, r := range rs {
		c, err := f.compileRequirement(fmt.Sprintf("%s.requirements[%d]", field, i), r, depth+1)
		if err != nil {
			return nil, err
		}
		out.children = append(out.children, c)
	}
	return out, nil
}

// Status is why a request's JWT failed, with Envoy's text.
type Status uint8

// Statuses, as Envoy's jwt_authn words them.
const (
	StatusOK Status = iota
	StatusMissing
	StatusBadFormat
	StatusVerificationFails
	StatusExpired
	StatusNotYetValid
	StatusUnknownIssuer
	StatusAudienceNotAllowed
	StatusNoMatchingKey
	StatusFetchFailed
)

var statusText = [...]string{
	StatusOK:                 "OK",
	StatusMissing:            "Jwt is missing",
	StatusBadFormat:          "Jwt is not in the form of Header.Payload.Signature with two dots and 3 sections",
	StatusVerificationFails:  "Jwt verification fails",
	StatusExpired:            "Jwt is expired",
	StatusNotYetValid:        "Jwt not yet valid",
	StatusUnknownIssuer:      "Jwt issuer is not configured",
	StatusAudienceNotAllowed: "Audiences in Jwt are not allowed",
	StatusNoMatchingKey:      "Jwks doesn't have key to match kid or alg from Jwt",
	StatusFetchFailed:        "Jwks remote fetch is failed",
}

func (s Status) String() string {
	if int(s) < len(statusText) {
		return statusText[s]
	}
	return "Jwt verification fails"
}

// HTTPStatus is the status Envoy answers with: 403 for a disallowed
// audience, 401 for everything else.
func (s Status) HTTPStatus() int {
	if s == StatusAudienceNotAllowed {
		return 403
	}
	return 401
}

// Failure is a rejected request: status code, body and the
// WWW-Authenticate header value (empty with strip_failure_response).
type Failure struct {
	Status          Status
	Code            int
	Body            string
	WWWAuthenticate string
}

// Header is a request header the upstream request gets.
type Header struct{ Name, Value string }

// Result is what a request that passed carries on.
type Result struct {
	// Metadata is the filter's dynamic metadata: payload_in_metadata key ->
	// claims of each verified token; nil when none was verified.
	Metadata map[string]any
	// Remove lists request headers to remove (tokens not forwarded).
	Remove []string
	// Set lists request headers to set (payload and claim outputs).
	Set []Header
}

// maxTokens bounds how many distinct tokens one request is checked for.
const maxTokens = 4

type found struct {
	token  string
	loc    location
	prov   *provider // verifying provider (ok) or the one that failed
	claims map[string]any
	status Status
}

// Verify checks req's tokens against the first rule matching its path. now
// is the clock for exp/nbf. A request no rule matches passes untouched.
func (f *Filter) Verify(req Request, now time.Time) (Result, *Failure) {
	var res Result
	if f.bypassCORS && isCORSPreflight(req) {
		return res, nil
	}
	r := f.match(req.Path())
	if r == nil {
		return res, nil
	}
	var buf [maxTokens]found
	toks := f.extract(req, r.providers, buf[:0])
	for i := range toks {
		t := &toks[i]
		t.status, t.prov, t.claims = verifyToken(t.token, t.loc, r.providers, now)
	}
	st := evalRequirement(r.req, toks)
	if st != StatusOK {
		return res, f.failure(req, st)
	}
	for i := range toks {
		t := &toks[i]
		if t.status != StatusOK {
			continue
		}
		p := t.prov
		if p.metadataKey != "" {
			if res.Metadata == nil {
				res.Metadata = map[string]any{}
			}
			res.Metadata[p.metadataKey] = normalize(t.claims, p.spaceDelimited)
		}
		if !p.forward && t.loc.kind == locHeader {
			res.Remove = append(res.Remove, t.loc.name)
		}
		if p.payloadHeader != "" {
			res.Set = append(res.Set, Header{Name: p.payloadHeader, Value: payloadOf(t.token)})
		}
		for _, ch := range p.claimHeaders {
			if v, ok := claimString(t.claims, ch.claim); ok {
				res.Set = append(res.Set, Header{Name: ch.header, Value: v})
			}
		}
	}
	return res, nil
}

func (f *Filter) failure(req Request, st Status) *Failure {
	fl := &Failure{Status: st, Code: st.HTTPStatus(), Body: st.String()}
	if f.stripFailure {
		fl.Body = ""
		return fl
	}
	// Envoy's challenge: the realm is the request URL.
	fl.WWWAuthenticate = `Bearer realm="http://` + string(req.Host()) + string(req.Path()) + `"`
	if st != StatusMissing {
		fl.WWWAuthenticate += `, error="invalid_token"`
	}
	return fl
}

func isCORSPreflight(req Request) bool {
	if string(req.Method()) != "OPTIONS" {
		return false
	}
	_, origin := req.Header("origin")
	_, method := req.Header("access-control-request-method")
	return origin && method
}

func (f *Filter) match(path []byte) *rule {
	for i := range f.rules {
		r := &f.rules[i]
		if r.prefix != "" && hasPrefix(path, r.prefix) || r.path != "" && string(path) == r.path {
			return r
		}
	}
	return nil
}

// evalRequirement applies Envoy's requirement semantics to the verified
// (or failed) tokens of a request.
func evalRequirement(r *requirement, toks []found) Status {
	switch r.kind {
	case reqProvider:
		st := StatusMissing
		for i := range toks {
			if toks[i].prov != r.provider {
				continue
			}
			if toks[i].status == StatusOK {
				return StatusOK
			}
			st = toks[i].status
		}
		return st
	case reqAllowMissing:
		for i := range toks {
			if toks[i].status != StatusOK {
				return toks[i].status
			}
		}
		return StatusOK
	case reqAllowMissingOrFailed:
		return StatusOK
	case reqAny:
		st := StatusMissing
		for _, c := range r.children {
			s := evalRequirement(c, toks)
			if s == StatusOK {
				return StatusOK
			}
			if st == StatusMissing {
				st = s
			}
		}
		return st
	case reqAll:
		for _, c := range r.children {
			if s := evalRequirement(c, toks); s != StatusOK {
				return s
			}
		}
		return StatusOK
	}
	return StatusVerificationFails
}
