import { afterEach, beforeEach, describe, expect, test } from 'vitest';
import { describeStoreConformance } from '@ketter/core/testing';
import { openStore, tamperOneEvent } from './support.js';

describeStoreConformance(
  { describe, test, expect, beforeEach, afterEach },
  async () => {
    const { store, schema, cleanup } = await openStore();
    return { store, cleanup, tamper: () => tamperOneEvent(schema) };
  },
  { name: 'postgres' },
);
