// Conformance of the opendps service API with the official Node service SDK
// (azure-iot-provisioning-service, ProvisioningServiceClient). Run by
// internal/serviceapi's TestNodeServiceSDK through dpstest/nodetest, which
// serves the API over TLS and passes in:
//
//   DPS_CONNECTION_STRING        provisioningserviceowner of the instance
//   DPS_READ_CONNECTION_STRING   a policy with EnrollmentRead only
//   DPS_WRONG_CONNECTION_STRING  the owner policy with a wrong key
//   HUB1                         a hub linked to the instance
//   X509_CERT_PEM, X509_CERT_SHA256   a device certificate and its thumbprint
//   SIGNING_CERT_PEM             a CA certificate for a signing-certificate group
//   CA_VERIFIED, CA_UNVERIFIED   names of CA certificates of the instance
//   REG_ID                       a registration record (no group) to get and delete
//   REG_GROUP, REG_GROUP_COUNT   a group id and how many records it has
//
// SDK quirks worked around (shared/spec/wire-captures.md §6):
// runBulkEnrollmentOperation without a callback never settles, and
// query.next() without an argument re-reads page 1.
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const { ProvisioningServiceClient } = require('azure-iot-provisioning-service');

function env(name) {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set`);
  return v;
}

const owner = ProvisioningServiceClient.fromConnectionString(env('DPS_CONNECTION_STRING'));
const readOnly = ProvisioningServiceClient.fromConnectionString(env('DPS_READ_CONNECTION_STRING'));
const wrongKey = ProvisioningServiceClient.fromConnectionString(env('DPS_WRONG_CONNECTION_STRING'));
const hub1 = env('HUB1');

// failure awaits a call that must fail and returns its HTTP status and the
// parsed DPS error body.
async function failure(promise) {
  try {
    await promise;
  } catch (err) {
    assert.ok(err.response, `no HTTP response on ${err}`);
    const body = JSON.parse(err.responseBody);
    assert.equal(Math.floor(body.errorCode / 1000), err.response.statusCode, 'errorCode matches the status');
    assert.ok(body.trackingId && body.message && body.timestampUtc, 'DPS error shape');
    return { status: err.response.statusCode, body, err };
  }
  assert.fail('the call succeeded');
}

// bulk runs a bulk operation with a callback (the promise form never settles).
function bulk(client, op) {
  return new Promise((resolve, reject) => {
    client.runBulkEnrollmentOperation(op, (err, result) => (err ? reject(err) : resolve(result)));
  });
}

// drain pages through a query and returns every item and the page count.
async function drain(query) {
  const items = [];
  let pages = 0;
  let more = true;
  while (more) {
    const { responseBody, httpResponse } = await query.next(query.continuationToken);
    pages++;
    assert.ok(Array.isArray(responseBody), 'a page is a JSON array');
    assert.ok(httpResponse.headers['x-ms-item-type'], 'x-ms-item-type is set');
    items.push(...responseBody);
    more = query.hasMoreResults;
    if (more) assert.ok(query.continuationToken, 'continuation token is not empty');
    assert.ok(pages < 50, 'query never ends');
  }
  assert.equal(query.continuationToken, undefined, 'no continuation on the last page');
  return { items, pages };
}

function symEnrollment(registrationId) {
  return { registrationId, attestation: { type: 'symmetricKey' }, provisioningStatus: 'enabled' };
}

test('symmetric-key individual enrollment: create, get, update, If-Match, attestation, delete', async () => {
  const id = 'node-sym-01';
  const { responseBody: created } = await owner.createOrUpdateIndividualEnrollment({
    ...symEnrollment(id),
    deviceId: 'node-device-01',
    capabilities: { iotEdge: true },
    initialTwin: { tags: { floor: 3 }, properties: { desired: { firmware: '1.0' } } },
    iotHubs: [hub1],
    allocationPolicy: 'static',
    reprovisionPolicy: { updateHubAssignment: true, migrateDeviceData: false },
  });
  assert.match(created.etag, /^"[0-9a-f-]{36}"$/);
  assert.equal(Buffer.from(created.attestation.symmetricKey.primaryKey, 'base64').length, 64);
  assert.equal(Buffer.from(created.attestation.symmetricKey.secondaryKey, 'base64').length, 64);
  assert.ok(created.createdDateTimeUtc && created.lastUpdatedDateTimeUtc);

  const { responseBody: got } = await owner.getIndividualEnrollment(id);
  assert.deepEqual(got.attestation, created.attestation, 'GET returns the keys');
  assert.equal(got.etag, created.etag);
  assert.equal(got.capabilities.iotEdge, true);
  assert.equal(got.initialTwin.tags.floor, 3);
  assert.deepEqual(got.iotHubs, [hub1]);
  assert.equal(got.deviceId, 'node-device-01');
  assert.equal(got.reprovisionPolicy.migrateDeviceData, false);

  got.provisioningStatus = 'disabled'; // got.etag goes out as If-Match
  const { responseBody: updated } = await owner.createOrUpdateIndividualEnrollment(got);
  assert.equal(updated.provisioningStatus, 'disabled');
  assert.notEqual(updated.etag, created.etag);
  assert.equal(updated.createdDateTimeUtc, created.createdDateTimeUtc);
  assert.deepEqual(updated.attestation.symmetricKey, created.attestation.symmetricKey);

  const stale = await failure(owner.createOrUpdateIndividualEnrollment(got));
  assert.equal(stale.status, 412);
  assert.equal(stale.err.constructor.name, 'InvalidEtagError');
  assert.equal((await failure(owner.deleteIndividualEnrollment(id, created.etag))).status, 412);

  const { responseBody: att } = await owner.getIndividualEnrollmentAttestationMechanism(id);
  assert.equal(att.type, 'symmetricKey');
  assert.equal(att.symmetricKey.primaryKey, created.attestation.symmetricKey.primaryKey);

  await owner.deleteIndividualEnrollment(id, updated.etag);
  assert.equal((await failure(owner.getIndividualEnrollment(id))).status, 404);
});

test('symmetric-key enrollment group with given keys', async () => {
  const primaryKey = crypto.randomBytes(32).toString('base64');
  const secondaryKey = crypto.randomBytes(32).toString('base64');
  const { responseBody: created } = await owner.createOrUpdateEnrollmentGroup({
    enrollmentGroupId: 'node-group-sym',
    attestation: { type: 'symmetricKey', symmetricKey: { primaryKey, secondaryKey } },
  });
  assert.deepEqual(created.attestation.symmetricKey, { primaryKey, secondaryKey });
  assert.equal(created.provisioningStatus, 'enabled');
  const { responseBody: got } = await owner.getEnrollmentGroup('node-group-sym');
  assert.equal(got.etag, created.etag);
  const { responseBody: att } = await owner.getEnrollmentGroupAttestationMechanism('node-group-sym');
  assert.equal(att.symmetricKey.primaryKey, primaryKey);
  const bad = await failure(owner.createOrUpdateEnrollmentGroup({
    enrollmentGroupId: 'node-group-badkey', attestation: { type: 'symmetricKey', symmetricKey: { primaryKey: 'not base64!' } },
  }));
  assert.equal(bad.status, 400);
  await owner.deleteEnrollmentGroup(got); // the object form sends its etag
  assert.equal((await failure(owner.getEnrollmentGroup('node-group-sym'))).status, 404);
});

test('X.509 individual enrollment: info filled, GET/PUT round trip', async () => {
  const id = 'node-x509-01';
  const { responseBody: created } = await owner.createOrUpdateIndividualEnrollment({
    registrationId: id,
    attestation: { type: 'x509', x509: { clientCertificates: { primary: { certificate: env('X509_CERT_PEM') } } } },
  });
  const info = created.attestation.x509.clientCertificates.primary.info;
  assert.equal(info.sha256Thumbprint, env('X509_CERT_SHA256'));
  assert.match(info.subjectName, /CN=node-x509-01/);
  assert.equal(info.version, 3);
  const { responseBody: got } = await owner.getIndividualEnrollment(id);
  assert.deepEqual(got.attestation.x509.clientCertificates.primary.info, info);
  got.provisioningStatus = 'disabled';
  const { responseBody: updated } = await owner.createOrUpdateIndividualEnrollment(got);
  assert.deepEqual(updated.attestation.x509.clientCertificates.primary.info, info);
  const { responseBody: att } = await owner.getIndividualEnrollmentAttestationMechanism(id);
  assert.match(att.x509.clientCertificates.primary.certificate, /BEGIN CERTIFICATE/);

  const unparsable = await failure(owner.createOrUpdateIndividualEnrollment({
    registrationId: 'node-x509-bad',
    attestation: { type: 'x509', x509: { clientCertificates: { primary: { certificate: 'not a certificate' } } } },
  }));
  assert.equal(unparsable.status, 400);
  await owner.deleteIndividualEnrollment(id);
});

test('X.509 enrollment groups: signing certificate and CA reference', async () => {
  const { responseBody: signing } = await owner.createOrUpdateEnrollmentGroup({
    enrollmentGroupId: 'node-group-signing',
    attestation: { type: 'x509', x509: { signingCertificates: { primary: { certificate: env('SIGNING_CERT_PEM') } } } },
  });
  assert.ok(signing.attestation.x509.signingCertificates.primary.info.sha1Thumbprint);
  const { responseBody: ca } = await owner.createOrUpdateEnrollmentGroup({
    enrollmentGroupId: 'node-group-ca',
    attestation: { type: 'x509', x509: { caReferences: { primary: env('CA_VERIFIED') } } },
    iotHubs: [hub1],
  });
  assert.equal(ca.attestation.x509.caReferences.primary, env('CA_VERIFIED'));
  for (const ref of [env('CA_UNVERIFIED'), 'no-such-ca']) {
    const res = await failure(owner.createOrUpdateEnrollmentGroup({
      enrollmentGroupId: 'node-group-badca', attestation: { type: 'x509', x509: { caReferences: { primary: ref } } },
    }));
    assert.equal(res.status, 400, ref);
    assert.equal(res.err.constructor.name, 'ArgumentError');
  }
  await owner.deleteEnrollmentGroup('node-group-signing');
  await owner.deleteEnrollmentGroup('node-group-ca', ca.etag);
});

test('TPM individual enrollment', async () => {
  const endorsementKey = crypto.randomBytes(64).toString('base64');
  const { responseBody: created } = await owner.createOrUpdateIndividualEnrollment({
    registrationId: 'node-tpm-01', attestation: { type: 'tpm', tpm: { endorsementKey } },
  });
  assert.equal(created.attestation.tpm.endorsementKey, endorsementKey);
  const { responseBody: got } = await owner.getIndividualEnrollment('node-tpm-01');
  assert.equal(got.attestation.type, 'tpm');
  const group = await failure(owner.createOrUpdateEnrollmentGroup({
    enrollmentGroupId: 'node-group-tpm', attestation: { type: 'tpm', tpm: { endorsementKey } },
  }));
  assert.equal(group.status, 400);
  await owner.deleteIndividualEnrollment('node-tpm-01');
});

test('bulk create, update, updateIfMatchEtag and delete with per-item failures', async () => {
  const ids = ['node-bulk-01', 'node-bulk-02', 'node-bulk-03'];
  let res = await bulk(owner, { mode: 'create', enrollments: [...ids.map(symEnrollment), symEnrollment('bad id!')] });
  assert.equal(res.isSuccessful, false);
  assert.equal(res.errors.length, 1);
  assert.equal(res.errors[0].registrationId, 'bad id!');
  assert.equal(Math.floor(res.errors[0].errorCode / 1000), 400);
  assert.ok(res.errors[0].errorStatus);

  res = await bulk(owner, { mode: 'create', enrollments: [symEnrollment(ids[0])] });
  assert.equal(res.errors.length, 1);
  assert.equal(Math.floor(res.errors[0].errorCode / 1000), 409);

  res = await bulk(owner, { mode: 'update', enrollments: ids.map((id) => ({ ...symEnrollment(id), provisioningStatus: 'disabled' })) });
  assert.deepEqual(res, { isSuccessful: true, errors: [] });

  const current = (await owner.getIndividualEnrollment(ids[1])).responseBody;
  res = await bulk(owner, {
    mode: 'updateIfMatchEtag',
    enrollments: [{ ...symEnrollment(ids[0]), etag: '"stale"' }, { ...symEnrollment(ids[1]), etag: current.etag }],
  });
  assert.equal(res.isSuccessful, false);
  assert.deepEqual(res.errors.map((e) => [e.registrationId, Math.floor(e.errorCode / 1000)]), [[ids[0], 412]]);
  assert.equal((await owner.getIndividualEnrollment(ids[1])).responseBody.provisioningStatus, 'enabled');

  res = await bulk(owner, { mode: 'delete', enrollments: [...ids.map(symEnrollment), symEnrollment('node-bulk-missing')] });
  assert.deepEqual(res.errors.map((e) => [e.registrationId, Math.floor(e.errorCode / 1000)]), [['node-bulk-missing', 404]]);
  for (const id of ids) assert.equal((await failure(owner.getIndividualEnrollment(id))).status, 404);
});

test('query paging with continuation tokens', async () => {
  const ids = [];
  for (let i = 0; i < 23; i++) ids.push(`node-q-${String(i).padStart(2, '0')}`);
  for (let i = 0; i < ids.length; i += 10) {
    const res = await bulk(owner, { mode: 'create', enrollments: ids.slice(i, i + 10).map(symEnrollment) });
    assert.equal(res.isSuccessful, true);
  }
  const { items, pages } = await drain(owner.createIndividualEnrollmentQuery({ query: '*' }, 5));
  const got = items.map((e) => e.registrationId).filter((id) => id.startsWith('node-q-'));
  assert.deepEqual(got, ids, 'every enrollment exactly once, in order');
  assert.ok(pages >= 5, `${pages} pages`);

  const sql = await drain(owner.createIndividualEnrollmentQuery({ query: 'SELECT * FROM enrollments' }, 100));
  assert.ok(sql.items.length >= 23);
  assert.equal(sql.pages, 1);

  const groups = await drain(owner.createEnrollmentGroupQuery({ query: '*' }, 2));
  assert.ok(Array.isArray(groups.items));

  const regs = await drain(owner.createEnrollmentGroupDeviceRegistrationStateQuery({ query: '*' }, env('REG_GROUP'), 2));
  assert.equal(regs.items.length, Number(env('REG_GROUP_COUNT')));
  assert.equal(regs.pages, Math.ceil(Number(env('REG_GROUP_COUNT')) / 2));
  for (const r of regs.items) assert.equal(r.assignedHub, hub1);

  const bad = await failure(owner.createIndividualEnrollmentQuery({ query: 'SELECT * FROM enrollments WHERE x = 1' }).next());
  assert.equal(bad.status, 400);

  for (let i = 0; i < ids.length; i += 10) {
    await bulk(owner, { mode: 'delete', enrollments: ids.slice(i, i + 10).map(symEnrollment) });
  }
});

test('registration state get and delete', async () => {
  const id = env('REG_ID');
  const { responseBody: state } = await owner.getDeviceRegistrationState(id);
  assert.equal(state.registrationId, id);
  assert.equal(state.status, 'assigned');
  assert.equal(state.assignedHub, hub1);
  assert.ok(state.etag);
  assert.equal((await failure(owner.deleteDeviceRegistrationState(id, '"stale"'))).status, 412);
  await owner.deleteDeviceRegistrationState(state); // the object form sends its etag
  assert.equal((await failure(owner.getDeviceRegistrationState(id))).status, 404);
});

test('authorization: wrong key and insufficient rights are 401', async () => {
  await owner.createOrUpdateIndividualEnrollment(symEnrollment('node-auth-01'));
  const wrong = await failure(wrongKey.getIndividualEnrollment('node-auth-01'));
  assert.equal(wrong.status, 401);
  assert.equal(wrong.err.constructor.name, 'UnauthorizedError');

  const { responseBody } = await readOnly.getIndividualEnrollment('node-auth-01');
  assert.equal(responseBody.registrationId, 'node-auth-01');
  assert.equal((await failure(readOnly.createOrUpdateIndividualEnrollment(symEnrollment('node-auth-02')))).status, 401);
  assert.equal((await failure(readOnly.deleteIndividualEnrollment('node-auth-01'))).status, 401);
  assert.equal((await failure(readOnly.getDeviceRegistrationState('node-auth-01'))).status, 401);
  await owner.deleteIndividualEnrollment('node-auth-01');
});
