package controlplane

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"github.com/weftmesh/weft/internal/api"
	"github.com/weftmesh/weft/internal/ca"
)

// newCA picks the signer (a plugged-in CA from cacerts files when they exist,
// else the self-signed root kept in the store) and builds the CA.
func (s *Server) newCA() (*ca.CA, error) {
	dir := s.cfg.CACertsDir
	if dir == "" {
		dir = filepath.Join(s.cfg.DataDir, "cacerts")
	}
	var signer ca.Signer
	if _, err := os.Stat(filepath.Join(dir, ca.CACertFile)); err == nil {
		fs, err := ca.LoadCACerts(dir, nil)
		if err != nil {
			return nil, fmt.Errorf("weftd: plugged-in CA from %s: %w", dir, err)
		}
		signer = fs
		s.log.Info("CA: using plugged-in CA files", "dir", dir)
	} else {
		ss, err := ca.NewSelfSigned(ca.SelfSignedConfig{KV: s.store, TrustDomain: s.cfg.Mesh.TrustDomain, MaxLeafTTL: s.cfg.MaxCertTTL})
		if err != nil {
			return nil, fmt.Errorf("weftd: self-signed CA: %w", err)
		}
		signer = ss
	}
	authority, err := ca.New(ca.Config{
		TrustDomain: s.cfg.Mesh.TrustDomain, Signer: signer, KV: s.store,
		DefaultTTL: s.cfg.CertTTL, MaxTTL: s.cfg.MaxCertTTL,
		Registerer: s.registry, Logger: s.cfg.Logger,
	})
	if err != nil {
		return nil, fmt.Errorf("weftd: CA: %w", err)
	}
	return authority, nil
}

// startSecure serves the CA and xDS over TLS on the secure address (Istio's
// 15012). xDS streams must authenticate with a mesh certificate or a
// bootstrap token; the CA service authenticates each request itself.
func (s *Server) startSecure(errc chan<- error) error {
	ln, err := net.Listen("tcp", s.cfg.SecureAddr)
	if err != nil {
		return fmt.Errorf("weftd: secure listener %s: %w", s.cfg.SecureAddr, err)
	}
	s.SecureAddr = ln.Addr()
	dns := []string{"localhost", "weftd", "weftd." + s.cfg.Mesh.RootNamespace + ".svc", "istiod." + s.cfg.Mesh.RootNamespace + ".svc"}
	ips := []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}
	if h, _, err := net.SplitHostPort(s.SecureAddr.String()); err == nil {
		if ip := net.ParseIP(h); ip != nil && !ip.IsUnspecified() && !ip.IsLoopback() {
			ips = append(ips, ip)
		}
	}
	serving, err := s.ca.ServingCertificate(dns, ips)
	if err != nil {
		return fmt.Errorf("weftd: serving certificate: %w", err)
	}
	s.secureServer = grpc.NewServer(append(grpcServerOptions(),
		grpc.Creds(credentials.NewTLS(s.ca.ServerTLSConfig(serving))),
		grpc.ChainStreamInterceptor(s.authenticateXDS),
	)...)
	s.ca.Register(s.secureServer)
	s.xds.Register(s.secureServer)
	go func() { errc <- s.secureServer.Serve(ln) }()
	return nil
}

// authenticateXDS requires a mesh identity on xDS streams of the secure port.
func (s *Server) authenticateXDS(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	if strings.HasPrefix(info.FullMethod, "/envoy.service.") {
		grant, err := s.ca.AuthenticateContext(ss.Context())
		if err != nil {
			s.log.Warn("xDS stream refused: no valid mesh certificate or bootstrap token", "method", info.FullMethod, "err", err)
			return status.Error(codes.Unauthenticated, "xDS on the secure port needs a mesh certificate or a bootstrap token: "+err.Error())
		}
		// The xDS connect hook (auto-registration) checks the proxy against it.
		ss = grantStream{ServerStream: ss, ctx: context.WithValue(ss.Context(), grantKey{}, grant)}
	}
	return handler(srv, ss)
}

// caHandlers are the admin endpoints of the CA, mounted behind the admin token.
func (s *Server) caHandlers() map[string]http.Handler {
	return map[string]http.Handler{
		"POST " + api.PathTokens: s.ca.TokenHandler(),
		"GET " + api.PathCABundle: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/x-pem-file")
			_, _ = w.Write(s.ca.TrustBundlePEM())
		}),
		"POST " + api.PathCARotate: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			s.caAction(w, r, s.ca.RotateRoot, "root rotated: new certificates are signed by the new root; the bundle carries both until the old one is retired")
		}),
		"POST " + api.PathCARetire: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			s.caAction(w, r, s.ca.RetireRoot, "old root retired: the bundle carries only the current root")
		}),
	}
}

func (s *Server) caAction(w http.ResponseWriter, r *http.Request, f func(context.Context) error, ok string) {
	if err := f(r.Context()); err != nil {
		http.Error(w, err.Error(), http.StatusConflict)
		return
	}
	s.log.Info(ok)
	_, _ = w.Write([]byte(ok + "\n"))
}
