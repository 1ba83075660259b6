/** `svid-broker audit verify FILE`: exit 0 when the chain is intact, 1 at the first broken record. */
import { formatVerifyResult, verifyAuditFile } from '../audit/verify-file.js';

export async function runAuditVerify(file: string): Promise<number> {
  const result = await verifyAuditFile(file);
  const text = formatVerifyResult(result);
  if (result.ok) console.log(text);
  else console.error(text);
  return result.ok ? 0 : 1;
}
