package dpsclient

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
)

// The request plumbing of the JSON APIs (Control, Service): each client
// adds its authentication and URL rules, and turns error answers into its
// own error type.

// newJSONRequest returns a request that accepts JSON and carries body,
// when not nil, encoded as JSON with Content-Type contentType.
func newJSONRequest(ctx context.Context, method, url string, body any, contentType string) (*http.Request, error) {
	var r io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, fmt.Errorf("dpsclient: encode request: %w", err)
		}
		r = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, r)
	if err != nil {
		return nil, fmt.Errorf("dpsclient: %w", err)
	}
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", contentType)
	}
	return req, nil
}

// readAnswer sends req with hc and reads at most limit bytes of the answer
// body. The errors are the transport's, unwrapped; resp is nil only when
// the request was not answered.
func readAnswer(hc *http.Client, req *http.Request, limit int64) (resp *http.Response, body []byte, err error) {
	resp, err = hc.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	body, err = io.ReadAll(io.LimitReader(resp.Body, limit))
	return resp, body, err
}

// errorAnswer is the DPS error body of an error answer (apierr.Body).
type errorAnswer struct {
	ErrorCode  int    `json:"errorCode"`
	Message    string `json:"message"`
	TrackingID string `json:"trackingId"`
}

// parseErrorAnswer returns the DPS error body in body; the zero value when
// body is not one.
func parseErrorAnswer(body []byte) errorAnswer {
	var e errorAnswer
	if json.Unmarshal(body, &e) != nil {
		return errorAnswer{}
	}
	return e
}

// decodeAnswer decodes the body of a 2xx answer into out, unless out is
// nil or the body empty.
func decodeAnswer(body []byte, out any) error {
	if out == nil || len(bytes.TrimSpace(body)) == 0 {
		return nil
	}
	return json.Unmarshal(body, out)
}
