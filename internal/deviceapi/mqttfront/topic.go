package mqttfront

import (
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/opendps/opendps/internal/deviceapi/devreq"
)

// Parse errors. They never reach a device as text: a CONNECT that does
// not parse is refused with a return code, a publish to a topic that does
// not parse is a disconnect.
var (
	errUsername = errors.New("mqttfront: username is not {idScope}/registrations/{registrationId}/api-version=...")
	errTopic    = errors.New("mqttfront: not a DPS request topic")
)

// username is a parsed CONNECT username (§4.1).
type username struct {
	IDScope        string
	RegistrationID string
	APIVersion     string // "" when absent
	ClientVersion  string // percent-decoded when it decodes; logged only
}

// parseUsername parses {idScope}/registrations/{registrationId}[/query]:
// split at the first three '/', then the rest as a query string
// (api-version, ClientVersion; other keys ignored). The scope, the
// registration id and the api-version must be valid (devreq); the
// ClientVersion is taken as sent when it does not percent-decode (the C
// SDK sends it raw).
func parseUsername(s string) (username, error) {
	if s == "" || len(s) > maxUsernameLen || !utf8.ValidString(s) {
		return username{}, errUsername
	}
	parts := strings.SplitN(s, "/", 4)
	if len(parts) < 3 || !strings.EqualFold(parts[1], segRegistrations) {
		return username{}, errUsername
	}
	u := username{IDScope: parts[0], RegistrationID: parts[2]}
	if err := devreq.ValidateScope(u.IDScope); err != nil {
		return username{}, fmt.Errorf("%w: %v", errUsername, err)
	}
	if err := devreq.ValidateRegistrationID(u.RegistrationID); err != nil {
		return username{}, fmt.Errorf("%w: %v", errUsername, err)
	}
	if len(parts) == 4 {
		for kv := range strings.SplitSeq(parts[3], "&") {
			k, v, _ := strings.Cut(kv, "=")
			switch {
			case strings.EqualFold(k, paramAPIVersion) && u.APIVersion == "":
				u.APIVersion = unescape(v)
			case strings.EqualFold(k, paramClientVersion) && u.ClientVersion == "":
				u.ClientVersion = unescape(v)
			}
		}
	}
	if err := devreq.CheckAPIVersion(u.APIVersion); err != nil {
		return username{}, fmt.Errorf("%w: %v", errUsername, err)
	}
	return u, nil
}

// unescape percent-decodes v, or returns it as sent when it does not
// decode to valid UTF-8.
func unescape(v string) string {
	if d, err := url.QueryUnescape(v); err == nil && utf8.ValidString(d) {
		return d
	}
	return v
}

// requestKind is the DPS operation a publish asks for (§4.2).
type requestKind int

const (
	kindRegister requestKind = iota + 1
	kindPoll
)

// String is the kind's log label.
func (k requestKind) String() string {
	switch k {
	case kindRegister:
		return "register"
	case kindPoll:
		return "operation_status"
	}
	return "unknown"
}

// request is a parsed request topic. rid is exactly as the device wrote
// it (echoed verbatim, §4.2); opID is raw too and validated by the
// handler, which answers 400 on the response topic when it is missing or
// invalid.
type request struct {
	kind requestKind
	rid  string
	opID string
}

// parseTopic parses a register or poll topic: the exact prefix, then a
// query whose $rid is present once, non-empty, at most 256 bytes of UTF-8
// without control characters, spaces or any of & # + ?, and valid
// percent-encoding if it holds a '%' (Python encodes it; clients decode
// what they read). Parameters may come in any order; unknown ones are
// ignored.
func parseTopic(topic string) (request, error) {
	var r request
	var query string
	switch {
	case strings.HasPrefix(topic, registerPrefix):
		r.kind, query = kindRegister, topic[len(registerPrefix):]
	case strings.HasPrefix(topic, pollPrefix):
		r.kind, query = kindPoll, topic[len(pollPrefix):]
	default:
		return request{}, errTopic
	}
	seenRID, seenOp := false, false
	for kv := range strings.SplitSeq(query, "&") {
		k, v, _ := strings.Cut(kv, "=")
		switch {
		case k == paramRID:
			if seenRID || !validRID(v) {
				return request{}, errTopic
			}
			r.rid, seenRID = v, true
		case r.kind == kindPoll && strings.EqualFold(k, paramOperationID) && !seenOp:
			r.opID, seenOp = v, true
		}
	}
	if !seenRID {
		return request{}, errTopic
	}
	return r, nil
}

func validRID(rid string) bool {
	if rid == "" || len(rid) > maxRIDLen || !utf8.ValidString(rid) {
		return false
	}
	for _, c := range rid {
		if c <= ' ' || c == 0x7f || c == '&' || c == '#' || c == '+' || c == '?' {
			return false
		}
	}
	if strings.IndexByte(rid, '%') >= 0 {
		if _, err := url.PathUnescape(rid); err != nil {
			return false
		}
	}
	return true
}

// responseTopic formats §4.3: the decimal status, then $rid first and
// verbatim, then retry-after (lower-case, integer seconds) when positive.
func responseTopic(status int, rid string, retryAfter int) string {
	var b strings.Builder
	b.Grow(len(responsePrefix) + len(rid) + 32)
	b.WriteString(responsePrefix)
	b.WriteString(strconv.Itoa(status))
	b.WriteString("/?" + paramRID + "=")
	b.WriteString(rid)
	if retryAfter > 0 {
		b.WriteString("&" + paramRetryAfter + "=")
		b.WriteString(strconv.Itoa(retryAfter))
	}
	return b.String()
}
