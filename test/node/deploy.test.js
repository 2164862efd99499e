// Reads back, with the official ARM client (@azure/arm-deviceprovisioningservices,
// IotDpsClient pointed at the opendps control API with the operator token as
// a static bearer token), the instances that `opendps deployment create`
// made from the docs/examples templates. Run by e2e's TestDeployExamples
// through dpstest/nodetest, which passes in:
//
//   ARM_ENDPOINT     the control API URL (https://localhost:port)
//   OPERATOR_TOKEN   the operator token
//   DEPLOYED         JSON: [{subscription, resourceGroup, name, location,
//                    idScope, enableDataResidency, hubs: [hostName...],
//                    certificates: [name...]}]
//   NODE_EXTRA_CA_CERTS  the deployment's CA, so TLS verifies
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const { IotDpsClient } = require('@azure/arm-deviceprovisioningservices');

function env(name) {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set`);
  return v;
}

const token = env('OPERATOR_TOKEN');
const staticToken = {
  async getToken() {
    return { token, expiresOnTimestamp: Date.now() + 3600 * 1000 };
  },
};

for (const want of JSON.parse(env('DEPLOYED'))) {
  test(`deployed instance ${want.name} reads back through the ARM client`, async () => {
    const client = new IotDpsClient(staticToken, want.subscription, { endpoint: env('ARM_ENDPOINT') });
    const got = await client.iotDpsResource.get(want.resourceGroup, want.name);
    assert.equal(got.name, want.name);
    assert.equal(got.location, want.location);
    assert.equal(got.sku.name, 'S1');
    const p = got.properties;
    assert.equal(p.enableDataResidency, want.enableDataResidency);
    assert.equal(p.idScope, want.idScope);
    assert.equal(p.provisioningState, 'Succeeded');
    const hubs = p.iotHubs.map((h) => h.name.toLowerCase()).sort();
    assert.deepEqual(hubs, want.hubs.map((h) => h.toLowerCase()).sort());
    for (const h of p.iotHubs) {
      assert.match(h.connectionString, /SharedAccessKey=\*+/, 'hub keys are masked');
      assert.equal(h.location, want.location);
    }
    const certs = (await client.dpsCertificate.list(want.resourceGroup, want.name)).value || [];
    assert.deepEqual(certs.map((c) => c.name).sort(), want.certificates.slice().sort());
    for (const c of certs) assert.equal(c.properties.isVerified, true);

    const inGroup = [];
    for await (const x of client.iotDpsResource.listByResourceGroup(want.resourceGroup)) inGroup.push(x.name);
    assert.ok(inGroup.includes(want.name), `listByResourceGroup: ${inGroup}`);
  });
}
