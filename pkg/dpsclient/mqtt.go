package dpsclient

// Device registration over MQTT 3.1.1 with TLS (spec/dps-protocol.md §4),
// following the Node SDK's Mqtt transport exchange (spec/wire-captures.md
// §4): CONNECT (client id = registration id, username
// {scope}/registrations/{id}/api-version=...&ClientVersion=..., password =
// SAS token, or none with a client certificate), SUBSCRIBE
// $dps/registrations/res/#, PUBLISH register, then polls, until a terminal
// answer; UNSUBSCRIBE, DISCONNECT. A fresh connection per registration, as
// the SDK makes.

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/eclipse/paho.mqtt.golang/packets"
	"github.com/google/uuid"
	"github.com/opendps/opendps/internal/netutil"
)

// Device protocols (DeviceOptions.Protocol).
const (
	ProtocolHTTPS = "https"
	ProtocolMQTT  = "mqtt"
)

// MQTT wire values (spec §4.1, §4.2).
const (
	// DefaultMQTTPort is the MQTT-over-TLS port of DPS.
	DefaultMQTTPort = "8883"

	mqttResponseFilter = "$dps/registrations/res/#"
	mqttRegisterTopic  = "$dps/registrations/PUT/iotdps-register/?$rid="
	mqttPollTopic      = "$dps/registrations/GET/iotdps-get-operationstatus/?$rid="
	mqttKeepAlive      = 180 * time.Second // the Node SDK's
)

// mqttResponseRE reads a response topic: status, then the query ($rid first).
var mqttResponseRE = regexp.MustCompile(`^\$dps/registrations/res/(\d+)/\?(.*)$`)

// mqttDevice is one registration over MQTT.
type mqttDevice struct {
	opts  DeviceOptions
	token string
	body  []byte
	c     paho.Client
	msgs  chan paho.Message
}

func registerMQTT(ctx context.Context, o DeviceOptions) (*RegistrationResult, error) {
	o.Endpoint = strings.TrimSuffix(strings.TrimPrefix(o.Endpoint, "mqtts://"), "/")
	if err := o.prepare(); err != nil {
		return nil, err
	}
	if o.SymmetricKey == "" && o.GroupKey == "" && o.Certificate == nil && o.TLSConfig == nil {
		return nil, fmt.Errorf("%w: no credential: set SymmetricKey, GroupKey or Certificate", ErrDeviceOptions)
	}
	if _, _, err := net.SplitHostPort(o.Endpoint); err != nil {
		o.Endpoint = net.JoinHostPort(o.Endpoint, DefaultMQTTPort)
	}
	d := &mqttDevice{opts: o, msgs: make(chan paho.Message, 8)}
	var err error
	if d.token, err = o.sasToken(time.Now()); err != nil {
		return nil, err
	}
	body := struct {
		RegistrationID string          `json:"registrationId"`
		Payload        json.RawMessage `json:"payload,omitempty"`
	}{o.RegistrationID, o.Payload}
	if d.body, err = json.Marshal(body); err != nil {
		return nil, fmt.Errorf("%w: payload: %v", ErrDeviceOptions, err)
	}
	res := &RegistrationResult{}
	if err := d.connect(ctx); err != nil {
		return res, err
	}
	defer d.disconnect()
	return d.register(ctx, res)
}

// tlsConfig is the client TLS of the connection: TLSConfig, else one from
// CAFile and Certificate.
func (d *mqttDevice) tlsConfig(host string) (*tls.Config, error) {
	var tc *tls.Config
	if d.opts.TLSConfig != nil {
		tc = d.opts.TLSConfig.Clone()
	} else {
		var err error
		if tc, err = DeviceTLSConfig(d.opts.CAFile, d.opts.Certificate); err != nil {
			return nil, err
		}
	}
	if tc.ServerName == "" {
		tc.ServerName = host
	}
	return tc, nil
}

// connect opens the connection (TLS to Endpoint, *.localhost on loopback)
// and subscribes to the responses.
func (d *mqttDevice) connect(ctx context.Context) error {
	host, _, _ := net.SplitHostPort(d.opts.Endpoint)
	tc, err := d.tlsConfig(host)
	if err != nil {
		return err
	}
	o := d.opts
	opts := paho.NewClientOptions().AddBroker("ssl://" + o.Endpoint).SetClientID(o.RegistrationID).
		SetUsername(o.IDScope + "/registrations/" + o.RegistrationID + "/api-version=" + o.APIVersion + "&ClientVersion=" + url.QueryEscape(o.UserAgent)).
		SetPassword(d.token).SetCleanSession(true).SetProtocolVersion(4).SetKeepAlive(mqttKeepAlive).
		SetAutoReconnect(false).SetConnectRetry(false).SetConnectTimeout(o.RequestTimeout).SetOrderMatters(false).
		SetCustomOpenConnectionFn(func(u *url.URL, _ paho.ClientOptions) (net.Conn, error) {
			dctx, cancel := context.WithTimeout(ctx, o.RequestTimeout)
			defer cancel()
			raw, err := netutil.DialContext(dctx, "tcp", u.Host)
			if err != nil {
				return nil, err
			}
			c := tls.Client(raw, tc)
			if err := c.HandshakeContext(dctx); err != nil {
				raw.Close()
				return nil, err
			}
			return c, nil
		})
	d.c = paho.NewClient(opts)
	if err := wait(ctx, d.c.Connect()); err != nil {
		return connackError(err)
	}
	tok := d.c.Subscribe(mqttResponseFilter, 1, func(_ paho.Client, m paho.Message) {
		select {
		case d.msgs <- m:
		default: // an answer nobody waits for
		}
	})
	if err := wait(ctx, tok); err != nil {
		d.c.Disconnect(0)
		return fmt.Errorf("dpsclient: subscribe %s: %w", mqttResponseFilter, err)
	}
	if q := tok.(*paho.SubscribeToken).Result()[mqttResponseFilter]; q > 2 {
		d.c.Disconnect(0)
		return fmt.Errorf("dpsclient: subscribe %s refused (%#x)", mqttResponseFilter, q)
	}
	return nil
}

// disconnect ends as the Node SDK does: UNSUBSCRIBE (waiting for UNSUBACK,
// briefly), then DISCONNECT.
func (d *mqttDevice) disconnect() {
	d.c.Unsubscribe(mqttResponseFilter).WaitTimeout(time.Second)
	d.c.Disconnect(0)
}

// connackError maps a CONNECT refusal to a *DeviceError with the HTTP
// status of the same meaning (5, 4: 401; 3: 503; 1, 2: 400).
func connackError(err error) error {
	status := 0
	switch {
	case errors.Is(err, packets.ErrorRefusedNotAuthorised), errors.Is(err, packets.ErrorRefusedBadUsernameOrPassword):
		status = http.StatusUnauthorized
	case errors.Is(err, packets.ErrorRefusedServerUnavailable):
		status = http.StatusServiceUnavailable
	case errors.Is(err, packets.ErrorRefusedIDRejected), errors.Is(err, packets.ErrorRefusedBadProtocolVersion):
		status = http.StatusBadRequest
	}
	if status == 0 {
		return fmt.Errorf("dpsclient: MQTT connect: %w", err)
	}
	return &DeviceError{StatusCode: status, Message: "MQTT connection refused: " + err.Error()}
}

// register runs the register/poll loop over MQTT (as device.register).
func (d *mqttDevice) register(ctx context.Context, res *RegistrationResult) (*RegistrationResult, error) {
	st, wait, err := d.call(ctx, res, "")
	for {
		if err != nil {
			return res, err
		}
		res.RegistrationOperationStatus = *st
		if done, err := finished(st); done {
			return res, err
		}
		if err := sleep(ctx, d.pollWait(wait)); err != nil {
			return res, err
		}
		if st.OperationID != "" {
			res.Polls++
		}
		st, wait, err = d.call(ctx, res, st.OperationID)
	}
}

func (d *mqttDevice) pollWait(retryAfter time.Duration) time.Duration {
	return (&device{opts: d.opts}).pollWait(retryAfter)
}

// call publishes one request (register when opID is "", else a poll),
// waiting out 429 answers when RetryThrottled, and returns the answer's
// status and retry-after (negative when absent).
func (d *mqttDevice) call(ctx context.Context, res *RegistrationResult, opID string) (*RegistrationOperationStatus, time.Duration, error) {
	for {
		res.RoundTrips++
		st, ra, err := d.once(ctx, opID)
		var de *DeviceError
		if err == nil || !d.opts.RetryThrottled || !errors.As(err, &de) ||
			de.StatusCode != http.StatusTooManyRequests || res.ThrottleRetries >= d.opts.MaxThrottleRetries {
			return st, ra, err
		}
		res.ThrottleRetries++
		wait := ra
		if wait < 0 {
			wait = d.pollWait(-1)
		}
		if err := sleep(ctx, wait); err != nil {
			return nil, 0, err
		}
	}
}

// once publishes one request and waits (RequestTimeout) for the response
// carrying its $rid.
func (d *mqttDevice) once(ctx context.Context, opID string) (*RegistrationOperationStatus, time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, d.opts.RequestTimeout)
	defer cancel()
	rid := uuid.NewString()
	topic, payload := mqttRegisterTopic+rid, d.body
	if opID != "" {
		topic, payload = mqttPollTopic+rid+"&operationId="+opID, []byte(" ")
	}
	if err := wait(ctx, d.c.Publish(topic, 1, false, payload)); err != nil {
		return nil, 0, fmt.Errorf("dpsclient: publish: %w", err)
	}
	for {
		select {
		case <-ctx.Done():
			return nil, 0, fmt.Errorf("dpsclient: no response to %s: %w", topic, ctx.Err())
		case m := <-d.msgs:
			status, gotRID, ra, ok := parseMQTTResponse(m.Topic())
			if !ok || gotRID != rid {
				continue // another request's (or not a response)
			}
			if status/100 != 2 {
				return nil, ra, deviceError(status, ra, m.Payload())
			}
			var st RegistrationOperationStatus
			if err := json.Unmarshal(m.Payload(), &st); err != nil {
				return nil, ra, fmt.Errorf("dpsclient: response %s is not JSON: %w", m.Topic(), err)
			}
			return &st, ra, nil
		}
	}
}

// parseMQTTResponse reads $dps/registrations/res/{status}/?$rid={rid}[&retry-after={s}].
func parseMQTTResponse(topic string) (status int, rid string, retryAfter time.Duration, ok bool) {
	m := mqttResponseRE.FindStringSubmatch(topic)
	if m == nil {
		return 0, "", 0, false
	}
	status, _ = strconv.Atoi(m[1])
	retryAfter = -1
	for kv := range strings.SplitSeq(m[2], "&") {
		k, v, _ := strings.Cut(kv, "=")
		switch {
		case k == "$rid":
			rid = v
		case strings.EqualFold(k, "retry-after"):
			retryAfter = parseRetryAfter(v)
		}
	}
	return status, rid, retryAfter, rid != ""
}

// wait waits for a paho token or the context.
func wait(ctx context.Context, tok paho.Token) error {
	select {
	case <-tok.Done():
		return tok.Error()
	case <-ctx.Done():
		return ctx.Err()
	}
}
