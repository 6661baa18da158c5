/**
 * Micro benchmark of the hash primitives on the STUN hot path (`src/internal/sha1.ts`, `sha256.ts`, `crc32.ts`,
 * `md5.ts`) against `node:crypto` and `node:zlib`. Run with `npx tsx bench/hash.bench.ts`; optional argument: the
 * iteration count per sample (default 1e6).
 *
 * Each case is warmed up, then timed over several samples; the best sample is reported as ns/op, followed by the
 * peer's figure and the ratio ours/node (below 1 means we are faster). The HMAC cases use a key prepared once, as
 * the STUN runtime does (one `HmacSha1Key` per credential), and a 100-byte message, about the size of a STUN Binding
 * request with USERNAME, PRIORITY, ICE-CONTROLLING and USE-CANDIDATE.
 *
 * @since 0.1.0
 */
import { createHash, createHmac, createSecretKey } from "node:crypto"
import * as zlib from "node:zlib"
import { crc32 } from "../src/internal/crc32.js"
import { md5 } from "../src/internal/md5.js"
import { hmacSha1Into, hmacSha1Key, hmacSha1Verify, sha1 } from "../src/internal/sha1.js"
import { hmacSha256Into, hmacSha256Key, hmacSha256Verify, sha256 } from "../src/internal/sha256.js"

const iterations = Number(process.argv[2] ?? 1e6)
const samples = 5

/** Keeps results observable so the optimizer cannot drop the measured work. */
let sink = 0

const time = (fn: () => number, n: number): number => {
  const t0 = process.hrtime.bigint()
  for (let i = 0; i < n; i++) sink ^= fn()
  return Number(process.hrtime.bigint() - t0) / n
}

const measure = (fn: () => number, n: number): number => {
  time(fn, Math.max(10_000, n / 10))
  let best = Infinity
  for (let s = 0; s < samples; s++) best = Math.min(best, time(fn, n))
  return best
}

const rows: Array<{ readonly name: string; readonly ours: number; readonly node: number }> = []

const bench = (name: string, ours: () => number, node: () => number, n = iterations): void => {
  const o = measure(ours, n)
  const p = measure(node, Math.max(10_000, n / 4))
  rows.push({ name, ours: o, node: p })
  console.log(
    `${name.padEnd(44)} ours ${o.toFixed(1).padStart(8)} ns/op   node ${p.toFixed(1).padStart(8)} ns/op   ` +
      `ours/node ${(o / p).toFixed(2)}`
  )
}

const bytes = (n: number, seed: number): Uint8Array => {
  const b = new Uint8Array(n)
  for (let i = 0; i < n; i++) b[i] = (i * 131 + seed * 17 + 7) & 0xff
  return b
}

const msg = bytes(100, 1)
const big = bytes(1200, 2)
const keyBytes = bytes(16, 3)
const nodeKey = Buffer.from(keyBytes)
const secretKey = createSecretKey(nodeKey)
const k1 = hmacSha1Key(keyBytes)
const k256 = hmacSha256Key(keyBytes)
const out = new Uint8Array(32)
const mac1 = new Uint8Array(20)
hmacSha1Into(k1, msg, 0, msg.length, -1, mac1, 0)
const mac256 = new Uint8Array(32)
hmacSha256Into(k256, msg, 0, msg.length, -1, mac256, 0)

const zlibCrc32 = (zlib as unknown as { crc32?: (data: Uint8Array) => number }).crc32

console.log(`node ${process.version}, ${iterations} iterations per sample, best of ${samples}\n`)

bench("hmacSha1Into 100 B (cached key)", () => {
  hmacSha1Into(k1, msg, 0, 100, -1, out, 0)
  return out[0]
}, () => createHmac("sha1", nodeKey).update(msg).digest()[0])

bench("hmacSha1Into 100 B override, node KeyObject", () => {
  hmacSha1Into(k1, msg, 0, 100, 76, out, 0)
  return out[0]
}, () => createHmac("sha1", secretKey).update(msg).digest()[0])

bench("hmacSha1Verify 100 B", () => hmacSha1Verify(k1, msg, 0, 100, -1, mac1, 0) ? 1 : 0, () => {
  const d = createHmac("sha1", nodeKey).update(msg).digest()
  return d.equals(mac1) ? 1 : 0
})

bench(
  "hmacSha1Key 16 B (node: HMAC of 0 B)",
  () => hmacSha1Key(keyBytes).inner[0],
  () => createHmac("sha1", nodeKey).digest()[0]
)

bench("hmacSha256Into 100 B (cached key)", () => {
  hmacSha256Into(k256, msg, 0, 100, -1, out, 0)
  return out[0]
}, () => createHmac("sha256", nodeKey).update(msg).digest()[0])

bench(
  "hmacSha256Verify 100 B, 32 B MAC",
  () => hmacSha256Verify(k256, msg, 0, 100, -1, mac256, 0, 32) ? 1 : 0,
  () => createHmac("sha256", nodeKey).update(msg).digest().equals(mac256) ? 1 : 0
)

bench("sha1 100 B", () => sha1(msg)[0], () => createHash("sha1").update(msg).digest()[0])
bench("sha256 100 B", () => sha256(msg)[0], () => createHash("sha256").update(msg).digest()[0])
bench("md5 100 B", () => md5(msg)[0], () => createHash("md5").update(msg).digest()[0])
bench(
  "hmacSha1Into 1200 B (cached key)",
  () => {
    hmacSha1Into(k1, big, 0, big.length, -1, out, 0)
    return out[0]
  },
  () => createHmac("sha1", nodeKey).update(big).digest()[0],
  iterations / 10
)

if (zlibCrc32 !== undefined) {
  bench("crc32 100 B", () => crc32(msg, 0, 100), () => zlibCrc32(msg))
  bench("crc32 1200 B", () => crc32(big, 0, big.length), () => zlibCrc32(big), iterations / 10)
} else {
  const o = measure(() => crc32(msg, 0, 100), iterations)
  console.log(`${"crc32 100 B".padEnd(44)} ours ${o.toFixed(1).padStart(8)} ns/op   (no zlib.crc32 in this Node)`)
}

if (sink === 0x7fffffff) console.log(rows.length)
