/**
 * STUN codec benchmark: effect-ice against the npm `stun` package and werift-ice's STUN message code, in one run,
 * on the same inputs (see `peers.ts`). Prints ns/op per implementation and the ratio ours/theirs.
 *
 * Operations:
 * - decode: bytes to a message object.
 * - decode + verify: decode, then check MESSAGE-INTEGRITY (HMAC-SHA1) and FINGERPRINT (CRC-32).
 * - encode: build the message from its values and write it with MESSAGE-INTEGRITY and FINGERPRINT.
 *
 * effect-ice holds an `IntegrityKey` per credential, as an ICE agent or TURN client does for its session, so the
 * HMAC key schedule is computed once; the peers' APIs take the key bytes and redo it on every call. The row
 * "decode + verify, new key per call" shows our cost without that cache too.
 *
 * Run: `npm run bench` (or `npx tsx bench/codec.bench.ts`).
 */
import { Either } from "effect"
import * as StunAttribute from "../src/StunAttribute.js"
import * as StunIntegrity from "../src/StunIntegrity.js"
import * as StunMessage from "../src/StunMessage.js"
import { sampleIpv4Response, sampleRequest } from "../test/fixtures/rfc5769.js"
import type { Row } from "./harness.js"
import { measure, printTable } from "./harness.js"
import type { Peer } from "./peers.js"
import { messages, peers } from "./peers.js"

const key = (password: string) => Either.getOrThrow(StunIntegrity.shortTermKey(password))
const requestKey = key(messages.request.password)
const responseKey = key(messages.response.password)
const checkKey = key(messages.check.password)

const decodeVerify = (bytes: Uint8Array, integrityKey: StunIntegrity.IntegrityKey): boolean => {
  const decoded = StunMessage.decode(bytes)
  if (Either.isLeft(decoded)) return false
  const m = decoded.right
  return StunIntegrity.verifyIntegritySha1(m, integrityKey) &&
    (m.fingerprintOffset < 0 || StunIntegrity.verifyFingerprint(m))
}

const ours: Peer = {
  name: "effect-ice",
  decode: (bytes) => StunMessage.decode(bytes),
  decodeVerify: (bytes, keyBytes) =>
    decodeVerify(
      bytes,
      keyBytes === requestKey.bytes ? requestKey : keyBytes === checkKey.bytes ? checkKey : responseKey
    ),
  encodeRequest: () => {
    const m = messages.request
    return StunMessage.unsafeEncode(
      StunMessage.make(StunMessage.StunClass.Request, StunMessage.StunMethod.Binding, m.transactionId, [
        StunAttribute.software(m.software),
        StunAttribute.priority(m.priority),
        StunAttribute.iceControlled(m.iceControlled),
        StunAttribute.username(m.username)
      ]),
      { integrity: requestKey, fingerprint: true }
    )
  },
  encodeResponse: () => {
    const m = messages.response
    return StunMessage.unsafeEncode(
      StunMessage.make(StunMessage.StunClass.SuccessResponse, StunMessage.StunMethod.Binding, m.transactionId, [
        StunAttribute.software(m.software),
        StunAttribute.xorMappedAddress({ family: "IPv4", ip: m.mappedAddress, port: m.mappedPort })
      ]),
      { integrity: responseKey, fingerprint: true }
    )
  },
  encodeCheck: () => {
    const m = messages.check
    return StunMessage.unsafeEncode(
      StunMessage.make(StunMessage.StunClass.Request, StunMessage.StunMethod.Binding, m.transactionId, [
        StunAttribute.username(m.username),
        StunAttribute.priority(m.priority),
        StunAttribute.iceControlling(m.iceControlling),
        StunAttribute.useCandidate
      ]),
      { integrity: checkKey, fingerprint: true }
    )
  }
}

// Inputs every implementation decodes: zero-padded messages (werift-ice's encoding, byte-identical to ours and to
// `stun`'s), so that every peer's verification accepts them, plus the RFC 5769 originals for plain decoding.
const requestBytes = ours.encodeRequest()
const responseBytes = ours.encodeResponse()
const checkBytes = ours.encodeCheck()
const keyBytes = { request: requestKey.bytes, response: responseKey.bytes, check: checkKey.bytes }

const all: ReadonlyArray<Peer> = [ours, ...peers]

// Every implementation must accept every input before it is timed, or the timing means nothing.
for (const peer of all) {
  for (
    const [name, bytes, k] of [
      ["request", requestBytes, keyBytes.request],
      ["response", responseBytes, keyBytes.response],
      ["check", checkBytes, keyBytes.check]
    ] as const
  ) {
    if (!peer.decodeVerify(bytes, k)) throw new Error(`${peer.name} does not verify the ${name}`)
  }
  for (
    const [name, encoded] of [
      ["request", peer.encodeRequest()],
      ["response", peer.encodeResponse()],
      ["check", peer.encodeCheck()]
    ] as const
  ) {
    const k = keyBytes[name]
    if (!decodeVerify(encoded, k === requestKey.bytes ? requestKey : k === checkKey.bytes ? checkKey : responseKey)) {
      throw new Error(`${peer.name}'s ${name} does not verify`)
    }
  }
}

const rows: Array<Row> = []
const run = (operation: string, implementation: string, fn: () => unknown) => {
  const m = measure(`${implementation}: ${operation}`, fn)
  rows.push({ operation, implementation, nsPerOp: m.nsPerOp })
}

for (const peer of all) {
  run("decode RFC 5769 2.1 request", peer.name, () => peer.decode(sampleRequest.bytes))
  run("decode RFC 5769 2.2 response", peer.name, () => peer.decode(sampleIpv4Response.bytes))
  run("decode ICE check", peer.name, () => peer.decode(checkBytes))
  run("decode + verify request", peer.name, () => peer.decodeVerify(requestBytes, keyBytes.request))
  run("decode + verify response", peer.name, () => peer.decodeVerify(responseBytes, keyBytes.response))
  run("decode + verify ICE check", peer.name, () => peer.decodeVerify(checkBytes, keyBytes.check))
  run("encode request + MI + FP", peer.name, () => peer.encodeRequest())
  run("encode response + MI + FP", peer.name, () => peer.encodeResponse())
  run("encode ICE check + MI + FP", peer.name, () => peer.encodeCheck())
}
run(
  "decode + verify ICE check, new key per call",
  "effect-ice",
  () => decodeVerify(checkBytes, key(messages.check.password))
)

console.log(`STUN codec benchmark, Node ${process.version}, ${new Date().toISOString()}`)
printTable(rows)
const targets = [
  ["decode + verify ICE check", 1500],
  ["encode ICE check + MI + FP", 1500]
] as const
for (const [operation, target] of targets) {
  const ns = rows.find((r) => r.operation === operation && r.implementation === "effect-ice")!.nsPerOp
  console.log(`target ${operation} <= ${target} ns: ${Math.round(ns)} ns, ${ns <= target ? "met" : "NOT met"}`)
}
