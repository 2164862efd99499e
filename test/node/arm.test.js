// Conformance of the opendps control API with the official ARM client
// (@azure/arm-deviceprovisioningservices, IotDpsClient) pointed at opendps:
// its endpoint option is the control API URL and its TokenCredential
// returns the operator token as a static bearer token. Run by e2e's
// TestARMClientConformance through dpstest/nodetest, which passes in:
//
//   ARM_ENDPOINT     the control API URL (https://localhost:port)
//   OPERATOR_TOKEN   the operator token
//   HARNESS_URL      the Go harness (lib/harness.js): "proof" issues the
//                    proof-of-possession certificate for a verification code
//   CA_CERT_PEM      the CA certificate whose key the harness holds
//   NODE_EXTRA_CA_CERTS  the deployment's CA, so TLS verifies
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const { IotDpsClient } = require('@azure/arm-deviceprovisioningservices');
const { harness } = require('./lib/harness');

function env(name) {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set`);
  return v;
}

const SUB = '00000000-0000-0000-0000-0000000000a1';
const RG = 'arm-conformance';
const NAME = 'arm-residency';
const token = env('OPERATOR_TOKEN');

// staticToken is a TokenCredential that always returns the operator token.
const staticToken = {
  async getToken() {
    return { token, expiresOnTimestamp: Date.now() + 3600 * 1000 };
  },
};

const client = new IotDpsClient(staticToken, SUB, { endpoint: env('ARM_ENDPOINT') });
const call = harness(env('HARNESS_URL'));

// sent records the requests the client sends ("METHOD path-and-query").
const sent = [];
client.pipeline.addPolicy({
  name: 'record',
  async sendRequest(req, next) {
    const u = new URL(req.url);
    sent.push(`${req.method} ${u.pathname}${u.search}`);
    return next(req);
  },
});

// polled returns the operation-result polls sent since mark.
function polled(mark) {
  return sent.slice(mark).filter((x) => /^GET .*\/operationresults\/[^/?]+\?.*asyncinfo=true/.test(x));
}
const fast = { updateIntervalInMs: 50 };

async function all(iter) {
  const out = [];
  for await (const x of iter) out.push(x);
  return out;
}

// failure awaits a call that must fail and returns the RestError.
async function failure(promise) {
  try {
    await promise;
  } catch (err) {
    assert.ok(err.statusCode, `no HTTP status on ${err.stack}`);
    return err;
  }
  assert.fail('the call succeeded');
}

test('residency instance in Brazil South: create, read, list, keys, delete', async () => {
  let mark = sent.length;
  const created = await client.iotDpsResource.createOrUpdate(RG, NAME, {
    location: 'brazilsouth',
    sku: { name: 'S1', capacity: 1 },
    properties: { enableDataResidency: true, allocationPolicy: 'Hashed' },
  }, fast);
  assert.equal(created.name, NAME);
  assert.equal(created.location, 'brazilsouth');
  assert.equal(created.properties.enableDataResidency, true);
  assert.equal(created.properties.provisioningState, 'Succeeded');
  assert.equal(polled(mark).length, 1, `the poller follows Azure-AsyncOperation: ${sent.slice(mark).join(', ')}`);
  assert.ok(sent.slice(mark).every((x) => /api-version=2026-08-31/.test(x)), 'api-version kept on every call');

  const got = await client.iotDpsResource.get(RG, NAME);
  assert.equal(got.name, NAME);
  assert.equal(got.id, `/subscriptions/${SUB}/resourceGroups/${RG}/providers/Microsoft.Devices/provisioningServices/${NAME}`);
  assert.equal(got.type.toLowerCase(), 'microsoft.devices/provisioningservices');
  assert.equal(got.location, 'brazilsouth');
  assert.equal(got.sku.name, 'S1');
  assert.equal(got.sku.tier, 'Standard');
  assert.equal(got.sku.capacity, 1);
  assert.ok(got.etag, 'etag');
  const p = got.properties;
  assert.match(p.idScope, /^0ne[0-9A-F]{8}$/);
  assert.equal(p.idScope, created.properties.idScope);
  assert.equal(p.enableDataResidency, true);
  assert.equal(p.state, 'Active');
  assert.equal(p.provisioningState, 'Succeeded');
  assert.equal(p.allocationPolicy, 'Hashed');
  assert.ok(p.serviceOperationsHostName && p.serviceOperationsHostName.startsWith(NAME.toLowerCase()),
    `serviceOperationsHostName ${p.serviceOperationsHostName}`);
  assert.ok(p.deviceProvisioningHostName, 'deviceProvisioningHostName');
  assert.deepEqual(p.iotHubs, []);
  assert.ok(p.authorizationPolicies.every((x) => !x.primaryKey && !x.secondaryKey), 'GET omits keys');

  // ARM names and path segments are case-insensitive.
  const upper = await client.iotDpsResource.get(RG.toUpperCase(), NAME.toUpperCase());
  assert.equal(upper.properties.idScope, p.idScope);

  const bySub = await all(client.iotDpsResource.listBySubscription());
  assert.deepEqual(bySub.map((x) => x.name), [NAME]);
  assert.equal(bySub[0].properties.idScope, p.idScope);
  const byRG = await all(client.iotDpsResource.listByResourceGroup(RG));
  assert.deepEqual(byRG.map((x) => x.name), [NAME]);
  assert.deepEqual(await all(client.iotDpsResource.listByResourceGroup('some-other-rg')), []);

  const keys = await all(client.iotDpsResource.listKeys(NAME, RG));
  const owner = keys.find((k) => k.keyName === 'provisioningserviceowner');
  assert.ok(owner, `owner policy in ${JSON.stringify(keys.map((k) => k.keyName))}`);
  assert.ok(Buffer.from(owner.primaryKey, 'base64').length >= 32, 'primary key');
  assert.ok(owner.secondaryKey && owner.secondaryKey !== owner.primaryKey, 'secondary key');
  assert.match(owner.rights, /ServiceConfig/);
  const one = await client.iotDpsResource.listKeysForKeyName(NAME, 'provisioningserviceowner', RG);
  assert.equal(one.primaryKey, owner.primaryKey);

  const skus = await all(client.iotDpsResource.listValidSkus(NAME, RG));
  assert.deepEqual(skus.map((s) => s.name), ['S1']);

  const avail = await client.iotDpsResource.checkProvisioningServiceNameAvailability({ name: NAME });
  assert.equal(avail.nameAvailable, false);

  const tagged = await client.iotDpsResource.update(RG, NAME, { tags: { env: 'test' } }, fast);
  assert.deepEqual(tagged.tags, { env: 'test' });

  mark = sent.length;
  await client.iotDpsResource.delete(RG, NAME, fast);
  assert.ok(polled(mark).length >= 1, `the delete poller follows its operation: ${sent.slice(mark).join(', ')}`);
  const gone = await failure(client.iotDpsResource.get(RG, NAME));
  assert.equal(gone.statusCode, 404);
  assert.equal(gone.code, 'NotFound');
  assert.deepEqual(await all(client.iotDpsResource.listByResourceGroup(RG)), []);
});

test('CA certificate: upload, verification code, proof of possession, delete', async () => {
  const name = 'arm-certs';
  await client.iotDpsResource.createOrUpdate(RG, name, { location: 'westeurope', sku: { name: 'S1', capacity: 1 }, properties: {} }, fast);
  try {
    // The SDK sends Uint8Array certificates as base64: the PEM file's bytes,
    // as `az iot dps certificate create --path ca.pem` does.
    const pem = env('CA_CERT_PEM');
    const x = new crypto.X509Certificate(pem);
    const up = await client.dpsCertificate.createOrUpdate(RG, name, 'root', {
      properties: { certificate: new TextEncoder().encode(pem) },
    });
    assert.equal(up.name, 'root');
    assert.equal(up.properties.isVerified, false);
    assert.match(up.properties.subject, /CN=arm conformance root/);
    assert.equal(up.properties.thumbprint, x.fingerprint.replace(/:/g, ''));
    assert.ok(up.properties.expiry instanceof Date && !Number.isNaN(up.properties.expiry.getTime()), 'expiry parses');
    assert.deepEqual(Buffer.from(up.properties.certificate), x.raw, 'certificate round-trips as DER');
    assert.ok(up.etag, 'etag');

    const list = await client.dpsCertificate.list(RG, name);
    assert.deepEqual(list.value.map((c) => c.name), ['root']);

    const code = await client.dpsCertificate.generateVerificationCode('root', up.etag, RG, name);
    assert.ok(code.properties.verificationCode, 'verification code');
    const { pem: proof } = await call('proof', { code: code.properties.verificationCode });
    const verified = await client.dpsCertificate.verifyCertificate('root', code.etag, RG, name, { certificate: proof });
    assert.equal(verified.properties.isVerified, true);
    const again = await client.dpsCertificate.get('root', RG, name);
    assert.equal(again.properties.isVerified, true);

    const stale = await failure(client.dpsCertificate.delete(RG, name, 'root', up.etag));
    assert.equal(stale.statusCode, 412);
    assert.equal(stale.code, 'PreconditionFailed');
    await client.dpsCertificate.delete(RG, name, 'root', again.etag);
    assert.deepEqual((await client.dpsCertificate.list(RG, name)).value, []);
  } finally {
    await client.iotDpsResource.delete(RG, name, fast);
  }
});

test('enableDataResidency in West Europe is refused with a clear error', async () => {
  const err = await failure(client.iotDpsResource.createOrUpdate(RG, 'arm-west-residency', {
    location: 'westeurope',
    sku: { name: 'S1', capacity: 1 },
    properties: { enableDataResidency: true },
  }, fast));
  assert.equal(err.statusCode, 400);
  assert.equal(err.code, 'BadRequest');
  assert.equal(err.response.headers.get('x-ms-error-code'), '400008');
  assert.match(err.response.headers.get('x-ms-request-id'), /^[0-9a-f-]{36}$/);
  assert.match(err.message, /enableDataResidency|data residency/i);
  assert.match(err.message, /Brazil South/);
  assert.match(err.message, /Southeast Asia/);
  assert.equal((await failure(client.iotDpsResource.get(RG, 'arm-west-residency'))).statusCode, 404);
});
