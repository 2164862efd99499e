// Counts the DPS device API requests the SDKs send, so that a test can
// tell a registration answered in one round trip (one PUT .../register)
// from one that polled (GET .../operations/{operationId}).
//
// azure-iot-http-base reads https.request on every call, so wrapping it
// here (before or after the SDK is loaded) sees every request. Requests
// are only counted, never changed.
'use strict';

const https = require('node:https');

const counts = { register: 0, poll: 0, other: 0 };

// kind classifies a request by method and path (spec/dps-protocol.md §2.1).
function kind(method, path) {
  const p = String(path).split('?')[0];
  if (method === 'PUT' && /\/registrations\/[^/]+\/register$/.test(p)) return 'register';
  if (method === 'GET' && /\/registrations\/[^/]+\/operations\/[^/]+$/.test(p)) return 'poll';
  return 'other';
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

// mark returns the counts so far; since(mark) the requests sent after it.
function mark() {
  return { ...counts };
}

function since(m) {
  return { register: counts.register - m.register, poll: counts.poll - m.poll };
}

module.exports = { mark, since, kind };
