/**
 * `audit`: the chain file (the chain's home, always on and required) and the sinks the trail is
 * streamed to (any number at once, each `required` or `best_effort`).
 */
import { z } from 'zod';

const mode = z.enum(['required', 'best_effort']);
const positiveInt = z.number().int().positive();

/** Redis Stream: one XADD per record (MAXLEN ~ maxLen), on the broker's own Redis connection. */
const redisStreamSink = z
  .object({
    type: z.literal('redis_stream'),
    name: z
      .string()
      .regex(/^[a-z0-9][a-z0-9_-]*$/)
      .optional(),
    mode: mode.default('best_effort'),
    /** The stream key (the configured redis.keyPrefix is not added). */
    key: z.string().min(1).default('svid-broker:audit'),
    /** Approximate cap on the stream's length (XADD MAXLEN ~). */
    maxLen: positiveInt.default(1_000_000),
  })
  .strict();

/** HTTP webhook: batched POSTs of CloudEvents, HMAC-signed, spooled to disk while the receiver is down. */
const webhookSink = z
  .object({
    type: z.literal('webhook'),
    name: z
      .string()
      .regex(/^[a-z0-9][a-z0-9_-]*$/)
      .optional(),
    mode: mode.default('best_effort'),
    url: z.url({ protocol: /^https?$/ }),
    /** structured: one application/cloudevents+json event per POST; batch: application/cloudevents-batch+json; splunk_hec: Splunk HEC events. */
    format: z.enum(['structured', 'batch', 'splunk_hec']).default('batch'),
    /** File holding the HMAC-SHA256 key that signs each body (header X-Svid-Broker-Signature); required: every body is signed. */
    hmacKeyFile: z.string().min(1),
    /** File holding the Splunk HEC token (format splunk_hec: `Authorization: Splunk <token>`). */
    splunkTokenFile: z.string().optional(),
    /** CA bundle (PEM) for an https receiver with a private CA. */
    caFile: z.string().optional(),
    /** Directory where undelivered records wait on disk, in order. Default `<audit.file>.spool/<name>`. */
    spoolDir: z.string().optional(),
    batchMaxRecords: positiveInt.max(10_000).default(100),
    batchMaxWaitMs: z.number().int().min(0).default(200),
    timeoutMs: positiveInt.default(5000),
  })
  .strict()
  .refine((s) => s.format !== 'splunk_hec' || s.splunkTokenFile !== undefined, {
    message: 'format splunk_hec needs splunkTokenFile',
    path: ['splunkTokenFile'],
  });

/** OpenID Shared Signals transmitter: CAEP SETs pushed (RFC 8935) when a lease is revoked or an agent quarantined. */
const ssfSink = z
  .object({
    type: z.literal('ssf'),
    name: z
      .string()
      .regex(/^[a-z0-9][a-z0-9_-]*$/)
      .optional(),
    mode: mode.default('best_effort'),
    /** `iss` of the SETs; default the broker's ops URL (where /.well-known/ssf-configuration is served). */
    issuer: z.url().optional(),
    receivers: z
      .array(
        z
          .object({
            url: z.url({ protocol: /^https?$/ }),
            /** `aud` of the SETs sent to this receiver. */
            audience: z.string().min(1),
            /** File holding a bearer token sent as Authorization to this receiver. */
            authorizationFile: z.string().optional(),
            caFile: z.string().optional(),
          })
          .strict(),
      )
      .min(1),
    timeoutMs: positiveInt.default(5000),
  })
  .strict();

export const auditSinkSchema = z.discriminatedUnion('type', [redisStreamSink, webhookSink, ssfSink]);
export type AuditSinkConfig = z.infer<typeof auditSinkSchema>;

export const auditConfigSchema = z
  .object({
    /** The hash-chained JSON Lines file: the chain's home on this replica (always on, required). */
    file: z.string().default('svid-broker-audit.jsonl'),
    fsync: z.boolean().default(true),
    /** A write counts as recorded once the file and every required sink acknowledged it within this bound. */
    ackTimeoutMs: positiveInt.max(60_000).default(2000),
    /** Key for `hmac-sha256:<hex>` identifiers (accessors, token ids, session names); created (0600) when missing. Default `<audit.file>.hmac-key`. */
    hmacKeyFile: z.string().optional(),
    /** Rotation of the chain file; the chain continues across files. */
    rotate: z
      .object({
        maxBytes: positiveInt.optional(),
        maxAgeSeconds: positiveInt.optional(),
      })
      .strict()
      .prefault({}),
    /** Signed checkpoints (C2SP tlog-checkpoint) over the chain head. */
    checkpoints: z
      .object({
        enabled: z.boolean().default(true),
        everyRecords: positiveInt.default(1000),
        intervalSeconds: positiveInt.default(60),
        /** Ed25519 signing key (PKCS#8 PEM); created (0600) when missing. Default `<audit.file>.checkpoint-key`. */
        keyFile: z.string().optional(),
        /** The checkpoint origin line; default `svid-broker/<broker SPIFFE ID without spiffe://>`. */
        origin: z
          .string()
          .regex(/^[^\s+]+$/u, "no spaces or '+': it is also the signing key's name")
          .optional(),
      })
      .strict()
      .prefault({}),
    sinks: z.array(auditSinkSchema).default([]),
  })
  .strict();
