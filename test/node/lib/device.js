// Device-side helpers over the official provisioning SDK
// (azure-iot-provisioning-device with the HTTPS transport): one register()
// per call, in promise form, with the requests it sent counted.
'use strict';

const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const { ProvisioningDeviceClient } = require('azure-iot-provisioning-device');
const { Http } = require('azure-iot-provisioning-device-http');
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

// devices returns register(registrationId, cred, opts) for one device
// endpoint and ID scope. cred is {symmetricKey} or {cert, privateKey}
// (PEM; cert may hold the chain). opts: {payload} for
// setProvisioningPayload, {idScope} to override the scope. It resolves
// with {state: registrationState, requests: {register, poll}}; on failure
// the SDK's error is thrown with .requests added.
function devices(host, idScope) {
  return async function register(registrationId, cred, opts = {}) {
    const client = ProvisioningDeviceClient.create(host, opts.idScope || idScope, new Http(),
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

// refused awaits a registration that must fail with an HTTP error status
// and returns {status, body, err}, after checking the DPS error body shape
// (spec/dps-protocol.md §2.7).
async function refused(promise) {
  const err = await rejection(promise);
  assert.ok(err.response && err.response.statusCode, `no HTTP response on ${err}`);
  const status = err.response.statusCode;
  assert.match(String(err.response.headers['content-type']), /application\/json/);
  const body = JSON.parse(err.responseBody);
  assert.equal(Math.floor(body.errorCode / 1000), status, 'errorCode / 1000 is the HTTP status');
  assert.ok(body.trackingId, 'trackingId');
  assert.ok(body.message, 'message');
  assert.ok(!Number.isNaN(Date.parse(body.timestampUtc)), `timestampUtc ${body.timestampUtc}`);
  return { status, body, err };
}

module.exports = { deriveKey, devices, rejection, refused };
