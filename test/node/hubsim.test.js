// Drives the hub simulator (internal/hubsim) with the official azure-iothub
// Registry. Run by internal/hubsim/node_test.go:
//
//   HUB_CONNECTION_STRING='HostName=hub1.localhost:PORT;SharedAccessKeyName=iothubowner;SharedAccessKey=...' \
//   NODE_EXTRA_CA_CERTS=ca.pem node --require ./lib/shim.js --test hubsim.test.js
//
// SDK calls are made in callback style and wrapped here: some SDK methods
// called without a callback return promises that never settle.
'use strict';

const { test } = require('node:test');
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const { Registry } = require('azure-iothub');

const connStr = process.env.HUB_CONNECTION_STRING;
if (!connStr) throw new Error('HUB_CONNECTION_STRING is not set');

const TIMEOUT = { timeout: 20000 };
const suffix = crypto.randomBytes(4).toString('hex');

// call invokes obj[method](...args, cb) and resolves with {result, response}.
function call(obj, method, ...args) {
  return new Promise((resolve, reject) => {
    obj[method](...args, (err, result, response) => {
      if (err) reject(err);
      else resolve({ result, response });
    });
  });
}

// rejects asserts that obj[method](...args) fails with HTTP status and the
// named SDK error class, and returns the error.
async function rejects(status, errorName, obj, method, ...args) {
  let err;
  try {
    await call(obj, method, ...args);
  } catch (e) {
    err = e;
  }
  assert.ok(err, `${method} succeeded, want HTTP ${status}`);
  assert.equal(err.response && err.response.statusCode, status, `${method}: ${err}`);
  if (errorName) assert.equal(err.constructor.name, errorName, `${method}: ${err}`);
  return err;
}

function withKey(cs, key) {
  return cs.replace(/SharedAccessKey=[^;]*/, 'SharedAccessKey=' + key);
}

const registry = Registry.fromConnectionString(connStr);

test('symmetric-key device: create, get, twin, delete', TIMEOUT, async () => {
  const id = 'node-sas-' + suffix;
  const created = (await call(registry, 'create', { deviceId: id, status: 'enabled' })).result;
  assert.equal(created.deviceId, id);
  assert.equal(created.authentication.type, 'sas');
  assert.match(created.authentication.symmetricKey.primaryKey, /^[A-Za-z0-9+/]{43}=$/);
  assert.ok(created.etag, 'etag');
  assert.ok(created.generationId, 'generationId');

  const got = (await call(registry, 'get', id)).result;
  assert.equal(got.authentication.symmetricKey.primaryKey, created.authentication.symmetricKey.primaryKey);
  assert.equal(got.etag, created.etag);

  await rejects(409, 'DeviceAlreadyExistsError', registry, 'create', { deviceId: id });

  const twin = (await call(registry, 'getTwin', id)).result;
  assert.equal(twin.deviceId, id);
  assert.ok(twin.etag);
  const etag0 = twin.etag; // twin.update() updates twin itself
  const patch = { tags: { site: 'lab', floor: { n: 2 } }, properties: { desired: { telemetryInterval: 30 } } };
  const updated = (await call(twin, 'update', patch)).result;
  assert.equal(updated.tags.site, 'lab');
  assert.equal(updated.properties.desired.telemetryInterval, 30);
  assert.notEqual(updated.etag, etag0);

  const readBack = (await call(registry, 'getTwin', id)).result;
  assert.deepEqual(readBack.tags, { site: 'lab', floor: { n: 2 } });
  assert.equal(readBack.properties.desired.telemetryInterval, 30);
  assert.equal(readBack.properties.desired.$version, 2);

  // Registry.updateTwin with a merge patch and an explicit etag; a stale
  // etag is refused.
  const merged = (await call(registry, 'updateTwin', id, { tags: { floor: { n: null, wing: 'b' } } }, readBack.etag)).result;
  assert.deepEqual(merged.tags, { site: 'lab', floor: { wing: 'b' } });
  await rejects(412, 'InvalidEtagError', registry, 'updateTwin', id, { tags: { x: 1 } }, readBack.etag);

  // update (If-Match: *) keeps the generated keys when none are sent.
  const disabled = (await call(registry, 'update', { deviceId: id, status: 'disabled' })).result;
  assert.equal(disabled.status, 'disabled');
  assert.equal(disabled.authentication.symmetricKey.primaryKey, created.authentication.symmetricKey.primaryKey);

  await call(registry, 'delete', id);
  await rejects(404, 'DeviceNotFoundError', registry, 'get', id);
  await rejects(404, 'DeviceNotFoundError', registry, 'getTwin', id);
  await rejects(404, 'DeviceNotFoundError', registry, 'delete', id);
});

test('given symmetric keys are kept', TIMEOUT, async () => {
  const id = 'node-keys-' + suffix;
  const primaryKey = crypto.randomBytes(32).toString('base64');
  const secondaryKey = crypto.randomBytes(32).toString('base64');
  const dev = { deviceId: id, authentication: { symmetricKey: { primaryKey, secondaryKey } } };
  const created = (await call(registry, 'create', dev)).result;
  assert.equal(created.authentication.type, 'sas');
  assert.equal(created.authentication.symmetricKey.primaryKey, primaryKey);
  assert.equal(created.authentication.symmetricKey.secondaryKey, secondaryKey);
  await call(registry, 'delete', id);
});

test('X.509 self-signed, CA-authority and edge devices', TIMEOUT, async () => {
  const tp = crypto.createHash('sha1').update(suffix).digest('hex').toUpperCase();
  const cases = [
    { deviceId: 'node-x509-' + suffix, authentication: { x509Thumbprint: { primaryThumbprint: tp } }, type: 'selfSigned' },
    { deviceId: 'node-ca-' + suffix, authentication: { type: 'certificateAuthority' }, type: 'certificateAuthority' },
    { deviceId: 'node-edge-' + suffix, capabilities: { iotEdge: true }, type: 'sas' },
  ];
  for (const c of cases) {
    const { type, ...dev } = c;
    const created = (await call(registry, 'create', dev)).result;
    assert.equal(created.authentication.type, type, c.deviceId);
    const got = (await call(registry, 'get', c.deviceId)).result;
    assert.equal(got.authentication.type, type, c.deviceId);
    if (type === 'selfSigned') assert.equal(got.authentication.x509Thumbprint.primaryThumbprint, tp);
    if (c.capabilities) assert.equal(got.capabilities.iotEdge, true);
    const twin = (await call(registry, 'getTwin', c.deviceId)).result;
    assert.equal(twin.authenticationType, type);
  }
  const list = (await call(registry, 'list')).result;
  const ids = list.map((d) => d.deviceId);
  for (const c of cases) assert.ok(ids.includes(c.deviceId), `list has ${c.deviceId}`);
  for (const c of cases) await call(registry, 'delete', c.deviceId);
});

test('a wrong key is refused with 401', TIMEOUT, async () => {
  const wrong = Registry.fromConnectionString(withKey(connStr, crypto.randomBytes(32).toString('base64')));
  await rejects(401, 'UnauthorizedError', wrong, 'get', 'anything');
  await rejects(401, 'UnauthorizedError', wrong, 'create', { deviceId: 'never-' + suffix });
});
