// Client of a Go test's harness: a plain HTTP server on 127.0.0.1 through
// which a node script asks the Go side to act on the deployment (move an
// enrollment, stop a hub, ...) or to check its state (hub identities,
// twins, registration records). Every action is POST /{action} with a JSON
// body; the answer is JSON, and a non-200 answer carries {"error": "..."},
// which call() throws so that the node test fails with the Go message.
'use strict';

const http = require('node:http');

function harness(baseURL) {
  return function call(action, args = {}) {
    if (!baseURL) return Promise.reject(new Error(`harness ${action}: no harness URL was given`));
    const body = JSON.stringify(args);
    return new Promise((resolve, reject) => {
      const req = http.request(new URL(action, baseURL), {
        method: 'POST',
        headers: { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body) },
      }, (res) => {
        let data = '';
        res.setEncoding('utf8');
        res.on('data', (chunk) => { data += chunk; });
        res.on('end', () => {
          let parsed;
          try {
            parsed = data ? JSON.parse(data) : {};
          } catch {
            reject(new Error(`harness ${action}: HTTP ${res.statusCode}: ${data}`));
            return;
          }
          if (res.statusCode !== 200) {
            reject(new Error(`harness ${action}: ${parsed.error || data}`));
            return;
          }
          resolve(parsed);
        });
      });
      req.on('error', reject);
      req.end(body);
    });
  };
}

module.exports = { harness };
