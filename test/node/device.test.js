// Device registration with the official device SDK
// (azure-iot-provisioning-device with the -http transport, or the Mqtt and
// MqttWs transports of -mqtt; symmetric-key and X.509 security clients)
// against a whole dev deployment. Run by e2e's TestDeviceRegistration
// (and TestDeviceThrottling), once per transport, through
// dpstest/nodetest, which pass the environment:
//
//   DPS_TRANSPORT     http (default), mqtt or mqttws
//   DEVICE_E2E        {suite, host, mqttHost, idScope, hubs: [hub1, hub2],
//                     harness, ...}: suite "main" runs every case but
//                     throttling; "throttle" runs only throttling. The
//                     other fields are the enrollments and credentials the
//                     Go side prepared for this transport
//                     (e2e/device_setup_test.go).
//   OPENDPS_WSS_PORT  (mqttws) the HTTPS device port, to which lib/shim.js
//                     sends the MqttWs transport's connections to port 443
//
// Each case checks the device's answer here, then asks the Go side
// (harness, e2e/device_harness_test.go) to check the hub simulator and the
// registration record. Cases run in order; the dead-hub case (HTTPS only)
// is last because it leaves hub1 marked unhealthy in the engine for a
// while.
//
// Where the transports differ: a credential the engine refuses (wrong
// key, group key, unknown CA, unknown ID scope) is an HTTP 401/404 with a
// DPS error body, but a CONNACK "not authorized" (5) over MQTT, where
// opendps authenticates at CONNECT; a 429 ends an HTTPS registration
// (ThrottlingError) but is retried by the MQTT transports after
// retry-after.
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const { harness } = require('./lib/harness');
const { TRANSPORTS, deriveKey, devices, rejection, refused, connectionRefused } = require('./lib/device');

const cfg = JSON.parse(process.env.DEVICE_E2E || 'null');
if (!cfg) throw new Error('DEVICE_E2E is not set');
const transport = process.env.DPS_TRANSPORT || 'http';
if (!TRANSPORTS.includes(transport)) throw new Error(`DPS_TRANSPORT ${transport} is not one of ${TRANSPORTS}`);
const overMQTT = transport !== 'http';
const [hub1, hub2] = cfg.hubs;
const call = harness(cfg.harness);
// What the SDK is given as provisioning host (spec/dps-protocol.md §11.2):
// host:port for HTTPS (lib/shim.js splits it) and MQTT; a bare host for
// MqttWs, which appends :443 (lib/shim.js redirects it).
const sdkHost = { http: cfg.host, mqtt: cfg.mqttHost, mqttws: String(cfg.host).split(':')[0] }[transport];
const register = devices(sdkHost, cfg.idScope, transport);
const registerHTTP = devices(cfg.host, cfg.idScope, 'http');
// Each suite registers only its own cases.
const suiteTest = (suite) => (name, fn) => { if (cfg.suite === suite) test(`${transport}: ${name}`, fn); };
const mainTest = suiteTest('main');
const throttleTest = suiteTest('throttle');
const httpTest = (name, fn) => { if (!overMQTT) mainTest(name, fn); };

const TIMESTAMP = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{7}Z$/;

const sym = (d) => ({ symmetricKey: d.primaryKey });
const x509 = (d) => ({ cert: d.cert, privateKey: d.key });
const sas = (primaryKey, secondaryKey) => ({ type: 'sas', symmetricKey: { primaryKey, secondaryKey } });
const assigned = (substatus) => ({ status: 'assigned', substatus });

// assertAssigned checks an assigned registrationState (§2.4).
function assertAssigned(state, want) {
  assert.equal(state.status, 'assigned');
  assert.equal(state.registrationId, want.regId);
  assert.equal(state.deviceId, want.deviceId || want.regId);
  assert.equal(state.substatus, want.substatus || 'initialAssignment');
  if (want.hub) assert.equal(state.assignedHub, want.hub);
  assert.ok(cfg.hubs.includes(state.assignedHub), `assignedHub ${state.assignedHub} is a linked hub`);
  assert.match(state.createdDateTimeUtc, TIMESTAMP);
  assert.match(state.lastUpdatedDateTimeUtc, TIMESTAMP);
  assert.ok(state.etag, 'etag');
}

// assertOneRoundTrip: the fast path answered "assigned" to the register
// request itself (HTTPS PUT, or MQTT register publish): no poll.
function assertOneRoundTrip(r) {
  assert.deepEqual({ register: r.requests.register, poll: r.requests.poll }, { register: 1, poll: 0 }, 'one register request, no poll');
  if (overMQTT) assert.deepEqual(r.requests.responses.map((x) => x.status), [200], 'one response: res/200');
}

// unauthorized checks the refusal of a credential the engine does not
// accept: HTTP 401 with errorCode, or (MQTT) CONNACK 5.
async function unauthorized(promise, errorCode) {
  if (overMQTT) {
    await connectionRefused(promise);
    return;
  }
  const f = await refused(promise);
  assert.equal(f.status, 401);
  assert.equal(f.body.errorCode, errorCode);
  assert.equal(f.err.constructor.name, 'UnauthorizedError');
}

mainTest('individual symmetric key: primary key, then secondary key on the same identity', async () => {
  const d = cfg.individual;
  const first = await register(d.regId, sym(d));
  assertAssigned(first.state, { regId: d.regId });
  assert.deepEqual(first.state.symmetricKey, {}, 'symmetricKey without enrollmentGroupId');
  assertOneRoundTrip(first);
  const want = { regId: d.regId, hub: first.state.assignedHub, auth: sas(d.primaryKey, d.secondaryKey), record: assigned('initialAssignment') };
  const before = await call('expect', want);

  const second = await register(d.regId, { symmetricKey: d.secondaryKey });
  assertAssigned(second.state, { regId: d.regId, hub: first.state.assignedHub });
  const after = await call('expect', want);
  assert.equal(after.generationId, before.generationId, 'same hub identity, not a new one');
});

mainTest('enrollment group: keys derived from the group keys register; the group key is refused', async () => {
  const g = cfg.group;
  const [primaryDev, secondaryDev, groupKeyDev] = g.devices;
  for (const [id, groupKey] of [[primaryDev, g.primaryKey], [secondaryDev, g.secondaryKey]]) {
    const r = await register(id, { symmetricKey: deriveKey(groupKey, id) });
    assertAssigned(r.state, { regId: id });
    assert.deepEqual(r.state.symmetricKey, { enrollmentGroupId: g.id });
    await call('expect', {
      regId: id, hub: r.state.assignedHub, record: assigned('initialAssignment'),
      auth: sas(deriveKey(g.primaryKey, id), deriveKey(g.secondaryKey, id)),
    });
  }
  await unauthorized(register(groupKeyDev, { symmetricKey: g.primaryKey }), 401000);
  await call('expect', { regId: groupKeyDev, hub: '', noRecord: true });
});

mainTest('X.509 individual enrollment: the enrolled client certificate registers', async () => {
  const d = cfg.x509Individual;
  const r = await register(d.regId, x509(d));
  assertAssigned(r.state, { regId: d.regId });
  assertOneRoundTrip(r);
  const info = r.state.x509.certificateInfo;
  assert.equal(info.sha256Thumbprint.toUpperCase(), d.sha256.toUpperCase());
  assert.match(info.subjectName, new RegExp(`CN=${d.regId}`));
  assert.equal(r.state.x509.enrollmentGroupId, undefined);
  await call('expect', {
    regId: d.regId, hub: r.state.assignedHub, record: assigned('initialAssignment'),
    auth: { type: 'selfSigned', x509Thumbprint: { primaryThumbprint: d.sha1 } },
  });
});

for (const [what, key] of [['a signing certificate', 'x509Signed'], ['a verified CA reference', 'x509CARef']]) {
  mainTest(`X.509 enrollment group with ${what}: leaf + intermediate register`, async () => {
    const d = cfg[key];
    const r = await register(d.regId, x509(d));
    assertAssigned(r.state, { regId: d.regId });
    assert.equal(r.state.x509.enrollmentGroupId, d.group);
    assert.equal(r.state.x509.certificateInfo.sha256Thumbprint.toUpperCase(), d.sha256.toUpperCase());
    assert.equal(r.state.x509.signingCertificateInfo.sha256Thumbprint.toUpperCase(), d.anchorSha256.toUpperCase());
    await call('expect', {
      regId: d.regId, hub: r.state.assignedHub, record: assigned('initialAssignment'),
      auth: { type: 'certificateAuthority' },
    });
  });
}

mainTest('X.509 certificate of an unknown CA is refused (401002; MQTT: CONNACK 5)', async () => {
  const d = cfg.x509Untrusted;
  await unauthorized(register(d.regId, x509(d)), 401002);
  await call('expect', { regId: d.regId, hub: '', noRecord: true });
});

mainTest('an enrollment deviceId names the hub identity', async () => {
  const d = cfg.deviceIdEnrollment;
  assert.notEqual(d.deviceId, d.regId);
  const r = await register(d.regId, sym(d));
  assertAssigned(r.state, { regId: d.regId, deviceId: d.deviceId });
  await call('expect', { regId: d.regId, deviceId: d.deviceId, hub: r.state.assignedHub, record: assigned('initialAssignment') });
  await call('expect', { regId: d.regId, deviceId: d.regId, hub: '' });
});

mainTest('disabled individual enrollment and disabled group: status disabled, no identity', async () => {
  const g = cfg.disabledGroup;
  const cases = [
    [cfg.disabled.regId, cfg.disabled.primaryKey],
    [g.devices[0], deriveKey(g.primaryKey, g.devices[0])],
  ];
  for (const [id, key] of cases) {
    const err = await rejection(register(id, { symmetricKey: key }));
    assert.ok(err instanceof SyntaxError, `${err}`);
    assert.match(err.message, /status is disabled/);
    assert.equal(err.result.status, 'disabled');
    assert.equal(err.result.registrationState.registrationId, id);
    await call('expect', { regId: id, hub: '', noRecord: true });
  }
});

mainTest('wrong key: 401 with errorCode 401000 (MQTT: CONNACK 5)', async () => {
  const d = cfg.wrongKey;
  await unauthorized(register(d.regId, sym(d)), 401000);
  await call('expect', { regId: d.regId, hub: '', noRecord: true });
});

mainTest('unknown ID scope: 404 (MQTT: CONNACK 5)', async () => {
  const d = cfg.individual;
  const p = register(d.regId, sym(d), { idScope: '0ne0000FFFF' });
  if (overMQTT) {
    await connectionRefused(p);
    return;
  }
  const f = await refused(p);
  assert.equal(f.status, 404);
  assert.equal(f.body.errorCode, 404204);
});

// Reprovisioning (§7.6): the device registers on hub1, its hub twin gets
// data, its enrollment moves to hub2, and it registers again.
const reprovisioning = [
  { name: 'migrate', policy: '{updateHubAssignment: true, migrateDeviceData: true}', hub: () => hub2, substatus: 'deviceDataMigrated', keepsData: true },
  { name: 'reset', policy: '{updateHubAssignment: true, migrateDeviceData: false}', hub: () => hub2, substatus: 'deviceDataReset', keepsData: false },
  { name: 'never', policy: '{updateHubAssignment: false, migrateDeviceData: true}', hub: () => hub1, substatus: 'initialAssignment', keepsData: true },
  { name: 'neverReset', policy: '{updateHubAssignment: false, migrateDeviceData: false}', hub: () => hub1, substatus: 'initialAssignment', keepsData: true },
];

for (const c of reprovisioning) {
  mainTest(`reprovisioning ${c.policy}: enrollment moved to hub2 -> ${c.substatus}`, async () => {
    const d = cfg.reprovision[c.name];
    const first = await register(d.regId, sym(d));
    assertAssigned(first.state, { regId: d.regId, hub: hub1 });
    await call('setTwin', { hub: hub1, deviceId: d.regId, tags: { site: 'lab' }, desired: { extra: 1 } });
    await call('moveEnrollment', { regId: d.regId, iotHubs: [hub2] });

    const second = await register(d.regId, sym(d));
    assertAssigned(second.state, { regId: d.regId, hub: c.hub(), substatus: c.substatus });
    const twin = c.keepsData
      ? { tags: { fleet: 'e2e', site: 'lab' }, desired: { mode: 'initial', extra: 1 } }
      : { tags: { fleet: 'e2e' }, desired: { mode: 'initial' }, noTags: ['site'], noDesired: ['extra'] };
    // expect also checks that the identity exists on no other hub: the old
    // one was removed (migrate, reset), or none was made on hub2 (never).
    await call('expect', { regId: d.regId, hub: c.hub(), ...twin, record: assigned(c.substatus) });
    if (c.name !== 'reset') return;

    // Reset back to the hub of the initial assignment.
    await call('moveEnrollment', { regId: d.regId, iotHubs: [hub1] });
    const back = await register(d.regId, sym(d));
    const substatus = 'reprovisionedToInitialAssignment';
    assertAssigned(back.state, { regId: d.regId, hub: hub1, substatus });
    await call('expect', { regId: d.regId, hub: hub1, tags: { fleet: 'e2e' }, desired: { mode: 'initial' }, record: assigned(substatus) });
  });
}

mainTest('deleting the registration state makes the next registration an initial assignment', async () => {
  const d = cfg.reprovision.delete;
  const first = await register(d.regId, sym(d));
  assertAssigned(first.state, { regId: d.regId, hub: hub1 });
  await call('moveEnrollment', { regId: d.regId, iotHubs: [hub2] });
  const moved = await register(d.regId, sym(d));
  assertAssigned(moved.state, { regId: d.regId, hub: hub2, substatus: 'deviceDataMigrated' });

  await call('deleteRegistration', { regId: d.regId });
  await call('expect', { regId: d.regId, hub: hub2, noRecord: true });
  const again = await register(d.regId, sym(d));
  assertAssigned(again.state, { regId: d.regId, hub: hub2, substatus: 'initialAssignment' });
  await call('expect', { regId: d.regId, hub: hub2, record: assigned('initialAssignment') });
});

mainTest('custom allocation: the webhook chooses the hub, the initial twin and the payload', async () => {
  const d = cfg.customOk;
  const payload = { modelId: 'dtmi:opendps:toaster;1', firmware: '1.2.3' };
  const r = await register(d.regId, sym(d), { payload });
  assertAssigned(r.state, { regId: d.regId, hub: hub2 });
  assert.deepEqual(r.state.payload, { from: 'webhook', echo: payload });
  await call('expectWebhook', { regId: d.regId, payload });
  // The webhook's initialTwin replaces the enrollment's (tag fleet).
  await call('expect', {
    regId: d.regId, hub: hub2, record: assigned('initialAssignment'),
    tags: { allocatedBy: 'webhook' }, desired: { plan: 'gold' }, noTags: ['fleet'],
  });
});

mainTest('custom allocation: a webhook answering 500 fails the registration', async () => {
  const d = cfg.customFail;
  const err = await rejection(register(d.regId, sym(d)));
  assert.equal(err.constructor.name, 'DeviceRegistrationFailedError', `${err}`);
  assert.equal(err.result.status, 'failed');
  const st = err.result.registrationState;
  assert.equal(st.errorCode, 400210);
  assert.match(st.errorMessage, /500/);
  assert.equal(st.assignedHub, undefined);
  await call('expectWebhook', { regId: d.regId, payload: null });
  await call('expect', { regId: d.regId, hub: '', record: { status: 'failed', errorCode: 400210 } });
});

mainTest('slow path: a webhook slower than the fast-path budget makes the SDK poll, then succeed', async () => {
  const g = cfg.customSlow;
  const id = g.devices[0];
  const payload = { slow: true };
  const r = await register(id, { symmetricKey: deriveKey(g.primaryKey, id) }, { payload });
  assertAssigned(r.state, { regId: id, hub: hub2 });
  assert.equal(r.requests.register, 1);
  assert.ok(r.requests.poll >= 1, `polls: ${r.requests.poll}`);
  assert.deepEqual(r.state.payload, { from: 'webhook', echo: payload });
  await call('expectWebhook', { regId: id, group: g.id, payload });
  await call('expect', { regId: id, hub: hub2, record: assigned('initialAssignment'), tags: { allocatedBy: 'webhook' } });
});

// The one-round-trip fast path: over MQTT the register response is
// res/200 with status "assigned", and the Node transport resolves without
// polling (docs/mqtt.md).
mainTest('fast path: registrations are answered "assigned" in one round trip', async () => {
  for (const d of cfg.fastPath) {
    const r = await register(d.regId, sym(d));
    assertAssigned(r.state, { regId: d.regId });
    assertOneRoundTrip(r);
    await call('expect', { regId: d.regId, hub: r.state.assignedHub, record: assigned('initialAssignment') });
  }
});

httpTest('a dead hub is skipped: every device lands on the live hub', async () => {
  const g = cfg.deadHub;
  await call('setHubDown', { hub: hub1, down: true });
  try {
    const results = await Promise.all(g.devices.map((id) => register(id, { symmetricKey: deriveKey(g.primaryKey, id) })));
    for (const [i, r] of results.entries()) {
      const id = g.devices[i];
      assertAssigned(r.state, { regId: id, hub: hub2 });
      await call('expect', { regId: id, hub: hub2, record: assigned('initialAssignment') });
    }
  } finally {
    await call('setHubDown', { hub: hub1, down: false });
  }
});

// useUpRegistrations registers over HTTPS until the instance's
// registration limit refuses (the Go side sets a small one) and returns
// that refusal.
async function useUpRegistrations(d) {
  for (let i = 0; i < 100; i++) {
    try {
      await registerHTTP(d.regId, sym(d));
    } catch (err) {
      if (!err.response || err.response.statusCode !== 429) throw err;
      return refused(Promise.reject(err));
    }
  }
  assert.fail('100 registrations and no 429');
}

throttleTest('throttling: 429 with an integer Retry-After (HTTPS: ThrottlingError; MQTT: retried)', async () => {
  const d = cfg.throttle;
  if (!overMQTT) {
    const f = await useUpRegistrations(d);
    assert.equal(f.status, 429);
    assert.equal(f.err.constructor.name, 'ThrottlingError');
    assert.match(String(f.err.response.headers['retry-after']), /^[1-9]\d*$/);
    assert.equal(Math.floor(f.body.errorCode / 1000), 429);
    return;
  }
  // MQTT: res/429/?$rid=..&retry-after=N; the SDK waits N s and registers
  // again. A token may come back between the last HTTPS refusal and the
  // MQTT register (one every few seconds): then try again.
  for (let attempt = 1; ; attempt++) {
    await useUpRegistrations(d);
    const start = Date.now();
    const r = await register(d.regId, sym(d));
    assertAssigned(r.state, { regId: d.regId });
    const throttled = r.requests.responses.filter((x) => x.status === 429);
    if (throttled.length === 0 && attempt < 3) continue;
    assert.ok(throttled.length >= 1, `responses: ${JSON.stringify(r.requests.responses)}`);
    for (const x of throttled) assert.match(String(x.retryAfter), /^[1-9]\d*$/, 'retry-after is an integer');
    assert.equal(r.requests.register, throttled.length + 1, 'one register publish per 429, then the one answered');
    const waited = throttled.reduce((sum, x) => sum + Number(x.retryAfter) * 1000, 0);
    assert.ok(Date.now() - start >= waited - 50, `resolved after ${Date.now() - start} ms, retry-after asked ${waited} ms`);
    return;
  }
});
