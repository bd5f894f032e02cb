package admin

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/ferryrtc/ferry/cluster"
)

// Revoker records revocations (*cluster.Revocations): in the cluster's
// Redis, or in this process without one.
type Revoker interface {
	Revoke(ctx context.Context, r cluster.Revocation) (cluster.Revocation, error)
	Lift(ctx context.Context, kind, name string) (bool, error)
	List() []cluster.Revocation
}

// RevocationList is the body of GET /v1/admin/revocations.
type RevocationList struct {
	Count       int                  `json:"count"`
	Revocations []cluster.Revocation `json:"revocations"`
}

// revocationRequest is the body of POST /v1/admin/revocations: one of
// user and username.
type revocationRequest struct {
	User     string `json:"user"`
	Username string `json:"username"`
	Reason   string `json:"reason"`
}

// kindOf picks the one of user and username that is set.
func kindOf(user, username string) (kind, name string, ok bool) {
	switch {
	case user != "" && username == "":
		return cluster.RevokeUser, user, true
	case username != "" && user == "":
		return cluster.RevokeUsername, username, true
	}
	return "", "", false
}

// revoke records a revocation: every node refuses the user or credential
// from then on and closes its live allocations.
func (h *Handler) revoke(w http.ResponseWriter, r *http.Request) {
	var req revocationRequest
	dec := json.NewDecoder(io.LimitReader(r.Body, 4<<10))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		writeError(w, http.StatusBadRequest, `body must be {"user": "alice"} or {"username": "<expiry>:alice"}, with an optional "reason": `+err.Error())
		return
	}
	kind, name, ok := kindOf(req.User, req.Username)
	if !ok {
		writeError(w, http.StatusBadRequest, `give exactly one of "user" and "username"`)
		return
	}
	if err := cluster.CheckRevocation(kind, name); err != nil || len(req.Reason) > 256 {
		msg := "reason is longer than 256 bytes"
		if err != nil {
			msg = err.Error()
		}
		writeError(w, http.StatusBadRequest, msg)
		return
	}
	now := time.Now()
	until := now.Add(h.maxTTL)
	if kind == cluster.RevokeUsername {
		// A REST user name carries its expiry: past it, nothing to revoke.
		if exp, _, ok := strings.Cut(name, ":"); ok {
			if sec, err := strconv.ParseInt(exp, 10, 64); err == nil {
				until = time.Unix(sec, 0)
				if !until.After(now) {
					writeError(w, http.StatusConflict, "credential "+quote(name)+" has already expired")
					return
				}
			}
		}
	}
	rev, err := h.revoker.Revoke(r.Context(), cluster.Revocation{Kind: kind, Name: name, Until: until, Reason: req.Reason})
	if err != nil {
		h.log.Error("admin: revocation not recorded", "kind", kind, "name", name, "err", err)
		writeError(w, http.StatusServiceUnavailable, "revocation not recorded: "+err.Error())
		return
	}
	h.log.Info("admin: revoked", "kind", kind, "name", name, "until", rev.Until, "reason", req.Reason, "remote", r.RemoteAddr)
	writeJSON(w, http.StatusCreated, rev)
}

// lift takes a revocation out: ?user= or ?username=.
func (h *Handler) lift(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	kind, name, ok := kindOf(q.Get("user"), q.Get("username"))
	if !ok {
		writeError(w, http.StatusBadRequest, "give exactly one of ?user= and ?username=")
		return
	}
	had, err := h.revoker.Lift(r.Context(), kind, name)
	switch {
	case err != nil:
		writeError(w, http.StatusServiceUnavailable, "revocation not lifted: "+err.Error())
	case !had:
		writeError(w, http.StatusNotFound, "no revocation of "+kind+" "+quote(name))
	default:
		h.log.Info("admin: revocation lifted", "kind", kind, "name", name, "remote", r.RemoteAddr)
		writeJSON(w, http.StatusOK, map[string]bool{"lifted": true})
	}
}

func (h *Handler) revocations(w http.ResponseWriter, _ *http.Request) {
	list := h.revoker.List()
	if list == nil {
		list = []cluster.Revocation{}
	}
	writeJSON(w, http.StatusOK, RevocationList{Count: len(list), Revocations: list})
}
