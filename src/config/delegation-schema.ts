/** `delegation`: agents that spawn agents (DelegateTask) and the Transaction Tokens tasks carry. */
import { z } from 'zod';

export const delegationConfigSchema = z
  .object({
    /** Levels of delegation below a task an agent began itself (0: no delegation at all). */
    maxDepth: z.number().int().min(0).max(16).default(3),
    /** Lifetime of a Transaction Token (never past its task); at most the signing key overlap. */
    transactionTokenTtlSeconds: z.number().int().positive().max(3600).default(300),
  })
  .strict();
