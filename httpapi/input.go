package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// Request limits.
const (
	maxBodyBytes = 4 << 10
	maxUserBytes = 128
	// defaultTTL is the lifetime of a credential when the caller asks for
	// none (capped by auth.max-ttl), as for `ferry creds`.
	defaultTTL = time.Hour
)

// Input fields.
const (
	fieldUser   = "user"
	fieldTTL    = "ttl"
	fieldRegion = "region"
	fieldBody   = "body"
)

// inputError is a client error naming the field at fault.
type inputError struct {
	status int
	field  string
	msg    string
}

func (e *inputError) Error() string { return e.field + ": " + e.msg }

func badField(field, format string, args ...any) *inputError {
	return &inputError{status: http.StatusBadRequest, field: field, msg: fmt.Sprintf(format, args...)}
}

// request is a parsed credentials request.
type request struct {
	user string
	// ttl is what the caller asked for, uncapped; 0 when not given.
	ttl time.Duration
	// region is where the caller is, for placement; "" when not given.
	region string
}

// parseRequest reads user and ttl from the query string and the body (JSON
// object, or a URL-encoded form). A field given in both is an error, as is
// any field other than user, ttl and region.
func parseRequest(r *http.Request) (request, *inputError) {
	vals := map[string]any{}
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return request{}, badField("query", "is not a valid query string: %v", err)
	}
	for k, v := range q {
		if k == "" {
			return request{}, badField("query", "has a parameter with an empty name")
		}
		if len(v) > 1 {
			return request{}, badField(k, "is given %d times; give it once", len(v))
		}
		vals[k] = v[0]
	}
	body, ierr := readBody(r)
	if ierr != nil {
		return request{}, ierr
	}
	for k, v := range body {
		if k == "" {
			return request{}, badField("body", "has a field with an empty name")
		}
		if _, dup := vals[k]; dup {
			return request{}, badField(k, "is given in both the query string and the body; give it once")
		}
		vals[k] = v
	}
	var out request
	for k, v := range vals {
		switch k {
		case fieldUser:
			s, ok := v.(string)
			if !ok {
				return request{}, badField(fieldUser, "must be a string")
			}
			if err := checkUser(s); err != nil {
				return request{}, badField(fieldUser, "%v", err)
			}
			out.user = s
		case fieldTTL:
			d, err := parseTTL(v)
			if err != nil {
				return request{}, badField(fieldTTL, "%v", err)
			}
			out.ttl = d
		case fieldRegion:
			s, ok := v.(string)
			if !ok || len(s) > 64 || strings.ContainsFunc(s, func(r rune) bool { return r <= ' ' || r > '~' }) {
				return request{}, badField(fieldRegion, "must be a region name of up to 64 printable characters, e.g. eu-west")
			}
			out.region = s
		default:
			return request{}, badField(k, "is not a parameter; use user, ttl and region")
		}
	}
	return out, nil
}

// readBody decodes the request body: nothing, a JSON object, or a form.
func readBody(r *http.Request) (map[string]any, *inputError) {
	b, err := io.ReadAll(io.LimitReader(r.Body, maxBodyBytes+1))
	if err != nil {
		return nil, &inputError{status: http.StatusBadRequest, field: fieldBody, msg: "could not be read: " + err.Error()}
	}
	if len(b) > maxBodyBytes {
		return nil, &inputError{status: http.StatusRequestEntityTooLarge, field: fieldBody, msg: fmt.Sprintf("is larger than %d bytes", maxBodyBytes)}
	}
	if len(bytes.TrimSpace(b)) == 0 {
		return nil, nil
	}
	ct := r.Header.Get("Content-Type")
	mt := "application/json"
	if ct != "" {
		if mt, _, err = mime.ParseMediaType(ct); err != nil {
			return nil, &inputError{status: http.StatusUnsupportedMediaType, field: fieldBody, msg: fmt.Sprintf("Content-Type %q is not valid", ct)}
		}
	}
	switch mt {
	case "application/json":
		return decodeJSON(b)
	case "application/x-www-form-urlencoded":
		f, err := url.ParseQuery(string(b))
		if err != nil {
			return nil, badField(fieldBody, "is not a valid form: %v", err)
		}
		out := make(map[string]any, len(f))
		for k, v := range f {
			if len(v) > 1 {
				return nil, badField(k, "is given %d times; give it once", len(v))
			}
			out[k] = v[0]
		}
		return out, nil
	}
	return nil, &inputError{status: http.StatusUnsupportedMediaType, field: fieldBody,
		msg: fmt.Sprintf("Content-Type %q is not supported; send application/json", mt)}
}

// decodeJSON decodes one JSON object, numbers kept exact.
func decodeJSON(b []byte) (map[string]any, *inputError) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			return nil, badField(fieldBody, "must be a JSON object such as {\"user\": \"alice\", \"ttl\": 3600}")
		}
		return nil, badField(fieldBody, "is not valid JSON: %v", err)
	}
	if m == nil {
		return nil, badField(fieldBody, "must be a JSON object such as {\"user\": \"alice\", \"ttl\": 3600}")
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, badField(fieldBody, "has data after the JSON object")
	}
	return m, nil
}

// parseTTL accepts whole seconds (a JSON number or a decimal string) or a Go
// duration string ("90s", "1h"). It must be positive; the caller caps it.
func parseTTL(v any) (time.Duration, error) {
	var s string
	switch t := v.(type) {
	case json.Number:
		s = t.String()
		if strings.ContainsAny(s, ".eE") {
			return 0, fmt.Errorf("%s is not a whole number of seconds", s)
		}
	case string:
		s = strings.TrimSpace(t)
	default:
		return 0, errors.New("must be seconds (a number) or a duration such as \"1h\"")
	}
	if s == "" {
		return 0, errors.New("is empty; give seconds (3600) or a duration such as \"1h\"")
	}
	var d time.Duration
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		if n > math.MaxInt64/int64(time.Second) {
			n = math.MaxInt64 / int64(time.Second)
		}
		d = time.Duration(n) * time.Second
	} else if d, err = time.ParseDuration(s); err != nil {
		return 0, fmt.Errorf("%q is neither seconds (3600) nor a duration such as \"1h\"", s)
	}
	switch {
	case d <= 0:
		return 0, fmt.Errorf("%s must be positive", s)
	case d < time.Second:
		return 0, fmt.Errorf("%s is shorter than one second", s)
	}
	return d, nil
}

// checkUser accepts what fits in a REST username "<expiry>:<user>": printable
// UTF-8 without ':' of at most maxUserBytes bytes.
func checkUser(s string) error {
	if len(s) > maxUserBytes {
		return fmt.Errorf("is longer than %d bytes", maxUserBytes)
	}
	if !utf8.ValidString(s) {
		return errors.New("is not valid UTF-8")
	}
	for _, r := range s {
		if r == ':' {
			return errors.New("must not contain ':' (it separates the expiry from the user)")
		}
		if !unicode.IsPrint(r) {
			return fmt.Errorf("must not contain the control or space character %U", r)
		}
	}
	return nil
}
