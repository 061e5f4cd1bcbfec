package xds

import "github.com/weftmesh/weft/internal/model"

// EndpointOnlyChange reports whether next differs from prev only in
// endpoints: the push for it regenerates EDS alone. weftd uses it to keep
// translation warnings (which endpoint-only pushes do not recompute).
func EndpointOnlyChange(prev, next *model.Snapshot) bool { return endpointOnlyChange(prev, next) }
