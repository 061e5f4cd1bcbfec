// Package houserules holds tests that enforce Weft's code rules (package
// docs present, weft-proxy stays lean) instead of leaving them to prose.
package houserules
