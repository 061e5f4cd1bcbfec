// Package route owns weft-proxy's compiled HTTP route tables: virtual-host
// selection with Envoy's domain rules, route matching (path, headers, query
// parameters, runtime fractions), route actions and their policies (weighted
// clusters, redirects, direct responses, retries, timeouts, header
// mutations, rewrites, mirrors, hash policies, fault injection and CORS).
// Selection is allocation-free.
package route

import (
	"fmt"
	"strconv"
)

// FieldError names the field of a RouteConfiguration that weft-proxy cannot
// honour; the runtime adds the resource type and name.
type FieldError struct {
	Field string
	Msg   string
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Msg }

func fieldErr(field, format string, args ...any) error {
	return &FieldError{Field: field, Msg: fmt.Sprintf(format, args...)}
}

func errf(format string, args ...any) error { return fmt.Errorf(format, args...) }

func itoa(i int) string { return strconv.Itoa(i) }
