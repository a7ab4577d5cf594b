import { describe, expect, it } from 'vitest';
import { formatBytes, formatRate } from '../src/format.js';

describe('formatRate', () => {
  it('prints whole bytes per second below 1 KiB/s, as a person would read them', () => {
    expect(formatRate(6, 149)).toBe('40 B/s');
    expect(formatRate(1, 3)).toBe('333 B/s');
  });
  it('prints larger rates in binary units and says when no time has passed', () => {
    expect(formatRate(10 * 1024 * 1024, 1000)).toBe('10.0 MiB/s');
    expect(formatRate(3 * 1024, 2000)).toBe('1.50 KiB/s');
    expect(formatRate(5, 0)).toBe('-');
  });
});

describe('formatBytes', () => {
  it('keeps bytes exact below 1 KiB and rounds above', () => {
    expect(formatBytes(1023)).toBe('1023 B');
    expect(formatBytes(1024)).toBe('1.00 KiB');
    expect(formatBytes(64 * 1024 * 1024)).toBe('64.0 MiB');
  });
});
