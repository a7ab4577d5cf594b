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
 * A task with \`at\` extracts instead of copying: \`src\` is a STORE zip this process wrote
 * and verified, \`at\` the offset of the entry's local header; step 1 reads the entry's
 * \`size\` bytes after that header (the scan checks do not apply to an archive), and the
 * rest is a copy's: hash, exclusive create, mode and times, read back and hash. Entries
 * larger than 2 MiB go through in 2 MiB pieces (the stop flag is checked between pieces).
 *
 * A task without \`dst\` stops after step 2 and answers the bytes read as \`data\` (memory
 * moved to the main thread with the reply) with their CRC-32 as \`crc32\` (the zip writer
 * needs it; computed here, off the main thread): the packer of a ZIP_FIRST job reads small
 * local files this way. A batch may lend an ArrayBuffer as \`into\`: the bytes go there,
 * one file after another, while it has room, and it goes back with the reply (as \`into\`),
 * so the packer reuses a few buffers instead of allocating one per file. Thousands of small
 * allocations made here and freed on the main thread left ~30 MiB of the allocator's heap
 * resident after packing 20,000 files.
 *
 * A failure after the destination was created removes it, so a retry through the adapter
 * finds the name free. `stop` is a shared flag: once the main thread sets it (failure or
 * cancellation), the remaining files of the batch are answered `stopped` without being
 * touched.
 *
 * A message `{ id, walk: { root, dirs, budget } }` lists part of a tree instead (see
 * `local-tree.ts`): each directory of `dirs` (relative to `root`) is read and every entry
 * lstat'ed — links are reported, never followed — descending into subdirectories until
 * `budget` entries are seen. The reply `{ id, walk }` holds the entries as parallel arrays
 * (`paths`, `kinds`: 0 file, 1 directory, 2 anything else; `sizes`) and the directories
 * still to read (`pending`), or `error`. A directory with more entries than `budget` goes
 * out in pages of `budget` entries as it is read, each `{ id, walk, more: true }` (with an
 * empty `pending`), before that final reply.
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

// The buffer a read batch's bytes go into, and how much of it is used.
let into = null;
let intoUsed = 0;

const LOCAL_HEADER = 0x04034b50;
const headBuf = Buffer.allocUnsafeSlow(30);

// Larger archive entries are extracted in pieces of this size, never whole in memory.
const PIECE = 2 * 1024 * 1024;

function badArchive(t, what) {
  return Object.assign(new Error(what + ' at offset ' + t.at + ' of ' + t.src), { code: 'EBADARCHIVE' });
}

// Where the data of the STORE entry whose local header is at t.at begins.
function entryStart(fd, t) {
  if (fs.readSync(fd, headBuf, 0, 30, t.at) !== 30 || headBuf.readUInt32LE(0) !== LOCAL_HEADER || headBuf.readUInt16LE(8) !== 0) {
    throw badArchive(t, 'no stored zip entry');
  }
  return t.at + 30 + headBuf.readUInt16LE(26) + headBuf.readUInt16LE(28);
}

// n bytes of fd from position into buf (fewer only at end of file).
function readAt(fd, buf, n, position) {
  let got = 0;
  while (got < n) {
    const k = fs.readSync(fd, buf, got, n - got, position + got);
    if (k === 0) break;
    got += k;
  }
  return got;
}

// A small entry of a STORE zip this process wrote, whole into sourceBuf.
function readArchiveEntry(fd, t) {
  const start = entryStart(fd, t);
  sourceBuf = fit(sourceBuf, t.size);
  return readAt(fd, sourceBuf, t.size, start);
}

// The umask (or a default ACL) may have changed the mode given at creation; on an inode
// futimes dirties anyway, setting it outright costs less than checking it. The mtime is
// exactly what the adapter path sets (a Date holds whole milliseconds), so DIRECT through
// either path and ZIP_FIRST leave identical mtimes.
function setAttributesAndClose(fd, t) {
  fs.fchmodSync(fd, t.mode);
  const seconds = Math.trunc(t.mtimeMs) / 1000;
  fs.futimesSync(fd, seconds, seconds);
  fs.closeSync(fd);
}

// After a failure: descriptors closed, a destination this task created removed (so a retry
// through the adapter finds the name free), and the error as the main thread reads it.
function failed(phase, error, fds, created, dst) {
  for (const fd of fds) if (fd >= 0) closeQuietly(fd);
  if (created) {
    try {
      fs.unlinkSync(dst);
    } catch {}
  }
  const e = error || {};
  return { ok: false, phase, errno: typeof e.code === 'string' ? e.code : undefined, syscall: e.syscall, message: String(e.message || e) };
}

// A larger entry, piece by piece: read from the archive and hashed, written, then read back
// and hashed. Checks the stop flag between pieces, so a long file does not hold up a cancel.
function extractLarge(t, stop) {
  let phase = 'read';
  let src = -1;
  let fd = -1;
  let created = false;
  const stopped = () => stop !== null && Atomics.load(stop, 0) !== 0;
  try {
    src = fs.openSync(t.src, READ_BACK);
    const start = entryStart(src, t);
    sourceBuf = fit(sourceBuf, PIECE);
    phase = 'write';
    fd = fs.openSync(t.dst, 'wx', t.mode);
    created = true;
    const hash = createHash(t.algorithm);
    for (let done = 0; done < t.size; ) {
      if (stopped()) throw { stopped: true };
      phase = 'read';
      const want = Math.min(PIECE, t.size - done);
      if (readAt(src, sourceBuf, want, start + done) !== want) throw badArchive(t, 'archive ends inside the entry');
      const piece = sourceBuf.subarray(0, want);
      hash.update(piece);
      phase = 'write';
      for (let w = 0; w < want; ) w += fs.writeSync(fd, piece, w, want - w, done + w);
      done += want;
    }
    fs.closeSync(src);
    src = -1;
    setAttributesAndClose(fd, t);
    fd = -1;

    phase = 'verify';
    fd = fs.openSync(t.dst, READ_BACK);
    verifyBuf = fit(verifyBuf, PIECE);
    const back = createHash(t.algorithm);
    let m = 0;
    for (;;) {
      if (stopped()) throw { stopped: true };
      const k = readAt(fd, verifyBuf, PIECE, m);
      if (k === 0) break;
      back.update(verifyBuf.subarray(0, k));
      m += k;
    }
    fs.closeSync(fd);
    fd = -1;
    return { ok: true, hash: hash.digest('hex'), size: t.size, destHash: back.digest('hex'), destSize: m };
  } catch (error) {
    const answer = failed(phase, error, [src, fd], created, t.dst);
    return error && error.stopped ? { ok: false, phase: 'stopped' } : answer;
  }
}

function copyOne(t) {
  let phase = 'read';
  let fd = -1;
  let created = false;
  try {
    let n;
    if (t.at !== undefined) {
      fd = fs.openSync(t.src, READ_BACK);
      n = readArchiveEntry(fd, t);
      fs.closeSync(fd);
      fd = -1;
      if (n !== t.size) throw Object.assign(new Error('archive ends inside the entry at offset ' + t.at + ' of ' + t.src), { code: 'EBADARCHIVE' });
    } else {
      fd = fs.openSync(t.src, READ_SOURCE);
      sourceBuf = fit(sourceBuf, t.size + 1);
      n = readAt(fd, sourceBuf, t.size + 1, 0);
      const st = fs.fstatSync(fd);
      fs.closeSync(fd);
      fd = -1;
      if (changed(t, st, n)) return { ok: false, phase: 'changed', size: st.isFile() ? st.size : -1 };
    }
    const data = sourceBuf.subarray(0, n);
    const hash = createHash(t.algorithm).update(data).digest('hex');
    if (t.dst === undefined) {
      // Into the batch's buffer (lent by the main thread, moved back with the reply) while it
      // has room, else memory of its own, also moved: nothing is left behind for this
      // thread's garbage collector, which runs rarely.
      let out;
      if (into !== null && intoUsed + n <= into.byteLength) {
        out = new Uint8Array(into, intoUsed, n);
        intoUsed += n;
      } else {
        out = new Uint8Array(new ArrayBuffer(n));
      }
      out.set(data);
      return { ok: true, hash, size: n, data: out, crc32: crc32(out) };
    }

    phase = 'write';
    // A resumed job's staging may hold a partial copy of this file from the interrupted run.
    if (t.replace) fs.rmSync(t.dst, { recursive: true, force: true });
    fd = fs.openSync(t.dst, 'wx', t.mode);
    created = true;
    writeAll(fd, data);
    setAttributesAndClose(fd, t);
    fd = -1;

    phase = 'verify';
    fd = fs.openSync(t.dst, READ_BACK);
    verifyBuf = fit(verifyBuf, t.size + 1);
    const m = readAt(fd, verifyBuf, t.size + 1, 0);
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
    return failed(phase, error, [fd], created, t.dst);
  }
}

function walk(root, dirs, budget, sendPage) {
  const base = root.endsWith('/') ? root : root + '/';
  let paths = [];
  let kinds = [];
  let sizes = [];
  const pending = dirs.slice();
  let at = '';
  let handle = null;
  try {
    // A request ends at the first directory boundary after a page is full; inside a large
    // directory a full page goes out at once, with more to follow, so a 10,000-entry
    // directory is never held (and promoted out of a small young generation) whole.
    while (pending.length > 0 && paths.length < budget) {
      const dir = pending.pop();
      at = dir;
      // Like an adapter's listing, refuse a root that is not a directory (a link to one included).
      if (dir === '' && !fs.lstatSync(root).isDirectory()) throw Object.assign(new Error('not a directory'), { code: 'ENOTDIR', syscall: 'lstat' });
      handle = fs.opendirSync(dir === '' ? root : base + dir);
      const prefix = dir === '' ? '' : dir + '/';
      for (let entry = handle.readSync(); entry !== null; entry = handle.readSync()) {
        const path = prefix + entry.name;
        at = path;
        const st = fs.lstatSync(base + path);
        const kind = st.isFile() ? 0 : st.isDirectory() ? 1 : 2;
        paths.push(path);
        kinds.push(kind);
        sizes.push(kind === 0 ? st.size : 0);
        if (kind === 1) pending.push(path);
        if (paths.length >= budget) {
          sendPage({ paths, kinds, sizes, pending: [] });
          paths = [];
          kinds = [];
          sizes = [];
        }
      }
      handle.closeSync();
      handle = null;
    }
  } catch (error) {
    if (handle !== null) handle.closeSync();
    const e = error || {};
    return { error: { path: at, errno: typeof e.code === 'string' ? e.code : undefined, syscall: e.syscall, message: String(e.message || e) } };
  }
  return { paths, kinds, sizes, pending };
}

parentPort.on('message', (batch) => {
  if (batch.walk) {
    const page = (walk) => parentPort.postMessage({ id: batch.id, walk, more: true });
    parentPort.postMessage({ id: batch.id, walk: walk(batch.walk.root, batch.walk.dirs, batch.walk.budget, page) });
    return;
  }
  const stop = batch.stop ? new Int32Array(batch.stop) : null;
  into = batch.into || null;
  intoUsed = 0;
  const results = [];
  for (const task of batch.tasks) {
    if (stop !== null && Atomics.load(stop, 0) !== 0) results.push({ ok: false, phase: 'stopped' });
    else results.push(task.at !== undefined && task.size > PIECE ? extractLarge(task, stop) : copyOne(task));
  }
  const moved = new Set(results.filter((r) => r.data !== undefined).map((r) => r.data.buffer));
  if (into !== null) moved.add(into);
  parentPort.postMessage({ id: batch.id, results, into: into || undefined }, [...moved]);
  into = null;
});
`;
