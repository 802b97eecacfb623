package admin

import (
	"fmt"
	"net/http"

	"github.com/xlbproject/xlb/api"
)

// WhichController is the optional part of a Controller that answers
// GET /api/v1/which; a Controller without it answers 501.
type WhichController interface {
	// Which returns the backend the client's flow (IP:PORT) to an L4
	// service gets now, where that answer comes from, and what a new
	// connection from that address and port would get (the Maglev pick).
	Which(service, client string) (api.Which, error)
}

func (s *Server) which(w http.ResponseWriter, r *http.Request) {
	wc, ok := s.ctl.(WhichController)
	if !ok {
		writeError(w, http.StatusNotImplemented, api.Error{Error: "which is not available from this daemon"})
		return
	}
	q := r.URL.Query()
	service, client := q.Get("service"), q.Get("client")
	if service == "" || client == "" {
		s.fail(w, r, fmt.Errorf("%w: want ?service=NAME&client=IP:PORT", api.ErrInvalid))
		return
	}
	ans, err := wc.Which(service, client)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, ans)
}
