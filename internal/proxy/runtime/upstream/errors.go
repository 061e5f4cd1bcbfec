// Package upstream owns weft-proxy's upstream clusters: compiled Cluster
// config, endpoint sets built from ClusterLoadAssignments, load balancing
// (round robin, least request, random, ring hash, maglev) with priorities and
// locality weights, outlier detection and circuit breakers. Everything on the
// request path is lock-free and allocation-free.
package upstream

import (
	"fmt"
	"strconv"
)

// FieldError names the field of a Cluster or ClusterLoadAssignment that
// weft-proxy cannot honour; the runtime adds the resource type and name.
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
