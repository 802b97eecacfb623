package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"syscall"
	"time"

	"github.com/xlbproject/xlb/api"
)

// maxAnswer bounds what is read of an answer; a status of thousands of
// backends stays far below it.
const maxAnswer = 64 << 20

// client talks to xlbd's admin API.
type client struct {
	base    *url.URL // scheme, host and an optional path prefix
	token   string   // sent as a bearer token when set
	noToken string   // why no token was found, for an answer that wants one
	hc      *http.Client
}

// parseAdminURL accepts "http://host:port[/prefix]", "https://..." and a
// bare "host:port".
func parseAdminURL(s string) (*url.URL, error) {
	if !strings.Contains(s, "://") {
		s = "http://" + s
	}
	u, err := url.Parse(s)
	if err != nil {
		return nil, fmt.Errorf("admin URL: %w", err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("admin URL %q: scheme must be http or https", s)
	}
	if u.Host == "" {
		return nil, fmt.Errorf("admin URL %q: no host", s)
	}
	if u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return nil, fmt.Errorf("admin URL %q: want scheme://host:port[/path] only", s)
	}
	return u, nil
}

func newClient(base *url.URL, token string, timeout time.Duration) *client {
	return &client{base: base, token: token, hc: &http.Client{Timeout: timeout}}
}

// apiError is an error answer of the admin API.
type apiError struct {
	method, url string
	status      int
	answer      api.Error // empty if the body was not an api.Error
	raw         []byte
	hint        string // what the operator may have missed
}

func (e *apiError) Error() string {
	msg := e.answer.Error
	if msg == "" {
		msg = fmt.Sprintf("%s %s: %d %s", e.method, e.url, e.status, http.StatusText(e.status))
		if body := firstLine(e.raw); body != "" {
			msg += ": " + body
		}
	}
	if e.hint != "" {
		msg += " (" + e.hint + ")"
	}
	return msg
}

func firstLine(b []byte) string {
	line, _, _ := strings.Cut(strings.TrimSpace(string(b)), "\n")
	if len(line) > 200 {
		line = line[:200] + "..."
	}
	return line
}

// endpoint joins the base URL, a fixed API path and path segments, each
// escaped, so "[2001:db8::1]:80" or "fe80::1%eth0" reach the server whole.
func (c *client) endpoint(path string, segments ...string) string {
	u := *c.base
	p := strings.TrimSuffix(c.base.EscapedPath(), "/") + path
	for _, s := range segments {
		p += "/" + url.PathEscape(s)
	}
	u.RawPath = p
	u.Path, _ = url.PathUnescape(p) // p was escaped just above
	return u.String()
}

// do sends one call and returns the raw answer; a non-2xx answer is an
// *apiError carrying it too. in, when not nil, is sent as JSON; out, when
// not nil, receives the decoded answer.
func (c *client) do(ctx context.Context, method, target string, in, out any) ([]byte, error) {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return nil, fmt.Errorf("encode request: %w", err)
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, target, body)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json")
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		if errors.Is(err, syscall.ECONNREFUSED) {
			return nil, fmt.Errorf("%s %s: %w (is xlbd running? -admin or XLB_ADMIN names another address)", method, target, err)
		}
		return nil, fmt.Errorf("%s %s: %w", method, target, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer))
	if err != nil {
		return nil, fmt.Errorf("%s %s: read answer: %w", method, target, err)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		e := &apiError{method: method, url: target, status: resp.StatusCode, raw: raw}
		if json.Unmarshal(raw, &e.answer) != nil {
			e.answer = api.Error{}
		}
		if resp.StatusCode == http.StatusUnauthorized && c.token == "" {
			e.hint = "give -token-file, set XLB_TOKEN, or -config naming xlbd's config"
			if c.noToken != "" {
				e.hint = c.noToken + "; " + e.hint
			}
		}
		return raw, e
	}
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			return raw, fmt.Errorf("%s %s: decode answer: %w", method, target, err)
		}
	}
	return raw, nil
}

// notServing is why xlbd's /healthz says it does not serve ("" while it
// does, or when that cannot be told).
func (c *client) notServing(ctx context.Context) string {
	_, err := c.do(ctx, http.MethodGet, c.endpoint(api.PathHealthz), nil, nil)
	var ae *apiError
	if errors.As(err, &ae) && ae.status == http.StatusServiceUnavailable {
		if ae.answer.Error != "" {
			return ae.answer.Error
		}
		return "not ready"
	}
	return ""
}

func (c *client) services(ctx context.Context) (api.Services, []byte, error) {
	var out api.Services
	raw, err := c.do(ctx, http.MethodGet, c.endpoint(api.PathServices), nil, &out)
	return out, raw, err
}

func (c *client) service(ctx context.Context, name string) (api.Service, []byte, error) {
	var out api.Service
	raw, err := c.do(ctx, http.MethodGet, c.endpoint(api.PathServices, name), nil, &out)
	return out, raw, err
}

func (c *client) addBackend(ctx context.Context, service string, b api.AddBackend) (api.Change, []byte, error) {
	var out api.Change
	raw, err := c.do(ctx, http.MethodPost, c.endpoint(api.PathServices, service, "backends"), b, &out)
	return out, raw, err
}

func (c *client) removeBackend(ctx context.Context, service, address string) (api.Change, []byte, error) {
	var out api.Change
	raw, err := c.do(ctx, http.MethodDelete, c.endpoint(api.PathServices, service, "backends", address), nil, &out)
	return out, raw, err
}

func (c *client) patchBackend(ctx context.Context, service, address string, p api.PatchBackend) (api.Change, []byte, error) {
	var out api.Change
	raw, err := c.do(ctx, http.MethodPatch, c.endpoint(api.PathServices, service, "backends", address), p, &out)
	return out, raw, err
}

func (c *client) reload(ctx context.Context) (api.Reload, []byte, error) {
	var out api.Reload
	raw, err := c.do(ctx, http.MethodPost, c.endpoint(api.PathReload), nil, &out)
	return out, raw, err
}

func (c *client) which(ctx context.Context, service, clientAddr string) (api.Which, []byte, error) {
	var out api.Which
	target := c.endpoint(api.PathWhich) + "?" + url.Values{"service": {service}, "client": {clientAddr}}.Encode()
	raw, err := c.do(ctx, http.MethodGet, target, nil, &out)
	return out, raw, err
}

func (c *client) stats(ctx context.Context) (api.Stats, []byte, error) {
	var out api.Stats
	raw, err := c.do(ctx, http.MethodGet, c.endpoint(api.PathStats), nil, &out)
	return out, raw, err
}

func (c *client) bgp(ctx context.Context) (api.BGP, []byte, error) {
	var out api.BGP
	raw, err := c.do(ctx, http.MethodGet, c.endpoint(api.PathBGP), nil, &out)
	return out, raw, err
}

func (c *client) announce(ctx context.Context, on bool) (api.BGP, []byte, error) {
	var out api.BGP
	raw, err := c.do(ctx, http.MethodPost, c.endpoint(api.PathBGPAnnounce), api.BGPAnnounce{Enabled: &on}, &out)
	return out, raw, err
}
