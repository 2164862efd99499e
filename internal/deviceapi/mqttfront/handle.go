package mqttfront

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/opendps/opendps/internal/apierr"
	"github.com/opendps/opendps/internal/deviceapi/devreq"
	"github.com/opendps/opendps/internal/engine"
	"github.com/opendps/opendps/internal/model"
)

// answer is a response to one request (§4.3).
type answer struct {
	status     int    // decimal status of the topic
	retryAfter int    // seconds; 0: no retry-after parameter
	payload    []byte // JSON, always
}

// dispatch answers a request publish. The engine call runs in its own
// goroutine (bounded by Limits.MaxInflight per connection; beyond it the
// request is answered 429 at once) so that the connection keeps reading
// (PINGREQ, PUBACK) meanwhile.
func (s *Server) dispatch(cl *mqtt.Client, sess *session, r request, body []byte) {
	if !sess.tryAcquire() {
		e := apierr.New(apierr.CodeThrottled, "Too many requests in flight on this connection; retry after 1 second.")
		e.Header = http.Header{"Retry-After": {"1"}}
		s.deliver(cl, sess, r, s.errorAnswer(sess, r, e))
		return
	}
	s.reqWG.Add(1)
	go func() {
		defer s.reqWG.Done()
		defer sess.releaseSlot()
		ctx, cancel := context.WithTimeout(sess.ctx, s.lim.RequestTimeout)
		defer cancel()
		a := s.serve(ctx, sess, r, body)
		if sess.ctx.Err() != nil {
			return // the device left (or the server closes): nobody to answer
		}
		s.deliver(cl, sess, r, a)
	}()
}

// serve calls the engine for one request and renders its answer.
func (s *Server) serve(ctx context.Context, sess *session, r request, body []byte) answer {
	start := time.Now()
	req := sess.request()
	var res *engine.Result
	var err error
	switch r.kind {
	case kindRegister:
		if req.Body, err = devreq.DecodeRegistration(body, sess.regID, s.lim.MaxBody); err == nil {
			res, err = s.engine.Register(ctx, req)
		}
	case kindPoll:
		if err = devreq.ValidateOperationID(r.opID); err == nil {
			res, err = s.engine.OperationStatus(ctx, req, r.opID)
		}
	}
	a := s.render(sess, r, res, err)
	sess.log.Debug("device request", "route", r.kind.String(), "status", a.status, "op_id", clipID(r.opID),
		"rid", clipID(r.rid), "duration", time.Since(start))
	return a
}

// render turns an engine answer into a response: 202 while assigning, 200
// when terminal (§4.3), the errors in the DPS shape.
func (s *Server) render(sess *session, r request, res *engine.Result, err error) answer {
	if err != nil {
		return s.errorAnswer(sess, r, err)
	}
	st, retry, err := devreq.Normalize(res, sess.regID, sess.log)
	if err != nil {
		return s.errorAnswer(sess, r, err)
	}
	b, err := json.Marshal(st)
	if err != nil {
		return s.errorAnswer(sess, r, err)
	}
	status := http.StatusOK
	if st.Status == model.OpStatusAssigning {
		status = http.StatusAccepted
	}
	return answer{status: status, retryAfter: retry, payload: b}
}

// timestampFormat is the DPS timestampUtc form (as apierr writes it).
const timestampFormat = "2006-01-02T15:04:05.0000000Z"

// errorAnswer renders err as the DPS error body (§2.7, §4.6) with its
// status on the topic and its Retry-After, if any, as retry-after.
// Errors that are not *apierr.Error are 500 with a generic message; the
// cause is logged with the tracking id.
func (s *Server) errorAnswer(sess *session, r request, err error) answer {
	var e *apierr.Error
	if !errors.As(err, &e) {
		e = apierr.Wrap(err, apierr.CodeInternal, "Internal error.")
	}
	status := e.Status
	if status < 400 || status > 599 {
		status = http.StatusInternalServerError
	}
	tid := uuid.NewString()
	if status >= 500 {
		sess.log.Error("request failed", "route", r.kind.String(), apierr.LogKeyRequestID, tid, "err", err)
	} else {
		sess.log.Debug("request refused", "route", r.kind.String(), "status", status, "code", e.Code, apierr.LogKeyRequestID, tid)
	}
	retry := 0
	if v := e.Header.Get("Retry-After"); v != "" {
		if n, err := strconv.Atoi(v); err == nil && n > 0 {
			retry = n
		}
	}
	b, _ := json.Marshal(apierr.Body{ErrorCode: e.Code, TrackingID: tid, Message: e.Message,
		TimestampUTC: time.Now().UTC().Format(timestampFormat)})
	return answer{status: status, retryAfter: retry, payload: b}
}

// deliver publishes a response to the one client that asked (never
// through the broker's routing: every device subscribes to the same
// filter), at the QoS of its subscription capped at 1 (§4.4). A client
// not subscribed to ResponseFilter gets nothing, as MQTT routing would
// give it nothing.
func (s *Server) deliver(cl *mqtt.Client, sess *session, r request, a answer) {
	sub, ok := cl.State.Subscriptions.Get(ResponseFilter)
	if !ok {
		sess.log.Debug("response dropped: the device is not subscribed", "filter", ResponseFilter, "rid", clipID(r.rid))
		return
	}
	pk := packets.Packet{
		FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: min(sub.Qos, 1)},
		TopicName:   responseTopic(a.status, r.rid, a.retryAfter),
		Payload:     a.payload,
		Created:     time.Now().Unix(),
	}
	if pk.FixedHeader.Qos > 0 {
		id, err := cl.NextPacketID()
		if err != nil {
			sess.log.Warn("response dropped: no free packet id", "err", err)
			return
		}
		pk.PacketID = uint16(id)
		if cl.State.Inflight.Set(pk) { // the device's PUBACK clears it
			atomic.AddInt64(&s.broker.Info.Inflight, 1)
		}
	}
	if err := cl.WritePacket(pk); err != nil {
		sess.log.Debug("response not written", "err", err)
	}
}
