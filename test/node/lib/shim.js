// Loaded with `node --require ./lib/shim.js`: lets the official Azure IoT
// Node SDKs reach a local opendps deployment without touching their code.
//
// 1. The SDKs' HTTPS clients call https.request({host: "name.localhost:8443"})
//    with no port option (shared/spec/wire-captures.md §1), which Node would
//    resolve as a host literally named "name.localhost:8443". Every
//    https.Agent here (the global one, and the keep-alive agents the SDKs
//    create themselves, e.g. azure-iothub's Registry) splits host:port.
// 2. Names under .localhost (RFC 6761) and localhost are connected to
//    127.0.0.1, for HTTPS and for direct tls.connect callers (mqtt.js), so
//    no resolver configuration is needed. SNI stays the name without port,
//    so the server can pick the certificate for that name.
// 3. When OPENDPS_WSS_PORT is set, a TLS connection to port 443 of such a
//    name goes to that port instead (SNI unchanged): the MqttWs transport
//    hard-codes wss://{host}:443/$iothub/websocket (spec/dps-protocol.md
//    §11.2), and opendps serves MQTT over WebSocket on its HTTPS device
//    listener, which a test runs on a free port.
//
// TLS trust comes from NODE_EXTRA_CA_CERTS (the deployment's CA PEM); this
// shim never disables certificate verification.
'use strict';

const https = require('node:https');
const net = require('node:net');
const tls = require('node:tls');

const LOOPBACK = '127.0.0.1';
const WSS_PORT = Number(process.env.OPENDPS_WSS_PORT) || undefined;

function isLocalName(host) {
  const h = String(host).toLowerCase().replace(/\.$/, '');
  return h === 'localhost' || h.endsWith('.localhost');
}

// splitHostPort("a.localhost:8443") -> {host: "a.localhost", port: 8443};
// "[::1]:8443" and bare names or IPs are handled; port is undefined when
// the host carries none.
function splitHostPort(host) {
  const s = String(host);
  const m = /^\[([^\]]+)\](?::(\d+))?$/.exec(s);
  if (m) return { host: m[1], port: m[2] ? Number(m[2]) : undefined };
  const i = s.lastIndexOf(':');
  if (i > 0 && s.indexOf(':') === i && /^\d+$/.test(s.slice(i + 1))) {
    return { host: s.slice(0, i), port: Number(s.slice(i + 1)) };
  }
  return { host: s, port: undefined };
}

// localize returns connection options with host:port split, the SNI name
// kept, and local names sent to the loopback address.
function localize(options) {
  const out = Object.assign({}, options);
  const given = options.host || options.hostname;
  if (!given) return out;
  const hp = splitHostPort(given);
  if (hp.port !== undefined) out.port = hp.port;
  if (!out.servername || out.servername === given || String(out.servername).includes(':')) {
    if (!net.isIP(hp.host)) out.servername = hp.host;
  }
  if (isLocalName(hp.host)) {
    out.host = LOOPBACK;
    if (WSS_PORT && Number(out.port) === 443) out.port = WSS_PORT;
  } else {
    out.host = hp.host;
  }
  delete out.hostname;
  return out;
}

const agentCreateConnection = https.Agent.prototype.createConnection;
https.Agent.prototype.createConnection = function createConnection(options, cb) {
  return agentCreateConnection.call(this, localize(options), cb);
};
https.globalAgent = new https.Agent({ keepAlive: true });

// tls.connect(options[, cb]) and tls.connect(port, host[, options][, cb]).
const tlsConnect = tls.connect;
tls.connect = function connect(...args) {
  if (args[0] !== null && typeof args[0] === 'object') {
    args[0] = localize(args[0]);
  } else if (typeof args[1] === 'string' && isLocalName(args[1])) {
    const host = args[1];
    args[1] = LOOPBACK;
    if (WSS_PORT && Number(args[0]) === 443) args[0] = WSS_PORT;
    if (args[2] !== null && typeof args[2] === 'object') {
      args[2] = Object.assign({ servername: host }, args[2]);
    } else {
      args.splice(2, 0, { servername: host });
    }
  }
  return tlsConnect.apply(this, args);
};

module.exports = { splitHostPort, isLocalName, localize };
