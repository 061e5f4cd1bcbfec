package route

import (
	"errors"
	"strings"
	"time"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
)

// Upstream failures the data path reports to retry and outlier logic.
var (
	ErrConnectFailure = errors.New("upstream connect failure")
	ErrReset          = errors.New("upstream reset")
	ErrRefusedStream  = errors.New("upstream refused stream")
	ErrTimeout        = errors.New("upstream per-try timeout")
)

// RetryOn is a set of retry conditions (Envoy's x-envoy-retry-on tokens).
type RetryOn uint32

// Retry conditions.
const (
	Retry5xx RetryOn = 1 << iota
	RetryGatewayError
	RetryReset
	RetryConnectFailure
	RetryRetriable4xx
	RetryRefusedStream
	RetryRetriableStatusCodes
	RetryEnvoyRateLimited
	RetryGRPCCancelled
	RetryGRPCDeadlineExceeded
	RetryGRPCInternal
	RetryGRPCResourceExhausted
	RetryGRPCUnavailable
)

var retryTokens = map[string]RetryOn{
	"5xx": Retry5xx, "gateway-error": RetryGatewayError, "reset": RetryReset,
	"connect-failure": RetryConnectFailure, "retriable-4xx": RetryRetriable4xx,
	"refused-stream": RetryRefusedStream, "retriable-status-codes": RetryRetriableStatusCodes,
	"envoy-ratelimited": RetryEnvoyRateLimited, "cancelled": RetryGRPCCancelled,
	"deadline-exceeded": RetryGRPCDeadlineExceeded, "internal": RetryGRPCInternal,
	"resource-exhausted": RetryGRPCResourceExhausted, "unavailable": RetryGRPCUnavailable,
}

// RetryPolicy is a compiled retry_policy.
type RetryPolicy struct {
	On            RetryOn
	NumRetries    uint32 // default 1
	PerTryTimeout time.Duration
	StatusCodes   []uint32
	BaseInterval  time.Duration // default 25ms
	MaxInterval   time.Duration // default 10 × base
	// AvoidPreviousHosts is the previous_hosts retry host predicate.
	AvoidPreviousHosts bool
	HostSelectionTries uint32
}

const previousHosts = "envoy.retry_host_predicates.previous_hosts"

func retryPolicy(pb *routev3.RetryPolicy) (*RetryPolicy, error) {
	if pb == nil {
		return nil, nil
	}
	p := &RetryPolicy{NumRetries: 1, BaseInterval: 25 * time.Millisecond, HostSelectionTries: uint32(pb.GetHostSelectionRetryMaxAttempts())}
	for _, tok := range strings.Split(pb.GetRetryOn(), ",") {
		tok = strings.TrimSpace(tok)
		if tok == "" {
			continue
		}
		f, ok := retryTokens[tok]
		if !ok {
			return nil, errf("retry_on %q is not supported", tok)
		}
		p.On |= f
	}
	if v := pb.GetNumRetries(); v != nil {
		p.NumRetries = v.GetValue()
	}
	p.PerTryTimeout = pb.GetPerTryTimeout().AsDuration()
	p.StatusCodes = pb.GetRetriableStatusCodes()
	if b := pb.GetRetryBackOff(); b != nil {
		p.BaseInterval = b.GetBaseInterval().AsDuration()
		if b.GetMaxInterval() != nil {
			p.MaxInterval = b.GetMaxInterval().AsDuration()
		}
	}
	if p.MaxInterval == 0 {
		p.MaxInterval = 10 * p.BaseInterval
	}
	if pb.GetRetryPriority() != nil {
		return nil, errf("retry_priority is not supported")
	}
	for _, hp := range pb.GetRetryHostPredicate() {
		if hp.GetName() != previousHosts {
			return nil, errf("retry_host_predicate %q is not supported", hp.GetName())
		}
		p.AvoidPreviousHosts = true
	}
	if len(pb.GetRetriableHeaders()) > 0 || len(pb.GetRetriableRequestHeaders()) > 0 {
		return nil, errf("retriable_headers are not supported")
	}
	if pb.GetRateLimitedRetryBackOff() != nil {
		return nil, errf("rate_limited_retry_back_off is not supported")
	}
	return p, nil
}

// Retriable reports whether an attempt that ended with HTTP status (0 if
// none) or err should be retried under this policy.
func (p *RetryPolicy) Retriable(status int, err error) bool {
	if p == nil {
		return false
	}
	if err != nil {
		switch {
		case errors.Is(err, ErrConnectFailure):
			return p.On&(RetryConnectFailure|Retry5xx|RetryGatewayError) != 0
		case errors.Is(err, ErrRefusedStream):
			return p.On&(RetryRefusedStream|Retry5xx|RetryReset) != 0
		case errors.Is(err, ErrTimeout):
			return p.On&(Retry5xx|RetryGatewayError) != 0
		default: // reset and other transport errors
			return p.On&(RetryReset|Retry5xx) != 0
		}
	}
	switch {
	case status >= 500 && p.On&Retry5xx != 0:
		return true
	case (status == 502 || status == 503 || status == 504) && p.On&RetryGatewayError != 0:
		return true
	case status == 409 && p.On&RetryRetriable4xx != 0:
		return true
	}
	if p.On&RetryRetriableStatusCodes != 0 {
		for _, c := range p.StatusCodes {
			if int(c) == status {
				return true
			}
		}
	}
	return false
}

// RetriableGRPC reports whether a grpc-status from a response should be
// retried (cancelled 1, deadline-exceeded 4, resource-exhausted 8,
// internal 13, unavailable 14).
func (p *RetryPolicy) RetriableGRPC(code int) bool {
	if p == nil {
		return false
	}
	switch code {
	case 1:
		return p.On&RetryGRPCCancelled != 0
	case 4:
		return p.On&RetryGRPCDeadlineExceeded != 0
	case 8:
		return p.On&RetryGRPCResourceExhausted != 0
	case 13:
		return p.On&RetryGRPCInternal != 0
	case 14:
		return p.On&RetryGRPCUnavailable != 0
	}
	return false
}

// Backoff is Envoy's fully jittered exponential back-off before retry number
// attempt (1-based): uniform in [0, base×2^(attempt-1)), capped at the max
// interval. rnd is a random value.
func (p *RetryPolicy) Backoff(attempt int, rnd uint64) time.Duration {
	base, maxI := 25*time.Millisecond, 250*time.Millisecond
	if p != nil {
		base, maxI = p.BaseInterval, p.MaxInterval
	}
	if base <= 0 {
		return 0
	}
	shift := min(max(attempt-1, 0), 30)
	ceil := base << shift
	if ceil <= 0 || ceil > maxI {
		ceil = maxI
	}
	return time.Duration(rnd % uint64(ceil))
}
