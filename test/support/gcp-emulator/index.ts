export {
  GcpEmulator,
  startGcpEmulator,
  type ServiceAccountToken,
  type WorkloadIdentityProvider,
} from './emulator.js';

export const GCP_PROVIDER =
  '//iam.googleapis.com/projects/123456789/locations/global/workloadIdentityPools/spiffe/providers/example-org';
export const GCP_READER_SA = 'bucket-reader@acme-prod.iam.gserviceaccount.com';
export const GCP_HOP_SA = 'hop-account@acme-prod.iam.gserviceaccount.com';
