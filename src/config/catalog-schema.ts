/**
 * The agent catalog's configuration: SPIFFE ID patterns to AgentGroups (what policy reads), and,
 * for the workloads that carry `selectors`, what SPIRE needs to register them (what
 * `svid-broker spire entries` reads). One list, so registration and policy cannot drift apart.
 */
import { z } from 'zod';
import { isValidSpiffeId, parseTrustDomain } from '../identity/spiffe-id.js';

/** SPIRE selectors are `type:value`; the value may hold more colons (`docker:label:app:web`). */
export const SELECTOR = /^[a-z0-9_-]+:\S(.*\S)?$/i;

// SPIRE keeps TTLs in an int32 of seconds; a day is a sane ceiling for an SVID.
const svidTtl = z.number().int().min(1).max(86_400);

const trustDomainName = z.string().refine((td) => {
  try {
    parseTrustDomain(td);
    return true;
  } catch {
    return false;
  }
}, 'expected a trust domain name (no spiffe:// and no path)');

export const agentCatalogEntrySchema = z
  .object({
    /** An exact SPIFFE ID, or a pattern: `/*` one more segment, `/**` a subtree. */
    pattern: z.string().startsWith('spiffe://'),
    groups: z.array(z.string().regex(/^[A-Za-z0-9][A-Za-z0-9_.-]*$/)).min(1),
    /** Registers this exact ID with SPIRE, for workloads with these selectors (`unix:uid:1001`, ...). */
    selectors: z.array(z.string().regex(SELECTOR, 'selectors are "type:value"')).min(1).optional(),
    /** Overrides the groups' TTLs for this workload. */
    x509SvidTtlSeconds: svidTtl.optional(),
    jwtSvidTtlSeconds: svidTtl.optional(),
    /** The SPIRE entry hint (which SVID a workload with several should use). */
    hint: z.string().min(1).optional(),
    dnsNames: z.array(z.string().min(1)).optional(),
    federatesWith: z.array(trustDomainName).optional(),
    admin: z.boolean().optional(),
    /**
     * The person who owns this agent (their IdP subject or email address): they cannot approve the
     * agent's requests at the console.
     */
    owner: z.string().trim().min(1).optional(),
  })
  .strict()
  .superRefine((entry, ctx) => {
    if (entry.selectors === undefined) {
      for (const key of [
        'x509SvidTtlSeconds',
        'jwtSvidTtlSeconds',
        'hint',
        'dnsNames',
        'federatesWith',
        'admin',
      ]) {
        if (key in entry) {
          ctx.addIssue({ code: 'custom', path: [key], message: 'only used with selectors (a SPIRE entry)' });
        }
      }
      return;
    }
    // A SPIRE entry names one SPIFFE ID: a pattern would register nothing SPIRE can issue.
    if (!isValidSpiffeId(entry.pattern) || /\/\*\*?$/.test(entry.pattern)) {
      ctx.addIssue({
        code: 'custom',
        path: ['pattern'],
        message: 'an entry with selectors must be one SPIFFE ID (no /* or /**)',
      });
    }
  });

export type AgentCatalogEntryConfig = z.infer<typeof agentCatalogEntrySchema>;

const groupSvidSettings = z
  .object({ x509SvidTtlSeconds: svidTtl.optional(), jwtSvidTtlSeconds: svidTtl.optional() })
  .strict();

/** `spire:` in the config: how catalog workloads are registered. */
export const spireSettingsSchema = z
  .object({
    /** The parent of every generated entry: the node's (or node alias's) SPIFFE ID. `--parent` overrides. */
    parentId: z.string().refine(isValidSpiffeId, 'must be a SPIFFE ID').optional(),
    /** Defaults when neither the workload nor any of its groups sets a TTL. */
    x509SvidTtlSeconds: svidTtl.default(3600),
    jwtSvidTtlSeconds: svidTtl.default(300),
    /** SVID TTLs per AgentGroup; a workload in several groups gets the shortest. */
    groups: z.record(z.string(), groupSvidSettings).default({}),
    /** For `--format k8s`: the spire-controller-manager class the ClusterSPIFFEIDs belong to. */
    className: z.string().min(1).optional(),
  })
  .strict();

export type SpireSettings = z.infer<typeof spireSettingsSchema>;
