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

	"github.com/weftmesh/weft/internal/proxy/fielderr"
)

// FieldError names the field of a RouteConfiguration that weft-proxy cannot
// honour; the runtime adds the resource type and name.
type FieldError = fielderr.Error

func fieldErr(field, format string, args ...any) error { return fielderr.New(field, format, args...) }

func errf(format string, args ...any) error { return fmt.Errorf(format, args...) }

func itoa(i int) string { return strconv.Itoa(i) }
