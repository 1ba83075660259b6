/**
 * The transmitter metadata of every SSF sink, by the path the ops listener serves it at
 * (`/.well-known/ssf-configuration`, plus the issuer's path when it has one).
 */
import { ssfConfiguration, ssfConfigurationPath } from './ssf-transmitter.js';

export class SsfMetadata {
  private readonly documents = new Map<string, Record<string, unknown>>();

  /** Publishes the metadata of a transmitter whose SETs carry `iss` = `issuer`. */
  add(issuer: string): void {
    this.documents.set(ssfConfigurationPath(issuer), ssfConfiguration(issuer));
  }

  /** The document served at `path`, or undefined (404). */
  configuration(path: string): Record<string, unknown> | undefined {
    return this.documents.get(path);
  }
}
