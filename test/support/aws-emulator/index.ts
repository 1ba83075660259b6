export { AwsEmulator, startAwsEmulator, type AwsFaults } from './emulator.js';
export { PACKED_LIMIT_BYTES } from './sts.js';
export type { Role, RoleConfig, Session } from './state.js';

/** The accounts and roles the tests and the bench use. */
export const AWS_ACCOUNT = '111122223333';
export const BROKER_ROLE_ARN = `arn:aws:iam::${AWS_ACCOUNT}:role/svid-broker`;
export const DEPLOY_ROLE_ARN = `arn:aws:iam::${AWS_ACCOUNT}:role/agents/deploy`;
