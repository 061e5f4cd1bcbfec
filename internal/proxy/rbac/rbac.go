// Package rbac is weft-proxy's authorization engine: it compiles Envoy's
// RBAC configuration (envoy.config.rbac.v3.RBAC, as carried by the HTTP
// filter envoy.filters.http.rbac and the network filter
// envoy.filters.network.rbac) into a tree of matchers evaluated per request
// or per connection, without allocating.
//
// Only the subset weftd generates from Istio AuthorizationPolicies is
// compiled (and_rules/or_rules/not_rule/any, header, url_path,
// destination_ip, destination_port(_range), requested_server_name,
// direct_remote_ip, remote_ip, authenticated.principal_name and metadata
// of envoy.filters.http.jwt_authn); anything else is an error naming the
// field, which the xDS client turns into a NACK. The caller decides what a
// denial looks like (HTTP 403 "RBAC: access denied", or closing a TCP
// connection); audit (action LOG) and shadow results are logged here.
package rbac

import (
	"context"
	"log/slog"
	"net/netip"
	"sort"
)

// Filter names, as they appear in HTTP connection managers and filter chains.
const (
	HTTPFilterName    = "envoy.filters.http.rbac"
	NetworkFilterName = "envoy.filters.network.rbac"
	// JWTMetadataNamespace is the dynamic-metadata namespace of
	// envoy.filters.http.jwt_authn, the only metadata RBAC can match.
	JWTMetadataNamespace = "envoy.filters.http.jwt_authn"
)

// DeniedBody is what Envoy answers a request its RBAC filter denied (with
// status 403); clients and tests written against Envoy look for it.
const DeniedBody = "RBAC: access denied"

// Action is what a matching policy means.
type Action uint8

// Actions of envoy.config.rbac.v3.RBAC.
const (
	// Allow lets a request through only when some policy matches.
	Allow Action = iota
	// Deny rejects a request when some policy matches.
	Deny
	// Log never rejects; a matching request is logged (Istio's AUDIT).
	Log
)

func (a Action) String() string {
	switch a {
	case Deny:
		return "DENY"
	case Log:
		return "LOG"
	}
	return "ALLOW"
}

// Input is everything a policy can look at. The connection fields are
// always set; HTTP is nil for a TCP connection (network filter).
type Input struct {
	// Principal is the verified SPIFFE ID (URI SAN) of the mTLS peer, ""
	// when the connection is not mutual TLS.
	Principal string
	// Source is the downstream (directly connected) address; Remote the
	// original client address, which weft-proxy takes to be the same (it
	// neither trusts X-Forwarded-For nor speaks the PROXY protocol).
	Source netip.Addr
	Remote netip.Addr
	// Destination is the local address the connection was made to (the
	// original destination of a captured connection).
	Destination netip.AddrPort
	// SNI is the server name of the TLS connection the proxy terminated.
	SNI string
	// HTTP is the request, nil for a TCP connection.
	HTTP HTTPRequest
	// JWT is the dynamic metadata of envoy.filters.http.jwt_authn: for each
	// verified token, its provider's payload_in_metadata key -> claims.
	JWT map[string]any
}

// HTTPRequest is what HTTP matchers read; *h1.Request and *h2.Request
// implement it.
type HTTPRequest interface {
	Method() []byte
	// Path is the request path without the query (url_path matches it).
	Path() []byte
	// Target is the raw request target, path and query (the :path header).
	Target() []byte
	Host() []byte
	Header(name string) ([]byte, bool)
}

// Engine is one compiled envoy.config.rbac.v3.RBAC: an action and its
// policies, in name order.
type Engine struct {
	action   Action
	policies []policy
}

type policy struct {
	name        string
	permissions []node // any of
	principals  []node // any of
}

// Action returns the engine's action.
func (e *Engine) Action() Action { return e.action }

// Match returns the name of the first policy (by name) whose permissions
// and principals both match in; ok is false when none does.
func (e *Engine) Match(in *Input) (name string, ok bool) {
	for i := range e.policies {
		p := &e.policies[i]
		if anyMatch(p.permissions, in) && anyMatch(p.principals, in) {
			return p.name, true
		}
	}
	return "", false
}

// Allowed applies the engine's action: ALLOW allows only a matched request,
// DENY only an unmatched one, LOG everything. policy is the matched policy.
func (e *Engine) Allowed(in *Input) (allowed bool, policy string) {
	name, matched := e.Match(in)
	switch e.action {
	case Allow:
		return matched, name
	case Deny:
		return !matched, name
	}
	return true, name
}

// Filter is one compiled RBAC filter: enforced rules (nil: none, every
// request passes) and shadow rules that are evaluated and logged only.
type Filter struct {
	// Name identifies the filter in logs: the HTTP filter name, or the
	// network filter's stat_prefix.
	Name   string
	rules  *Engine
	shadow *Engine
}

// Rules returns the enforced engine (nil when the filter has only shadow rules).
func (f *Filter) Rules() *Engine { return f.rules }

// Shadow returns the shadow engine, nil when there is none.
func (f *Filter) Shadow() *Engine { return f.shadow }

// Check evaluates in against the filter and reports whether it may pass.
// Audit (LOG) matches and shadow results are logged on log (component
// rbac) at info level; denials at debug level. log may be nil.
func (f *Filter) Check(in *Input, log *slog.Logger) bool {
	allowed := true
	if f.rules != nil {
		var name string
		allowed, name = f.rules.Allowed(in)
		switch {
		case f.rules.action == Log && name != "":
			logDecision(log, slog.LevelInfo, "rbac audit", f, in, "policy", name)
		case !allowed:
			logDecision(log, slog.LevelDebug, "rbac denied", f, in, "policy", name, "action", f.rules.action.String())
		}
	}
	if f.shadow != nil {
		ok, name := f.shadow.Allowed(in)
		result := "allowed"
		if !ok {
			result = "denied"
		}
		logDecision(log, slog.LevelInfo, "rbac shadow", f, in, "shadow_result", result, "shadow_policy", name,
			"action", f.shadow.action.String())
	}
	return allowed
}

// Allowed reports whether in passes every filter, in order (Envoy runs
// the RBAC filters of a chain one after another and stops at a denial).
func Allowed(filters []*Filter, in *Input, log *slog.Logger) bool {
	for _, f := range filters {
		if !f.Check(in, log) {
			return false
		}
	}
	return true
}

func logDecision(log *slog.Logger, level slog.Level, msg string, f *Filter, in *Input, kv ...any) {
	if log == nil {
		log = slog.Default()
	}
	ctx := context.Background()
	if !log.Enabled(ctx, level) {
		return
	}
	attrs := []any{"component", "rbac", "filter", f.Name}
	attrs = append(attrs, kv...)
	attrs = append(attrs, "principal", in.Principal, "source", in.Source.String(), "destination", in.Destination.String())
	if in.HTTP != nil {
		attrs = append(attrs, "method", string(in.HTTP.Method()), "path", string(in.HTTP.Path()), "host", string(in.HTTP.Host()))
	}
	log.Log(ctx, level, msg, attrs...)
}

func sortPolicies(ps []policy) {
	sort.Slice(ps, func(i, j int) bool { return ps[i].name < ps[j].name })
}
