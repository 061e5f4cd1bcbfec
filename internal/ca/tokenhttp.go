package ca

import (
	"encoding/json"
	"net/http"
	"time"
)

// TokenRequest is the JSON body TokenHandler accepts (weftctl token create).
type TokenRequest struct {
	Namespace      string `json:"namespace"`
	ServiceAccount string `json:"serviceAccount"`
	WorkloadGroup  string `json:"workloadGroup,omitempty"`
	// TTL is a Go duration ("1h", "30m"); empty means 1h.
	TTL       string `json:"ttl,omitempty"`
	SingleUse bool   `json:"singleUse,omitempty"`
}

// TokenResponse is TokenHandler's answer. Token is a secret.
type TokenResponse struct {
	Token    string    `json:"token"`
	ID       string    `json:"id"`
	Identity string    `json:"identity"`
	Expires  time.Time `json:"expires"`
}

// TokenHandler serves POST requests minting bootstrap tokens. It does no
// authorization of its own: mount it behind weftd's admin-token check.
func (c *CA) TokenHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			http.Error(w, "use POST", http.StatusMethodNotAllowed)
			return
		}
		if c.tokens == nil {
			http.Error(w, "bootstrap tokens are disabled (no store)", http.StatusServiceUnavailable)
			return
		}
		var req TokenRequest
		dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&req); err != nil {
			http.Error(w, "bad request: "+err.Error(), http.StatusBadRequest)
			return
		}
		spec := TokenSpec{Namespace: req.Namespace, ServiceAccount: req.ServiceAccount, WorkloadGroup: req.WorkloadGroup, SingleUse: req.SingleUse}
		if req.TTL != "" {
			d, err := time.ParseDuration(req.TTL)
			if err != nil {
				http.Error(w, "bad ttl: "+err.Error(), http.StatusBadRequest)
				return
			}
			spec.TTL = d
		}
		tok, claims, err := c.tokens.Issue(spec)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		c.log.Info("bootstrap token issued", "token_id", claims.ID, "identity", claims.SPIFFEID().String(),
			"workload_group", claims.WorkloadGroup, "single_use", claims.SingleUse, "expires", time.Unix(claims.Expires, 0).UTC())
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(TokenResponse{Token: tok, ID: claims.ID, Identity: claims.SPIFFEID().String(), Expires: time.Unix(claims.Expires, 0).UTC()})
	})
}
