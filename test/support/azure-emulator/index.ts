export {
  AzureEmulator,
  startAzureEmulator,
  type AppRegistration,
  type IssuedAzureToken,
} from './emulator.js';

export const AZURE_TENANT = '72f988bf-86f1-41af-91ab-2d7cd011db47';
export const AZURE_CLIENT = '0b7c5f5e-1d2a-4c3b-9e8f-a1b2c3d4e5f6';
export const AZURE_SCOPE = 'https://storage.azure.com/.default';
