package serviceapi

import (
	"encoding/base64"
	"net/http"
	"strconv"
	"strings"

	"github.com/opendps/opendps/internal/apierr"
	"github.com/opendps/opendps/internal/enrollment"
	"github.com/opendps/opendps/internal/model"
)

// Paging headers of queries (spec/dps-protocol.md §6.3).
const (
	hdrMaxItemCount = "x-ms-max-item-count"
	hdrContinuation = "x-ms-continuation"
	hdrItemType     = "x-ms-item-type"
)

// queryCollections are the collections a SELECT may name, per resource.
var queryCollections = map[resource][]string{
	resEnrollment:   {"enrollments"},
	resGroup:        {"enrollmentgroups", "enrollments"},
	resRegistration: {"registrations", "deviceregistrations", "enrollments"},
}

// checkQuery reads the QuerySpecification body and accepts the queries
// clients send for "everything": "*" (Node) and "SELECT * FROM
// enrollments" (C#) or the route's own collection. Filters are not
// supported (400). The registration-state query may come without a body.
func (q *request) checkQuery(required bool) error {
	var spec model.QuerySpecification
	if err := q.decode(&spec, required); err != nil {
		return err
	}
	norm := strings.ToLower(strings.Join(strings.Fields(spec.Query), " "))
	if norm == "*" || (norm == "" && !required) {
		return nil
	}
	for _, c := range queryCollections[q.rt.res] {
		if norm == "select * from "+c {
			return nil
		}
	}
	return apierr.New(apierr.CodeBadArgument, "Query %q is not supported; use \"*\" or \"SELECT * FROM %s\".", truncate(spec.Query), queryCollections[q.rt.res][0])
}

// page is the paging of one query request.
type page struct {
	size  int
	after string // id after which the page starts
}

// pageParams reads x-ms-max-item-count (default 100, at most 1000) and
// x-ms-continuation (base64url of the last id of the previous page).
func pageParams(r *http.Request) (page, error) {
	p := page{size: enrollment.DefaultPageSize}
	if v := strings.TrimSpace(r.Header.Get(hdrMaxItemCount)); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			return page{}, apierr.New(apierr.CodeBadArgument, "%s must be a positive integer.", hdrMaxItemCount)
		}
		p.size = min(n, enrollment.MaxPageSize)
	}
	if v := strings.TrimSpace(r.Header.Get(hdrContinuation)); v != "" {
		b, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(v, "="))
		if err != nil || enrollment.ValidateID("continuation", string(b)) != nil {
			return page{}, apierr.New(apierr.CodeBadArgument, "%s is not a continuation token of this service.", hdrContinuation)
		}
		p.after = string(b)
	}
	return p, nil
}

// writePage answers a query: a JSON array, x-ms-item-type, and
// x-ms-continuation only when more pages follow (the Node SDK stops on its
// absence; an empty value would loop).
func writePage(w http.ResponseWriter, itemType string, size int, items any, next string) error {
	h := w.Header()
	h.Set(hdrItemType, itemType)
	h.Set(hdrMaxItemCount, strconv.Itoa(size))
	if next != "" {
		h.Set(hdrContinuation, base64.RawURLEncoding.EncodeToString([]byte(next)))
	}
	return apierr.JSON(w, http.StatusOK, items)
}
