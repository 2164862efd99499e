// Device-side helpers over the official provisioning SDK
// (azure-iot-provisioning-device with the Http transport, or the Mqtt and
// MqttWs transports of azure-iot-provisioning-device-mqtt): one register()
// per call, in promise form, with the requests it sent counted.
'use strict';

const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const { ProvisioningDeviceClient } = require('azure-iot-provisioning-device');
const { Http } = require('azure-iot-provisioning-device-http');
const { Mqtt, MqttWs } = require('azure-iot-provisioning-device-mqtt');
const { SymmetricKeySecurityClient } = require('azure-iot-security-symmetric-key');
const { X509Security } = require('azure-iot-security-x509');
const traffic = require('./traffic');

// deriveKey is the device key of a symmetric-key enrollment group
// (spec/dps-protocol.md §3.2): base64(HMAC-SHA256(base64dec(groupKey), id)).
function deriveKey(groupKey, registrationId) {
  return crypto.createHmac('sha256', Buffer.from(groupKey, 'base64'))
    .update(registrationId, 'utf8').digest('base64');
}

function securityClient(registrationId, cred) {
  if (cred.symmetricKey) return new SymmetricKeySecurityClient(registrationId, cred.symmetricKey);
  if (cred.cert) return new X509Security(registrationId, { cert: cred.cert, key: cred.privateKey });
  throw new Error('device: a credential needs symmetricKey, or cert and privateKey');
}

// TRANSPORTS are the transports a suite runs on (DPS_TRANSPORT).
const TRANSPORTS = ['http', 'mqtt', 'mqttws'];

function newTransport(name) {
  switch (name) {
    case 'http': return new Http();
    case 'mqtt': return new Mqtt();
    case 'mqttws': return new MqttWs();
  }
  throw new Error(`device: unknown transport ${name}; want one of ${TRANSPORTS.join(', ')}`);
}

// devices returns register(registrationId, cred, opts) for one device
// endpoint, ID scope and transport ('http' by default, 'mqtt', 'mqttws').
// host is what the SDK is given: host:port for HTTP (through the shim) and
// MQTT, a bare host for MqttWs (which appends :443). cred is
// {symmetricKey} or {cert, privateKey} (PEM; cert may hold the chain).
// opts: {payload} for setProvisioningPayload, {idScope} to override the
// scope. It resolves with {state: registrationState, requests: {register,
// poll, responses}}; on failure the SDK's error is thrown with .requests
// added.
function devices(host, idScope, transport = 'http') {
  newTransport(transport); // fail early on an unknown name
  return async function register(registrationId, cred, opts = {}) {
    const client = ProvisioningDeviceClient.create(host, opts.idScope || idScope, newTransport(transport),
      securityClient(registrationId, cred));
    if (opts.payload !== undefined) client.setProvisioningPayload(opts.payload);
    const m = traffic.mark();
    try {
      const state = await new Promise((resolve, reject) => {
        client.register((err, result) => (err ? reject(err) : resolve(result)));
      });
      return { state, requests: traffic.since(m) };
    } catch (err) {
      err.requests = traffic.since(m);
      throw err;
    }
  };
}

// rejection awaits a promise that must reject and returns the error.
async function rejection(promise) {
  try {
    await promise;
  } catch (err) {
    return err;
  }
  assert.fail('the registration succeeded');
}

// refused awaits a registration that must fail with an error status, an
// HTTP one or the status of an MQTT response topic, and returns {status,
// body, err}, after checking the DPS error body shape (spec/dps-protocol.md
// §2.7, §4.6).
async function refused(promise) {
  const err = await rejection(promise);
  let status;
  let body;
  if (err.transportObject && err.transportObject.topic) { // MQTT: translateError(..., {topic, payload})
    const m = /^\$dps\/registrations\/res\/(\d+)\//.exec(err.transportObject.topic);
    assert.ok(m, `not a response topic: ${err.transportObject.topic}`);
    status = Number(m[1]);
    body = err.result;
  } else {
    assert.ok(err.response && err.response.statusCode, `no HTTP response on ${err}`);
    status = err.response.statusCode;
    assert.match(String(err.response.headers['content-type']), /application\/json/);
    body = JSON.parse(err.responseBody);
  }
  assert.equal(Math.floor(body.errorCode / 1000), status, 'errorCode / 1000 is the HTTP status');
  assert.ok(body.trackingId, 'trackingId');
  assert.ok(body.message, 'message');
  assert.ok(!Number.isNaN(Date.parse(body.timestampUtc)), `timestampUtc ${body.timestampUtc}`);
  return { status, body, err };
}

// connectionRefused awaits a registration over MQTT that must fail at
// CONNECT with return code 5, "not authorized" (spec/dps-protocol.md
// §4.1), and returns the error.
async function connectionRefused(promise) {
  const err = await rejection(promise);
  assert.match(String(err.message), /Not authorized/i, `${err}`);
  return err;
}

module.exports = { TRANSPORTS, deriveKey, devices, rejection, refused, connectionRefused };
