import assert from 'node:assert/strict';

import { isBrokerError } from '../../../src/errors.js';
import { DEFAULT_SPIRE_AGENT_SOCKET, parseEndpointSocket } from '../../../src/identity/workload-api.js';

describe('parseEndpointSocket', () => {
  const valid: Array<[string, string]> = [
    ['unix:///tmp/spire-agent/public/api.sock', 'unix:///tmp/spire-agent/public/api.sock'],
    ['unix:/run/agent.sock', 'unix:///run/agent.sock'],
    ['tcp://127.0.0.1:8081', '127.0.0.1:8081'],
    ['tcp://10.0.0.5:1', '10.0.0.5:1'],
    ['tcp://[::1]:8081', '[::1]:8081'],
    [DEFAULT_SPIRE_AGENT_SOCKET, 'unix:///tmp/spire-agent/public/api.sock'],
  ];
  for (const [input, target] of valid) {
    it(`accepts ${input} as ${target}`, () => {
      assert.equal(parseEndpointSocket(input), target);
    });
  }

  const invalid: Array<[string, RegExp]> = [
    ['', /is not set/],
    ['/tmp/agent.sock', /not a URI/],
    ['unix://relative/agent.sock', /absolute path/],
    ['unix:relative/agent.sock', /absolute path/],
    ['unix:///', /absolute path/],
    ['unix:///tmp/a.sock?x=1', /query or fragment/],
    ['unix:///tmp/a.sock#frag', /query or fragment/],
    ['unix://user@host/tmp/a.sock', /user info/],
    ['tcp://localhost:8081', /IP address/],
    ['tcp://127.0.0.1', /port/],
    ['tcp://127.0.0.1:8081/path', /path/],
    ['http://127.0.0.1:8081', /unix or tcp scheme/],
  ];
  for (const [input, message] of invalid) {
    it(`rejects ${JSON.stringify(input)}`, () => {
      assert.throws(
        () => parseEndpointSocket(input),
        (err: unknown) =>
          isBrokerError(err) && err.reason === 'invalid_endpoint_socket' && message.test(err.message),
      );
    });
  }

  it('reads SPIFFE_ENDPOINT_SOCKET when called without an argument', () => {
    const saved = process.env['SPIFFE_ENDPOINT_SOCKET'];
    try {
      process.env['SPIFFE_ENDPOINT_SOCKET'] = 'tcp://127.0.0.1:9999';
      assert.equal(parseEndpointSocket(), '127.0.0.1:9999');
      delete process.env['SPIFFE_ENDPOINT_SOCKET'];
      // No silent fallback to the SPIRE default: a missing setting is a configuration error.
      assert.throws(() => parseEndpointSocket(), /is not set/);
    } finally {
      if (saved === undefined) delete process.env['SPIFFE_ENDPOINT_SOCKET'];
      else process.env['SPIFFE_ENDPOINT_SOCKET'] = saved;
    }
  });
});
