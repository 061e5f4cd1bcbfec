// Package e2e holds end-to-end tests: real weftd, real clients (grpc-go's xDS
// resolver, weftctl), real sockets on loopback.
package e2e
