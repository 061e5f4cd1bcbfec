package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"syscall"
	"time"

	"github.com/weftmesh/weft/internal/config"
)

// Client calls weftd's config API.
type Client struct {
	// Base is the monitoring address, e.g. "http://127.0.0.1:15014".
	Base  string
	Token string
	HTTP  *http.Client
}

// NewClient returns a client for addr ("127.0.0.1:15014" or a full URL).
func NewClient(addr, token string) *Client {
	base := addr
	if !strings.Contains(base, "://") {
		base = "http://" + base
	}
	return &Client{Base: strings.TrimRight(base, "/"), Token: token, HTTP: &http.Client{Timeout: 30 * time.Second}}
}

// APIError is a non-2xx answer from weftd.
type APIError struct {
	Status int
	Error_ Error
}

func (e *APIError) Error() string {
	var b strings.Builder
	b.WriteString(e.Error_.Message)
	for _, d := range e.Error_.Diagnostics {
		b.WriteString("\n  ")
		b.WriteString(d.Error())
	}
	return b.String()
}

func (c *Client) do(ctx context.Context, method, path string, query url.Values, body io.Reader, contentType string, out any) error {
	u := c.Base + path
	if len(query) > 0 {
		u += "?" + query.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+c.Token)
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		if errors.Is(err, syscall.ECONNREFUSED) {
			return fmt.Errorf("cannot reach weftd at %s: connection refused; is weftd running? (set --server)", c.Base)
		}
		var nerr net.Error
		if errors.As(err, &nerr) && nerr.Timeout() {
			return fmt.Errorf("weftd at %s did not answer in time: %w", c.Base, err)
		}
		return fmt.Errorf("call weftd at %s: %w", c.Base, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("read answer from weftd: %w", err)
	}
	if resp.StatusCode/100 != 2 {
		var e Error
		if json.Unmarshal(data, &e) != nil || e.Message == "" {
			e.Message = fmt.Sprintf("weftd answered %s: %s", resp.Status, strings.TrimSpace(string(data)))
		}
		return &APIError{Status: resp.StatusCode, Error_: e}
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			return fmt.Errorf("decode answer from weftd: %w", err)
		}
	}
	return nil
}

// List returns objects; empty filters match everything.
func (c *Client) List(ctx context.Context, kind, namespace, name string) (*ObjectList, error) {
	q := url.Values{}
	for k, v := range map[string]string{"kind": kind, "namespace": namespace, "name": name} {
		if v != "" {
			q.Set(k, v)
		}
	}
	var out ObjectList
	return &out, c.do(ctx, http.MethodGet, PathObjects, q, nil, "", &out)
}

// Apply sends YAML documents; file names the origin for error messages.
func (c *Client) Apply(ctx context.Context, yamlDocs []byte, file string, dryRun bool) (*ApplyResponse, error) {
	q := url.Values{}
	if file != "" {
		q.Set("file", file)
	}
	if dryRun {
		q.Set("dryRun", "true")
	}
	var out ApplyResponse
	return &out, c.do(ctx, http.MethodPost, PathApply, q, bytes.NewReader(yamlDocs), "application/yaml", &out)
}

// Delete removes objects from the embedded store.
func (c *Client) Delete(ctx context.Context, keys []config.Key) (*DeleteResponse, error) {
	body, err := json.Marshal(DeleteRequest{Keys: keys})
	if err != nil {
		return nil, err
	}
	var out DeleteResponse
	return &out, c.do(ctx, http.MethodPost, PathDelete, nil, bytes.NewReader(body), "application/json", &out)
}

// Diagnostics returns every current config problem.
func (c *Client) Diagnostics(ctx context.Context) (*DiagnosticList, error) {
	var out DiagnosticList
	return &out, c.do(ctx, http.MethodGet, PathDiagnostics, nil, nil, "", &out)
}

// Proxies decodes the xDS status of connected proxies into out.
func (c *Client) Proxies(ctx context.Context, out any) error {
	return c.do(ctx, http.MethodGet, PathProxies, nil, nil, "", out)
}

// Version returns the server's version.
func (c *Client) Version(ctx context.Context) (*Version, error) {
	var out Version
	return &out, c.do(ctx, http.MethodGet, PathVersion, nil, nil, "", &out)
}

// Raw sends a JSON body to an admin endpoint and decodes the JSON answer.
func (c *Client) Raw(ctx context.Context, method, path string, body io.Reader, out any) error {
	return c.do(ctx, method, path, nil, body, "application/json", out)
}

// RawText calls an admin endpoint whose answer is text (PEM, messages).
func (c *Client) RawText(ctx context.Context, method, path string, out io.Writer) error {
	req, err := http.NewRequestWithContext(ctx, method, c.Base+path, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+c.Token)
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return fmt.Errorf("call weftd at %s: %w", c.Base, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("weftd answered %s: %s", resp.Status, strings.TrimSpace(string(data)))
	}
	_, err = out.Write(data)
	return err
}
