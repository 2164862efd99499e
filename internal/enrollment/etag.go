package enrollment

import (
	"fmt"
	"strings"

	"github.com/google/uuid"
)

// NewEtag returns a fresh etag: a quoted random GUID, e.g.
// "\"e17aae9d-bfbd-422f-a30d-af7077a81601\"" in JSON, as the service API
// shows etags (spec/dps-protocol.md §1.2). Every write stores a new one.
func NewEtag() string { return `"` + uuid.NewString() + `"` }

// normalizeEtag strips blanks, a weak W/ prefix and surrounding quotes.
func normalizeEtag(s string) string {
	s = strings.TrimSpace(s)
	s = strings.TrimPrefix(s, "W/")
	s = strings.TrimPrefix(s, "w/")
	return strings.Trim(s, `"`)
}

// EtagMatches reports whether an If-Match value matches the etag of an
// existing record. The value may list several etags separated by commas;
// each is compared after stripping quotes and W/, case-insensitively; "*"
// matches any existing record. An empty ifMatch matches nothing.
func EtagMatches(ifMatch, current string) bool {
	cur := normalizeEtag(current)
	for _, tag := range strings.Split(ifMatch, ",") {
		t := normalizeEtag(tag)
		if t == "*" || (t != "" && strings.EqualFold(t, cur)) {
			return true
		}
	}
	return false
}

// checkIfMatch applies an If-Match condition to a write. An empty ifMatch
// imposes nothing. Otherwise the record must exist and match: If-Match on
// a missing record fails (RFC 9110 §13.1.1), it never creates.
func checkIfMatch(ifMatch string, exists bool, current, what, id string) error {
	if strings.TrimSpace(ifMatch) == "" {
		return nil
	}
	if !exists {
		return fmt.Errorf("%w: %s %q does not exist", ErrPrecondition, what, id)
	}
	if !EtagMatches(ifMatch, current) {
		return fmt.Errorf("%w: %s %q has etag %s", ErrPrecondition, what, id, current)
	}
	return nil
}
