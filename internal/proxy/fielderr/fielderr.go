// Package fielderr is the error every weft-proxy config compiler (routes,
// clusters, RBAC, jwt_authn) returns for a field it cannot honour. One type,
// so the runtime turns any of them into a NACK detail with the field path
// prefixed by where the config sits, without knowing which compiler failed.
package fielderr

import "fmt"

// Error names the field (relative to the compiled message) and what is
// wrong with it. Field may be empty when the whole message is at fault.
type Error struct {
	Field string
	Msg   string
}

func (e *Error) Error() string {
	if e.Field == "" {
		return e.Msg
	}
	return e.Field + ": " + e.Msg
}

// New returns an *Error with a formatted message.
func New(field, format string, args ...any) *Error {
	return &Error{Field: field, Msg: fmt.Sprintf(format, args...)}
}
