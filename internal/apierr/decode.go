package apierr

import (
	"encoding/json"
	"errors"

	"io"
	"mime"
	"net/http"
	"strings"
)

// MaxBody is the default request body limit (DPS: 96 KB messages).
const MaxBody = 96 << 10

// DecodeJSON decodes the request body into v. A body larger than max gives
// 413, a Content-Type that is not JSON 415, malformed JSON or a field of the
// wrong type 400 naming the field. Unknown fields are ignored, as the
// service does. An empty body is an error when required is true.
func DecodeJSON(r *http.Request, max int64, v any, required bool) error {
	if max <= 0 {
		max = MaxBody
	}
	if r.ContentLength > max {
		return New(CodePayloadTooLarge, "Request body is larger than %d bytes.", max)
	}
	if ct := r.Header.Get("Content-Type"); ct != "" {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || !(mt == "application/json" || strings.HasSuffix(mt, "+json") || mt == "text/json") {
			return New(CodeUnsupportedMedia, "Content-Type %q is not supported; use application/json.", ct)
		}
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, max+1))
	if err != nil {
		return New(CodeBadRequest, "Could not read the request body.")
	}
	if int64(len(body)) > max {
		return New(CodePayloadTooLarge, "Request body is larger than %d bytes.", max)
	}
	if len(strings.TrimSpace(string(body))) == 0 {
		if required {
			return New(CodeBadArgument, "A JSON request body is required.")
		}
		return nil
	}
	return decodeBytes(body, v)
}

func decodeBytes(body []byte, v any) error {
	if err := json.Unmarshal(body, v); err != nil {
		var te *json.UnmarshalTypeError
		var se *json.SyntaxError
		switch {
		case errors.As(err, &te):
			field := te.Field
			if field == "" {
				field = "(body)"
			}
			return New(CodeBadArgument, "Field %q must be of type %s, not %s.", field, jsonType(te.Type.Kind().String()), te.Value)
		case errors.As(err, &se):
			return New(CodeBadArgument, "Malformed JSON at offset %d: %v.", se.Offset, se)
		default:
			return New(CodeBadArgument, "Malformed JSON: %v.", trimPrefix(err))
		}
	}
	return nil
}

func trimPrefix(err error) string { return strings.TrimPrefix(err.Error(), "json: ") }

func jsonType(kind string) string {
	switch kind {
	case "struct", "map":
		return "object"
	case "slice", "array":
		return "array"
	case "int", "int64", "int32", "uint", "uint64", "float64":
		return "number"
	case "bool":
		return "boolean"
	}
	return kind
}

// DecodeBytes is DecodeJSON for a body already read.
func DecodeBytes(body []byte, v any) error { return decodeBytes(body, v) }
