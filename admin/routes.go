package admin

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"path"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/xlbproject/xlb/api"
)

const (
	pathService  = api.PathServices + "/{name}"
	pathBackends = api.PathServices + "/{name}/backends"
	// {address...} takes the rest of the path, so "[2001:db8::1]:80" and
	// "10.0.0.1:80" arrive whole; the mux hands it back unescaped.
	pathBackend = api.PathServices + "/{name}/backends/{address...}"
)

// routes builds the mux. Every path also gets a method-less fallback that
// answers 405 in JSON (the mux's own answer is text), and "/" answers 404
// in JSON.
func (s *Server) routes(metrics http.Handler) http.Handler {
	type route struct {
		method, path string
		h            http.Handler
	}
	table := []route{
		{http.MethodGet, api.PathHealthz, http.HandlerFunc(s.healthz)},
		{http.MethodGet, api.PathMetrics, metrics},
		{http.MethodGet, api.PathServices, http.HandlerFunc(s.listServices)},
		{http.MethodGet, pathService, http.HandlerFunc(s.getService)},
		{http.MethodPost, pathBackends, s.mutating(s.addBackend)},
		{http.MethodDelete, pathBackend, s.mutating(s.removeBackend)},
		{http.MethodPatch, pathBackend, s.mutating(s.patchBackend)},
		{http.MethodPost, api.PathReload, s.mutating(s.reload)},
		{http.MethodGet, api.PathStats, http.HandlerFunc(s.stats)},
		{http.MethodGet, api.PathWhich, http.HandlerFunc(s.which)},
		{http.MethodGet, api.PathBGP, http.HandlerFunc(s.bgpStatus)},
		{http.MethodPost, api.PathBGPAnnounce, s.mutating(s.bgpAnnounce)},
	}
	mux := http.NewServeMux()
	allow := map[string][]string{}
	var paths []string
	for _, r := range table {
		mux.Handle(r.method+" "+r.path, r.h)
		if _, ok := allow[r.path]; !ok {
			paths = append(paths, r.path)
		}
		allow[r.path] = append(allow[r.path], r.method)
		if r.method == http.MethodGet {
			allow[r.path] = append(allow[r.path], http.MethodHead)
		}
	}
	for _, p := range paths {
		methods := strings.Join(allow[p], ", ")
		mux.HandleFunc(p, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Allow", methods)
			writeError(w, http.StatusMethodNotAllowed, api.Error{
				Error: fmt.Sprintf("method %s not allowed on %s (allowed: %s)", r.Method, r.URL.Path, methods),
			})
		})
	}
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, api.Error{Error: "no such path: " + r.URL.Path})
	})
	// The mux answers a path with "..", "." or "//" by a redirect to its
	// clean form: a client that follows it would send its PATCH or DELETE
	// to another resource than the one it wrote.
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if p := r.URL.Path; p != "/" && path.Clean(p) != strings.TrimSuffix(p, "/") {
			writeError(w, http.StatusBadRequest, api.Error{Error: fmt.Sprintf("path %q is not in clean form (no \"..\", \".\" or \"//\")", p)})
			return
		}
		mux.ServeHTTP(w, r)
	})
}

func (s *Server) healthz(w http.ResponseWriter, r *http.Request) {
	if err := s.ready(); err != nil {
		writeJSON(w, http.StatusServiceUnavailable, struct {
			Status string `json:"status"`
			Error  string `json:"error"`
		}{"unavailable", err.Error()})
		return
	}
	writeJSON(w, http.StatusOK, struct {
		Status string `json:"status"`
	}{"ok"})
}

func (s *Server) listServices(w http.ResponseWriter, r *http.Request) {
	svcs := s.ctl.Services()
	out := api.Services{Services: make([]api.Service, 0, len(svcs))}
	for _, svc := range svcs {
		out.Services = append(out.Services, normalize(svc))
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) getService(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	for _, svc := range s.ctl.Services() {
		if svc.Name == name {
			writeJSON(w, http.StatusOK, normalize(svc))
			return
		}
	}
	writeError(w, http.StatusNotFound, api.Error{Error: fmt.Sprintf("service %q not found", name)})
}

// normalize makes an empty backend list [] rather than null.
func normalize(svc api.Service) api.Service {
	if svc.Backends == nil {
		svc.Backends = []api.Backend{}
	}
	return svc
}

func (s *Server) stats(w http.ResponseWriter, r *http.Request) {
	st, err := s.ctl.Stats()
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if st.L4 == nil {
		st.L4 = []api.Stat{}
	}
	writeJSON(w, http.StatusOK, st)
}

// A mutation does one mutating call; the answer is written with status
// unless err is set.
type mutation func(r *http.Request) (status int, answer any, err error)

// mutating checks the token, bounds the body, runs m, answers and logs the
// call (never the token).
func (s *Server) mutating(m mutation) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		log := func(status int, result string) {
			s.log.Info("admin call", "method", r.Method, "path", r.URL.Path, "status", status,
				"result", result, "remote", r.RemoteAddr, "duration", time.Since(start))
		}
		if t := s.token.Load(); t != nil {
			ok, warning := t.check(r)
			if warning != "" {
				s.log.Warn("admin token file", "err", warning)
			}
			if !ok {
				w.Header().Set("WWW-Authenticate", "Bearer")
				writeError(w, http.StatusUnauthorized, api.Error{Error: "missing or wrong bearer token"})
				log(http.StatusUnauthorized, "unauthorized")
				return
			}
		}
		r.Body = http.MaxBytesReader(w, r.Body, maxBody)
		status, answer, err := m(r)
		if err != nil {
			status = s.fail(w, r, err)
			log(status, err.Error())
			return
		}
		writeJSON(w, status, answer)
		result := "ok"
		switch a := answer.(type) {
		case api.Change:
			result = a.Result
		case api.Reload:
			result = a.Result
		}
		log(status, result)
	}
}

func (s *Server) addBackend(r *http.Request) (int, any, error) {
	var b api.AddBackend
	if err := decode(r, &b); err != nil {
		return 0, nil, err
	}
	if strings.TrimSpace(b.Address) == "" {
		return 0, nil, fmt.Errorf("%w: address is required", api.ErrInvalid)
	}
	if b.Weight != nil && *b.Weight < 0 {
		return 0, nil, fmt.Errorf("%w: weight %d is negative", api.ErrInvalid, *b.Weight)
	}
	ch, err := s.ctl.AddBackend(r.PathValue("name"), b)
	return http.StatusCreated, ch, err
}

func (s *Server) removeBackend(r *http.Request) (int, any, error) {
	addr, err := backendAddress(r)
	if err != nil {
		return 0, nil, err
	}
	ch, err := s.ctl.RemoveBackend(r.PathValue("name"), addr)
	return http.StatusOK, ch, err
}

// backendAddress is the {address...} of the path, which may be empty.
func backendAddress(r *http.Request) (string, error) {
	addr := r.PathValue("address")
	if addr == "" {
		return "", fmt.Errorf("%w: backend address missing from the path", api.ErrInvalid)
	}
	return addr, nil
}

func (s *Server) patchBackend(r *http.Request) (int, any, error) {
	addr, err := backendAddress(r)
	if err != nil {
		return 0, nil, err
	}
	var p api.PatchBackend
	if err := decode(r, &p); err != nil {
		return 0, nil, err
	}
	if p.Weight == nil && p.Drain == nil {
		return 0, nil, fmt.Errorf(`%w: nothing to change: give "weight" or "drain"`, api.ErrInvalid)
	}
	if p.Weight != nil && *p.Weight < 0 {
		return 0, nil, fmt.Errorf("%w: weight %d is negative", api.ErrInvalid, *p.Weight)
	}
	ch, err := s.ctl.PatchBackend(r.PathValue("name"), addr, p)
	return http.StatusOK, ch, err
}

func (s *Server) reload(r *http.Request) (int, any, error) {
	rl, err := s.ctl.Reload()
	return http.StatusOK, rl, err
}

// statusError is an error with its own status (a body that is too large).
type statusError struct {
	status int
	msg    string
}

func (e *statusError) Error() string { return e.msg }

// decode reads exactly one JSON object with only known fields.
func decode(r *http.Request, v any) error {
	body, err := io.ReadAll(r.Body)
	if mbe := (*http.MaxBytesError)(nil); errors.As(err, &mbe) {
		return &statusError{http.StatusRequestEntityTooLarge, fmt.Sprintf("request body larger than %d bytes", mbe.Limit)}
	}
	if err != nil {
		return fmt.Errorf("%w: reading the body: %v", api.ErrInvalid, err)
	}
	if err := exactKeys(body, v); err != nil {
		return fmt.Errorf("%w: bad JSON body: %v", api.ErrInvalid, err)
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	err = dec.Decode(v)
	if err == nil {
		// A second value, or garbage, after the object.
		if _, err2 := dec.Token(); err2 != io.EOF {
			err = errors.New("unexpected data after the JSON object")
			if mbe := (*http.MaxBytesError)(nil); errors.As(err2, &mbe) {
				err = err2
			}
		}
	}
	if err == nil {
		return nil
	}
	if mbe := (*http.MaxBytesError)(nil); errors.As(err, &mbe) {
		return &statusError{http.StatusRequestEntityTooLarge, fmt.Sprintf("request body larger than %d bytes", mbe.Limit)}
	}
	if errors.Is(err, io.EOF) {
		return fmt.Errorf("%w: empty request body: want a JSON object", api.ErrInvalid)
	}
	return fmt.Errorf("%w: bad JSON body: %v", api.ErrInvalid, err)
}

// exactKeys refuses what encoding/json lets through in a body meant for the
// struct v points to: a key that matches a field only when case is ignored
// ("Weight" for "weight", where a typo would otherwise pass silently), and a
// key given twice (the last would win). Bodies are flat objects; anything
// else is left to the decoder.
func exactKeys(body []byte, v any) error {
	t := reflect.TypeOf(v)
	if t.Kind() != reflect.Pointer || t.Elem().Kind() != reflect.Struct {
		return nil
	}
	var names []string
	for f := range t.Elem().Fields() {
		if name, _, _ := strings.Cut(f.Tag.Get("json"), ","); name != "" && name != "-" {
			names = append(names, name)
		}
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return nil
	}
	seen := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil
		}
		key, _ := tok.(string)
		if seen[key] {
			return fmt.Errorf("field %q given twice", key)
		}
		seen[key] = true
		if !slices.Contains(names, key) {
			for _, n := range names {
				if strings.EqualFold(n, key) {
					return fmt.Errorf("field %q: JSON names are case-sensitive; write %q", key, n)
				}
			}
		}
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			return nil
		}
	}
	return nil
}

// fail answers err with its status and returns the status.
func (s *Server) fail(w http.ResponseWriter, r *http.Request, err error) int {
	status, body := errorAnswer(err)
	if status >= 500 {
		s.log.Error("admin call failed", "method", r.Method, "path", r.URL.Path, "err", err)
	}
	writeError(w, status, body)
	return status
}

// errorAnswer maps a Controller error to its status and body.
func errorAnswer(err error) (int, api.Error) {
	body := api.Error{Error: err.Error()}
	var d api.Detailed
	if errors.As(err, &d) {
		body.Details = slices.Clone(d.Details())
	}
	var se *statusError
	switch {
	case errors.As(err, &se):
		return se.status, body
	case errors.Is(err, api.ErrNotFound):
		return http.StatusNotFound, body
	case errors.Is(err, api.ErrInvalid):
		return http.StatusBadRequest, body
	case errors.Is(err, api.ErrConflict):
		return http.StatusConflict, body
	case errors.Is(err, api.ErrUnavailable):
		return http.StatusServiceUnavailable, body
	case d != nil:
		return http.StatusBadRequest, body
	}
	return http.StatusInternalServerError, body
}

func writeError(w http.ResponseWriter, status int, e api.Error) {
	writeJSON(w, status, e)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		status = http.StatusInternalServerError
		buf.Reset()
		b, _ := json.Marshal(api.Error{Error: "encode answer: " + err.Error()})
		buf.Write(append(b, '\n'))
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	w.Write(buf.Bytes())
}
