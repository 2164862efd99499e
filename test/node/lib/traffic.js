// Counts the DPS device API requests the SDKs send, so that a test can
// tell a registration answered in one round trip (one register request)
// from one that polled (operation-status requests), on every transport:
//
//   HTTPS  PUT .../register and GET .../operations/{operationId}, seen by
//          wrapping https.request (azure-iot-http-base reads it per call);
//   MQTT   publishes to $dps/registrations/PUT/iotdps-register/... and
//          $dps/registrations/GET/iotdps-get-operationstatus/..., seen by
//          wrapping MqttBase.prototype.publish (azure-iot-mqtt-base, which
//          the Mqtt and MqttWs transports share), and the responses
//          ($dps/registrations/res/{status}/?$rid=...&retry-after=...),
//          seen by wrapping MqttBase.prototype._messageCallback.
//
// Requests and responses are only observed, never changed.
'use strict';

const https = require('node:https');

const counts = { register: 0, poll: 0, other: 0 };
const responses = []; // MQTT responses: {status, retryAfter}

// kind classifies an HTTPS request by method and path (spec/dps-protocol.md §2.1).
function kind(method, path) {
  const p = String(path).split('?')[0];
  if (method === 'PUT' && /\/registrations\/[^/]+\/register$/.test(p)) return 'register';
  if (method === 'GET' && /\/registrations\/[^/]+\/operations\/[^/]+$/.test(p)) return 'poll';
  return 'other';
}

// mqttKind classifies an MQTT publish topic (spec/dps-protocol.md §4.2).
function mqttKind(topic) {
  const t = String(topic);
  if (t.startsWith('$dps/registrations/PUT/iotdps-register/?')) return 'register';
  if (t.startsWith('$dps/registrations/GET/iotdps-get-operationstatus/?')) return 'poll';
  return 'other';
}

// response parses a response topic: {status, retryAfter} or null.
function response(topic) {
  const m = /^\$dps\/registrations\/res\/(\d+)\/\?(.*)$/.exec(String(topic));
  if (!m) return null;
  const q = new URLSearchParams(m[2]);
  return { status: Number(m[1]), retryAfter: q.has('retry-after') ? q.get('retry-after') : undefined };
}

const original = https.request;
https.request = function request(...args) {
  let method = 'GET';
  let path = '/';
  for (const a of args) {
    if (typeof a === 'string' || a instanceof URL) {
      path = new URL(a).pathname;
    } else if (a && typeof a === 'object') {
      method = String(a.method || method).toUpperCase();
      path = a.path || path;
    }
  }
  counts[kind(method, path)]++;
  return original.apply(this, args);
};

try {
  const { MqttBase } = require('azure-iot-mqtt-base');
  const publish = MqttBase.prototype.publish;
  MqttBase.prototype.publish = function countedPublish(topic, ...rest) {
    counts[mqttKind(topic)]++;
    return publish.call(this, topic, ...rest);
  };
  const onMessage = MqttBase.prototype._messageCallback;
  MqttBase.prototype._messageCallback = function observedMessage(topic, ...rest) {
    const r = response(topic);
    if (r) responses.push(r);
    return onMessage.call(this, topic, ...rest);
  };
} catch (err) {
  if (err.code !== 'MODULE_NOT_FOUND') throw err;
}

// mark returns the counts so far; since(mark) the requests sent after it
// and the MQTT responses received after it.
function mark() {
  return { ...counts, responses: responses.length };
}

function since(m) {
  return {
    register: counts.register - m.register,
    poll: counts.poll - m.poll,
    responses: responses.slice(m.responses),
  };
}

module.exports = { mark, since, kind, mqttKind, response };
