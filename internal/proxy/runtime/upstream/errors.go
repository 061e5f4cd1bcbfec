// Package upstream owns weft-proxy's upstream clusters: compiled Cluster
// config, endpoint sets built from ClusterLoadAssignments, load balancing
// (round robin, least request, random, ring hash, maglev) with priorities and
// locality weights, outlier detection and circuit breakers. Everything on the
// request path is lock-free and allocation-free.
package upstream

import (
	"fmt"
	"strconv"

	"github.com/weftmesh/weft/internal/proxy/fielderr"
)

// FieldError names the field of a Cluster or ClusterLoadAssignment that
// weft-proxy cannot honour; the runtime adds the resource type and name.
type FieldError = fielderr.Error

func fieldErr(field, format string, args ...any) error { return fielderr.New(field, format, args...) }

func errf(format string, args ...any) error { return fmt.Errorf(format, args...) }

func itoa(i int) string { return strconv.Itoa(i) }
