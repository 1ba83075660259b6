import 'reflect-metadata';
import assert from 'node:assert/strict';
import { LocalCa } from '../../../src/dev/local-ca.js';
import { SealRefused, SvidSeal, type SealRefusal } from '../../../src/identity/svid-seal.js';
import type { X509Svid } from '../../../src/identity/types.js';
import {
  AGENT_ID as AGENT,
  BROKER_ID as BROKER,
  sealFixture,
  type SealFixture,
} from '../../support/seal-fixture.js';

async function refusal(p: Promise<unknown>): Promise<SealRefusal> {
  try {
    await p;
  } catch (err) {
    assert.ok(err instanceof SealRefused, String(err));
    return err.reason;
  }
  assert.fail('expected the entry to be refused');
}

describe('SvidSeal', () => {
  let f: SealFixture;
  let ca: LocalCa;
  let svid: X509Svid;
  const sealWith = (s: X509Svid): SvidSeal => f.sealWith(s);

  before(async () => {
    f = await sealFixture();
    ca = f.ca;
    svid = await ca.issueX509Svid(BROKER, { ttlSeconds: 3600 });
  });
  beforeEach(() => {
    f.clock = Date.now();
    f.allowedIds = [BROKER];
  });

  it('opens what it sealed: the exact payload, the signer and when the signature stops verifying', async () => {
    const seal = sealWith(svid);
    const payload = '{"b":1, "a":"ü"}';
    const opened = await seal.open(await seal.seal(payload));
    assert.equal(opened.payload, payload);
    assert.equal(opened.signer, BROKER);
    assert.ok(opened.expiresAt > f.clock && opened.expiresAt <= f.clock + 3600_000 + 1000);
  });

  it('refuses unsigned, malformed and tampered entries', async () => {
    const seal = sealWith(svid);
    const sealed = JSON.parse(await seal.seal('{"v":1}')) as { payload: string; sig: string };
    assert.equal(await refusal(seal.open('{"v":1}')), 'unsigned');
    assert.equal(await refusal(seal.open(JSON.stringify({ payload: '{"v":1}' }))), 'unsigned');
    assert.equal(await refusal(seal.open('not json')), 'malformed');
    assert.equal(await refusal(seal.open(JSON.stringify({ ...sealed, sig: 'a.b.c' }))), 'malformed');
    assert.equal(
      await refusal(seal.open(JSON.stringify({ ...sealed, payload: '{"v":2}' }))),
      'bad_signature',
    );
  });

  it('refuses a chain outside the trust bundle, and a signer not in the allow-list', async () => {
    const impostorCa = await LocalCa.create('example.org');
    const impostor = await impostorCa.issueX509Svid(BROKER);
    const raw = await sealWith(impostor).seal('{"v":1}');
    assert.equal(await refusal(sealWith(svid).open(raw)), 'untrusted_signer');

    const agent = await ca.issueX509Svid(AGENT);
    const byAgent = await sealWith(agent).seal('{"v":1}');
    const err = await sealWith(svid)
      .open(byAgent)
      .then(
        () => undefined,
        (e: unknown) => e as SealRefused,
      );
    assert.equal(err?.reason, 'signer_not_allowed');
    assert.equal(err?.signer, AGENT);
    f.allowedIds = [BROKER, AGENT];
    assert.equal((await sealWith(svid).open(byAgent)).signer, AGENT);
  });

  it('still opens an entry sealed by an SVID that has since rotated, until that certificate expires', async () => {
    const old = await ca.issueX509Svid(BROKER, { ttlSeconds: 600 });
    const raw = await sealWith(old).seal('{"v":1}');
    const current = sealWith(svid); // the broker rotated: it now signs with another SVID
    const opened = await current.open(raw);
    assert.equal(opened.signer, BROKER);
    f.clock = opened.expiresAt + 1000;
    assert.equal(await refusal(current.open(raw)), 'untrusted_signer');
  });

  it('refuses a signature whose header was swapped for another SVID of the same broker', async () => {
    const other = await ca.issueX509Svid(BROKER);
    const a = JSON.parse(await sealWith(svid).seal('{"v":1}')) as { payload: string; sig: string };
    const b = JSON.parse(await sealWith(other).seal('{"v":1}')) as { payload: string; sig: string };
    const [headerOfB] = b.sig.split('.');
    const [, , sigOfA] = a.sig.split('.');
    const spliced = JSON.stringify({ payload: a.payload, sig: `${headerOfB}..${sigOfA}` });
    assert.equal(await refusal(sealWith(svid).open(spliced)), 'bad_signature');
  });
});
