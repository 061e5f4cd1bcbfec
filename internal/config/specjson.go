package config

import (
	"fmt"

	"google.golang.org/protobuf/encoding/protojson"
)

// SpecJSON renders an object's spec as JSON with Istio's camelCase field names.
func SpecJSON(o *Object) ([]byte, error) {
	if o.Spec == nil {
		return []byte("{}"), nil
	}
	b, err := protojson.MarshalOptions{UseProtoNames: false}.Marshal(o.Spec)
	if err != nil {
		return nil, fmt.Errorf("config: marshal %s spec: %w", o.Key(), err)
	}
	return b, nil
}
