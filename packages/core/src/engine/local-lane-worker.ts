/**
 * Source of the local lane's worker thread (see `local-lane.ts`), run with
 * `new Worker(source, { eval: true })`: an inline CommonJS string works the same from the
 * TypeScript sources under test and from the bundled package, and needs only `node:`
 * built-ins.
 *
 * Each message is a batch `{ id, tasks, stop }`; the reply is `{ id, results }` with one
 * result per task, in order. Per file, with synchronous calls (a few µs each, against tens
 * of µs of main-thread bookkeeping per asynchronous call):
 *
 * 1. open the source without following a link and without blocking on a FIFO; read it into
 *    a buffer one byte larger than the scanned size, so growth shows; `fstat` the same
 *    descriptor after reading: anything but a regular file of the scanned size and mtime is
 *    `changed` (the job fails with SOURCE_CHANGED) and nothing is written;
 * 2. hash the bytes read (the source hash, from the one read of the source);
 * 3. create the destination exclusively (`wx`), write, set mode and times on the open
 *    descriptor, close;
 * 4. open the destination again and read it back from disk, and hash that: the
 *    verification. It is never skipped.
 *
 * A task without \`dst\` stops after step 2 and answers the bytes read as \`data\` (memory
 * moved to the main thread with the reply) with their CRC-32 as \`crc32\` (the zip writer
 * needs it; computed here, off the main thread): the packer of a ZIP_FIRST job reads small
 * local files this way.
 *
 * A failure after the destination was created removes it, so a retry through the adapter
 * finds the name free. `stop` is a shared flag: once the main thread sets it (failure or
 * cancellation), the remaining files of the batch are answered `stopped` without being
 * touched.
 *
 * A message `{ id, walk: { root, dirs, budget } }` lists part of a tree instead (see
 * `local-tree.ts`): each directory of `dirs` (relative to `root`) is read and every entry
 * lstat'ed — links are reported, never followed — descending into subdirectories until
 * about `budget` entries are seen. The reply `{ id, walk }` holds the entries as parallel
 * arrays (`paths`, `kinds`: 0 file, 1 directory, 2 anything else; `sizes`) and the
 * directories still to read (`pending`), or `error`.
 */
export const LANE_WORKER_SOURCE = String.raw`
'use strict';
const { parentPort } = require('node:worker_threads');
const fs = require('node:fs');
const { createHash } = require('node:crypto');
const { crc32 } = require('node:zlib');

const C = fs.constants;
const READ_SOURCE = C.O_RDONLY | (C.O_NOFOLLOW || 0) | (C.O_NONBLOCK || 0);
const READ_BACK = C.O_RDONLY | (C.O_NOFOLLOW || 0);

// Reused between files: a batch of small files allocates nothing per file.
let sourceBuf = Buffer.allocUnsafeSlow(64 * 1024);
let verifyBuf = Buffer.allocUnsafeSlow(64 * 1024);

function fit(buf, n) {
  return buf.length >= n ? buf : Buffer.allocUnsafeSlow(Math.max(n, buf.length * 2));
}

function readUpTo(fd, buf, limit) {
  let n = 0;
  while (n < limit) {
    const got = fs.readSync(fd, buf, n, limit - n, n);
    if (got === 0) break;
    n += got;
  }
  return n;
}

function writeAll(fd, data) {
  let n = 0;
  while (n < data.length) n += fs.writeSync(fd, data, n, data.length - n, n);
}

function closeQuietly(fd) {
  try {
    fs.closeSync(fd);
  } catch {}
}

function isRegularFile(fd) {
  try {
    return fs.fstatSync(fd).isFile();
  } catch {
    return true;
  }
}

function changed(t, st, n) {
  if (!st.isFile()) return true;
  if (n !== t.size || st.size !== t.size) return true;
  const drift = Math.abs(st.mtimeMs - t.mtimeMs);
  return t.mtimeSlackMs > 0 ? drift >= t.mtimeSlackMs : drift !== 0;
}

function copyOne(t) {
  let phase = 'read';
  let fd = -1;
  let created = false;
  try {
    fd = fs.openSync(t.src, READ_SOURCE);
    sourceBuf = fit(sourceBuf, t.size + 1);
    const n = readUpTo(fd, sourceBuf, t.size + 1);
    const st = fs.fstatSync(fd);
    fs.closeSync(fd);
    fd = -1;
    if (changed(t, st, n)) return { ok: false, phase: 'changed', size: st.isFile() ? st.size : -1 };
    const data = sourceBuf.subarray(0, n);
    const hash = createHash(t.algorithm).update(data).digest('hex');
    if (t.dst === undefined) {
      // Memory of its own, moved (not copied) to the main thread with the reply: nothing is
      // left behind for this thread's garbage collector, which runs rarely.
      const own = new Uint8Array(new ArrayBuffer(n));
      own.set(data);
      return { ok: true, hash, size: n, data: own, crc32: crc32(own) };
    }

    phase = 'write';
    // A resumed job's staging may hold a partial copy of this file from the interrupted run.
    if (t.replace) fs.rmSync(t.dst, { recursive: true, force: true });
    fd = fs.openSync(t.dst, 'wx', t.mode);
    created = true;
    writeAll(fd, data);
    // The umask (or a default ACL) may have changed the mode given at creation; on an
    // inode futimes dirties anyway, setting it outright costs less than checking it.
    fs.fchmodSync(fd, t.mode);
    // Exactly what the adapter path sets (a Date holds whole milliseconds), so DIRECT through
    // either path and ZIP_FIRST leave identical mtimes.
    const seconds = Math.trunc(t.mtimeMs) / 1000;
    fs.futimesSync(fd, seconds, seconds);
    fs.closeSync(fd);
    fd = -1;

    phase = 'verify';
    fd = fs.openSync(t.dst, READ_BACK);
    verifyBuf = fit(verifyBuf, t.size + 1);
    const m = readUpTo(fd, verifyBuf, t.size + 1);
    fs.closeSync(fd);
    fd = -1;
    const destHash = createHash(t.algorithm).update(verifyBuf.subarray(0, m)).digest('hex');
    return { ok: true, hash, size: n, destHash, destSize: m };
  } catch (error) {
    // Replaced by a directory, a FIFO or a device since the scan: a change, not an I/O fault.
    if (phase === 'read' && fd >= 0 && !isRegularFile(fd)) {
      closeQuietly(fd);
      return { ok: false, phase: 'changed', size: -1 };
    }
    if (fd >= 0) closeQuietly(fd);
    if (created) {
      try {
        fs.unlinkSync(t.dst);
      } catch {}
    }
    const e = error || {};
    return { ok: false, phase, errno: typeof e.code === 'string' ? e.code : undefined, syscall: e.syscall, message: String(e.message || e) };
  }
}

function walk(root, dirs, budget) {
  const base = root.endsWith('/') ? root : root + '/';
  const paths = [];
  const kinds = [];
  const sizes = [];
  const pending = dirs.slice();
  let seen = 0;
  let at = '';
  try {
    while (pending.length > 0 && seen < budget) {
      const dir = pending.pop();
      at = dir;
      // Like an adapter's listing, refuse a root that is not a directory (a link to one included).
      if (dir === '' && !fs.lstatSync(root).isDirectory()) throw Object.assign(new Error('not a directory'), { code: 'ENOTDIR', syscall: 'lstat' });
      const names = fs.readdirSync(dir === '' ? root : base + dir);
      const prefix = dir === '' ? '' : dir + '/';
      for (const name of names) {
        const path = prefix + name;
        at = path;
        const st = fs.lstatSync(base + path);
        const kind = st.isFile() ? 0 : st.isDirectory() ? 1 : 2;
        paths.push(path);
        kinds.push(kind);
        sizes.push(kind === 0 ? st.size : 0);
        if (kind === 1) pending.push(path);
      }
      seen += names.length + 1;
    }
  } catch (error) {
    const e = error || {};
    return { error: { path: at, errno: typeof e.code === 'string' ? e.code : undefined, syscall: e.syscall, message: String(e.message || e) } };
  }
  return { paths, kinds, sizes, pending };
}

parentPort.on('message', (batch) => {
  if (batch.walk) {
    parentPort.postMessage({ id: batch.id, walk: walk(batch.walk.root, batch.walk.dirs, batch.walk.budget) });
    return;
  }
  const stop = batch.stop ? new Int32Array(batch.stop) : null;
  const results = [];
  for (const task of batch.tasks) {
    if (stop !== null && Atomics.load(stop, 0) !== 0) results.push({ ok: false, phase: 'stopped' });
    else results.push(copyOne(task));
  }
  const moved = results.filter((r) => r.data !== undefined).map((r) => r.data.buffer);
  parentPort.postMessage({ id: batch.id, results }, moved);
});
`;
