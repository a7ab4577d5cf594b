import { ErrorCode, KetterError } from '@ketter/core';

/** Default schema holding Ketter's tables. */
export const DEFAULT_SCHEMA = 'ketter';

const SCHEMA_NAME = /^[A-Za-z_][A-Za-z0-9_]{0,62}$/;

/**
 * Fully qualified, quoted names of every object Ketter keeps in one schema. The schema
 * name is checked once here because it is spliced into SQL text (identifiers cannot be
 * bound as parameters).
 */
export class SchemaNames {
  readonly schema: string;
  readonly quoted: string;

  constructor(schema: string = DEFAULT_SCHEMA) {
    if (typeof schema !== 'string' || !SCHEMA_NAME.test(schema)) {
      throw new KetterError(
        ErrorCode.INVALID_REQUEST,
        `[postgres] invalid schema name '${String(schema)}': use letters, digits and _ (at most 63, not starting with a digit)`,
      );
    }
    this.schema = schema;
    this.quoted = `"${schema}"`;
  }

  get portals(): string {
    return `${this.quoted}.portals`;
  }
  get jobs(): string {
    return `${this.quoted}.jobs`;
  }
  get events(): string {
    return `${this.quoted}.job_events`;
  }
  get leases(): string {
    return `${this.quoted}.leases`;
  }
  get migrations(): string {
    return `${this.quoted}.ketter_migrations`;
  }
  /** SQL function deciding whether two lock keys overlap. */
  get overlaps(): string {
    return `${this.quoted}.lock_keys_overlap`;
  }

  /** Text hashed into the advisory-lock key that serialises migrations of this schema. */
  get migrateLockName(): string {
    return `ketter:migrate:${this.schema}`;
  }
  /** Text hashed into the advisory-lock key that serialises lock acquisition in this schema. */
  get leaseLockName(): string {
    return `ketter:leases:${this.schema}`;
  }
}
