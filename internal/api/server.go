package api

import (
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"

	"google.golang.org/protobuf/proto"

	"github.com/weftmesh/weft/internal/config"
)

// maxApplyBytes bounds one apply request; a mesh's whole config is far smaller.
const maxApplyBytes = 16 << 20

// Store is the writable config source the API edits (the embedded store).
type Store interface {
	config.Source
	config.Writer
}

// ServerConfig wires the API to weftd.
type ServerConfig struct {
	Store Store
	// Snapshot returns the config in effect (all sources merged).
	Snapshot func() *config.Snapshot
	// Proxies returns the xDS status of connected proxies, marshalled as JSON.
	Proxies func() any
	// Extra returns further diagnostics to list with the config's own
	// (translation warnings: config some proxies cannot get).
	Extra func() config.Diagnostics
	// Handlers are more admin endpoints (pattern -> handler), served behind
	// the same admin-token check (the CA's token minting, root rotation).
	Handlers map[string]http.Handler
	// Token is the admin credential every request must present as "Authorization: Bearer <token>".
	Token string
	// Version describes the server; called per request (addresses are known only once bound).
	Version func() Version
	Logger  *slog.Logger
}

// Server serves the config API.
type Server struct {
	cfg ServerConfig
	log *slog.Logger
}

// NewServer returns the API server.
func NewServer(cfg ServerConfig) *Server {
	l := cfg.Logger
	if l == nil {
		l = slog.Default()
	}
	return &Server{cfg: cfg, log: l.With("component", "api")}
}

// Register mounts the API on mux.
func (s *Server) Register(mux *http.ServeMux) {
	mux.Handle("GET "+PathObjects, s.auth(s.handleObjects))
	mux.Handle("POST "+PathApply, s.auth(s.handleApply))
	mux.Handle("POST "+PathDelete, s.auth(s.handleDelete))
	mux.Handle("GET "+PathDiagnostics, s.auth(s.handleDiagnostics))
	mux.Handle("GET "+PathProxies, s.auth(s.handleProxies))
	mux.Handle("GET "+PathVersion, s.auth(s.handleVersion))
	for pattern, h := range s.cfg.Handlers {
		mux.Handle(pattern, s.auth(h.ServeHTTP))
	}
}

func (s *Server) auth(h http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok || s.cfg.Token == "" || subtle.ConstantTimeCompare([]byte(got), []byte(s.cfg.Token)) != 1 {
			s.log.Warn("config API request refused: missing or wrong admin token", "remote", r.RemoteAddr, "path", r.URL.Path)
			writeError(w, http.StatusUnauthorized, "missing or wrong admin token: weftctl reads it from <data-dir>/admin.token (use --data-dir or --token-file)", nil)
			return
		}
		h(w, r)
	})
}

func (s *Server) handleVersion(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, s.cfg.Version())
}

func (s *Server) handleObjects(w http.ResponseWriter, r *http.Request) {
	snap := s.cfg.Snapshot()
	q := r.URL.Query()
	var kind config.Kind
	if k := q.Get("kind"); k != "" {
		info, ok := config.ResolveKindName(k)
		if !ok {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("unknown kind %q; known kinds: %s", k, kindNames()), nil)
			return
		}
		kind = info.Kind
	}
	ns, name := q.Get("namespace"), q.Get("name")
	out := ObjectList{Objects: []Object{}}
	if snap != nil {
		out.ConfigVersion = snap.Version
	}
	for _, o := range snap.All() {
		if kind != "" && o.Kind != kind {
			continue
		}
		if ns != "" && o.Namespace != ns {
			continue
		}
		if name != "" && o.Name != name {
			continue
		}
		y, err := config.Encode(o)
		if err != nil {
			writeError(w, http.StatusInternalServerError, fmt.Sprintf("encode %s: %v", o.Key(), err), nil)
			return
		}
		out.Objects = append(out.Objects, Object{Kind: o.Kind, Namespace: o.Namespace, Name: o.Name,
			ResourceVersion: o.ResourceVersion, Created: o.CreationTimestamp, Origin: o.Origin, YAML: string(y)})
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) handleApply(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, maxApplyBytes+1))
	if err != nil {
		writeError(w, http.StatusBadRequest, "read body: "+err.Error(), nil)
		return
	}
	if len(body) > maxApplyBytes {
		writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("apply body over %d bytes", maxApplyBytes), nil)
		return
	}
	file := r.URL.Query().Get("file")
	dryRun := r.URL.Query().Get("dryRun") == "true"
	objs, diags := config.Decode(body, config.Origin{Source: "api", File: file})
	for _, o := range objs {
		diags = append(diags, config.Validate(o)...)
	}
	if diags.HasErrors() {
		writeError(w, http.StatusUnprocessableEntity, "config rejected, nothing was applied", diags)
		return
	}
	if len(objs) == 0 {
		writeError(w, http.StatusBadRequest, "no objects in input", diags)
		return
	}
	// Refuse objects owned by another source and cross-object conflicts the
	// new objects would introduce, so a bad apply never displaces good config.
	snap := s.cfg.Snapshot()
	if conflicts := s.conflicts(snap, objs); len(conflicts) > 0 {
		writeError(w, http.StatusConflict, "config conflicts with config in effect, nothing was applied", append(diags, conflicts...))
		return
	}
	current := map[config.Key]*config.Object{}
	for _, o := range s.cfg.Store.Contents().Objects {
		current[o.Key()] = o
	}
	resp := ApplyResponse{Diagnostics: diags, DryRun: dryRun}
	for _, o := range objs {
		action := "created"
		if old, ok := current[o.Key()]; ok {
			action = "configured"
			if proto.Equal(old.Spec, o.Spec) && mapsEqual(old.Labels, o.Labels) && mapsEqual(old.Annotations, o.Annotations) {
				action = "unchanged"
			}
		}
		resp.Results = append(resp.Results, ApplyResult{Kind: o.Kind, Namespace: o.Namespace, Name: o.Name, Action: action})
	}
	if !dryRun {
		more, err := s.cfg.Store.Apply(r.Context(), objs)
		resp.Diagnostics = append(resp.Diagnostics, more...)
		if err != nil {
			writeError(w, http.StatusUnprocessableEntity, "apply: "+err.Error(), resp.Diagnostics)
			return
		}
		for _, res := range resp.Results {
			if res.Action != "unchanged" {
				s.log.Info("config applied", "kind", res.Kind, "namespace", res.Namespace, "name", res.Name, "action", res.Action)
			}
		}
	}
	writeJSON(w, http.StatusOK, resp)
}

// conflicts reports error diagnostics that applying objs would add.
func (s *Server) conflicts(snap *config.Snapshot, objs []*config.Object) config.Diagnostics {
	newKeys := map[config.Key]bool{}
	for _, o := range objs {
		newKeys[o.Key()] = true
		if cur, ok := snap.Get(o.Key()); ok && cur.Origin.Source != "" && cur.Origin.Source != s.cfg.Store.Name() {
			return config.Diagnostics{{Severity: config.SeverityError, Key: o.Key(), Origin: o.Origin,
				Message: fmt.Sprintf("already defined by the %s source (%s); change it there", cur.Origin.Source, cur.Origin)}}
		}
	}
	merged := make([]*config.Object, 0, snap.Len()+len(objs))
	for _, o := range snap.All() {
		if !newKeys[o.Key()] {
			merged = append(merged, o)
		}
	}
	merged = append(merged, objs...)
	_, diags := config.CrossValidate(merged)
	var out config.Diagnostics
	for _, d := range diags {
		if d.Severity == config.SeverityError && newKeys[d.Key] {
			out = append(out, d)
		}
	}
	return out
}

func (s *Server) handleDelete(w http.ResponseWriter, r *http.Request) {
	var req DeleteRequest
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&req); err != nil {
		writeError(w, http.StatusBadRequest, "decode delete request: "+err.Error(), nil)
		return
	}
	snap := s.cfg.Snapshot()
	var resp DeleteResponse
	for _, k := range req.Keys {
		if cur, ok := snap.Get(k); ok && cur.Origin.Source != s.cfg.Store.Name() {
			resp.Errors = append(resp.Errors, fmt.Sprintf("%s is defined by the %s source (%s); remove it there", k, cur.Origin.Source, cur.Origin))
			continue
		}
		err := s.cfg.Store.Delete(r.Context(), k)
		switch {
		case errors.Is(err, config.ErrNotFound):
			resp.Errors = append(resp.Errors, fmt.Sprintf("%s not found", k))
		case err != nil:
			resp.Errors = append(resp.Errors, fmt.Sprintf("%s: %v", k, err))
		default:
			resp.Deleted = append(resp.Deleted, k)
			s.log.Info("config deleted", "kind", k.Kind, "namespace", k.Namespace, "name", k.Name)
		}
	}
	// Per-key outcomes are in the body; the request itself succeeded.
	writeJSON(w, http.StatusOK, resp)
}

func (s *Server) handleDiagnostics(w http.ResponseWriter, r *http.Request) {
	snap := s.cfg.Snapshot()
	out := DiagnosticList{Diagnostics: config.Diagnostics{}}
	if snap != nil {
		out.ConfigVersion = snap.Version
		out.Diagnostics = append(out.Diagnostics, snap.Diagnostics...)
	}
	if s.cfg.Extra != nil {
		out.Diagnostics = append(out.Diagnostics, s.cfg.Extra()...)
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) handleProxies(w http.ResponseWriter, r *http.Request) {
	if s.cfg.Proxies == nil {
		writeJSON(w, http.StatusOK, []any{})
		return
	}
	writeJSON(w, http.StatusOK, s.cfg.Proxies())
}

func kindNames() string {
	var names []string
	for _, k := range config.Kinds() {
		names = append(names, string(k.Kind))
	}
	return strings.Join(names, ", ")
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if bv, ok := b[k]; !ok || bv != v {
			return false
		}
	}
	return true
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

func writeError(w http.ResponseWriter, status int, msg string, diags config.Diagnostics) {
	writeJSON(w, status, Error{Message: msg, Diagnostics: diags})
}
