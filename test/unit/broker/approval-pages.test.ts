/**
 * ListApprovals pages: walking every page hands out each request exactly once, newest first, even
 * when new requests arrive between pages; bad sizes and tokens are INVALID_ARGUMENT naming the field.
 */
import { strict as assert } from 'node:assert';
import fc from 'fast-check';
import { byNewest } from '../../../src/approvals/approval-records.js';
import type { ApprovalRequest } from '../../../src/approvals/types.js';
import { pageOfApprovals } from '../../../src/broker/approval-pages.js';
import { isBrokerError } from '../../../src/errors.js';
import { makeRequest } from '../approvals/approval-harness.js';

const NOW = 1_800_000_000_000;

function requests(createdAts: number[]): ApprovalRequest[] {
  return createdAts
    .map((at, i) => makeRequest(at, { id: `apr-${String(i).padStart(4, '0')}` }))
    .sort(byNewest);
}

describe('ListApprovals pages', () => {
  it('hands out every request once, newest first, whatever arrives between pages', () => {
    fc.assert(
      fc.property(
        fc.array(fc.integer({ min: 0, max: 20 }), { maxLength: 40 }),
        fc.integer({ min: 1, max: 7 }),
        fc.integer({ min: 0, max: 5 }),
        (offsets, size, arrivals) => {
          const initial = requests(offsets.map((o) => NOW + o));
          let list = initial;
          const seen: string[] = [];
          let token = '';
          for (let pages = 0; pages <= initial.length + 1; pages++) {
            const page = pageOfApprovals(list, { pageSize: size, pageToken: token });
            seen.push(...page.approvals.map((a) => a.id));
            if (!page.nextPageToken) break;
            token = page.nextPageToken;
            // Newer requests arrive between pages: they are not in the pages still to come.
            const newer = requests(Array.from({ length: arrivals }, () => NOW + 100)).map((a, i) => ({
              ...a,
              id: `new-${pages}-${i}`,
            }));
            list = [...newer, ...list].sort(byNewest);
          }
          assert.deepEqual(
            seen,
            initial.map((a) => a.id),
          );
        },
      ),
    );
  });

  it('answers the last page with no token and a short list in one page', () => {
    const list = requests([NOW, NOW + 1, NOW + 2]);
    assert.deepEqual(pageOfApprovals(list, {}), { approvals: list, nextPageToken: '' });
    const first = pageOfApprovals(list, { pageSize: 2 });
    assert.equal(first.approvals.length, 2);
    assert.notEqual(first.nextPageToken, '');
    assert.deepEqual(pageOfApprovals(list, { pageSize: 2, pageToken: first.nextPageToken }), {
      approvals: [list[2]],
      nextPageToken: '',
    });
  });

  it('refuses a page size out of range or a token it did not hand out, naming the field', () => {
    const refused = (page: { pageSize?: number; pageToken?: string }, field: string): void => {
      assert.throws(
        () => pageOfApprovals([], page),
        (err: unknown) => isBrokerError(err) && err.code === 'INVALID_ARGUMENT' && err.field === field,
      );
    };
    refused({ pageSize: 1001 }, 'page_size');
    refused({ pageSize: -1 }, 'page_size');
    refused({ pageToken: 'garbage' }, 'page_token');
    refused({ pageToken: '12.a b' }, 'page_token');
  });
});
