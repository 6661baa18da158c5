/**
 * Candidate lines across implementations: what our `IceCandidate.toSdp` writes parses in werift-ice
 * (`Candidate.fromSdp`) and in aioice (`Candidate.from_sdp`, Debian's `python3-aioice`) to the same fields, for host
 * (IPv4 and IPv6), server-reflexive, relayed, peer-reflexive and ICE-TCP (passive, active, so) candidates; and the
 * lines werift and aioice write parse with our `fromSdp` to the same fields.
 *
 * Both werift and aioice read and write the attribute's value after `candidate:` (what follows `a=candidate:` in
 * SDP), while ours reads and writes `candidate:…` (RFC 8839 §5.1's `candidate-attribute`, and what a browser's
 * `RTCIceCandidate.candidate` holds): the prefix is added or removed at that boundary, as signalling code does.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Either } from "effect"
import { Candidate as WeriftCandidate } from "werift-ice"
import * as IceCandidate from "../../src/IceCandidate.js"
import { debianPython, requirePeer, runCommandEffect } from "./peers.js"

const aioice = await requirePeer("aioice")

/** Our candidates of every kind, built as the gatherer and the agent build them. */
const ours: ReadonlyArray<IceCandidate.Candidate> = [
  IceCandidate.make({ type: "host", address: "192.0.2.10", port: 54400 }),
  IceCandidate.make({ type: "host", address: "2001:db8::1", port: 50000, localPreference: 65535 - 256 }),
  IceCandidate.make({
    type: "srflx",
    address: "198.51.100.7",
    port: 61000,
    baseAddress: "192.0.2.10",
    serverAddress: "203.0.113.1:3478",
    relatedAddress: "192.0.2.10",
    relatedPort: 54400
  }),
  IceCandidate.make({
    type: "relay",
    address: "203.0.113.1",
    port: 49152,
    baseAddress: "203.0.113.1",
    serverAddress: "203.0.113.1:3478",
    relatedAddress: "198.51.100.7",
    relatedPort: 61001
  }),
  IceCandidate.make({
    type: "prflx",
    address: "198.51.100.8",
    port: 62000,
    priority: IceCandidate.priority({ type: "prflx" }),
    relatedAddress: "192.0.2.10",
    relatedPort: 54400
  }),
  IceCandidate.make({ type: "host", address: "192.0.2.10", port: 9443, transport: "tcp", tcpType: "passive" }),
  IceCandidate.make({ type: "host", address: "192.0.2.10", port: 9, transport: "tcp", tcpType: "active" }),
  IceCandidate.make({ type: "srflx", address: "198.51.100.7", port: 40000, transport: "tcp", tcpType: "so" }),
  IceCandidate.make({ type: "host", address: "2001:db8::2", port: 3478, transport: "tcp", tcpType: "passive" })
]

/** The fields both peers model, as ours has them. */
interface Fields {
  readonly foundation: string
  readonly component: number
  readonly transport: string
  readonly priority: number
  readonly host: string
  readonly port: number
  readonly type: string
  readonly relatedAddress: string | null
  readonly relatedPort: number | null
  readonly tcptype: string | null
}

const fieldsOf = (c: IceCandidate.Candidate): Fields => ({
  foundation: c.foundation,
  component: c.component,
  transport: c.transport,
  priority: c.priority,
  host: c.address,
  port: c.port,
  type: c.type,
  relatedAddress: c.relatedAddress ?? null,
  relatedPort: c.relatedPort ?? null,
  tcptype: c.tcpType ?? null
})

const value = (line: string) => {
  assert.isTrue(line.startsWith("candidate:"), line)
  return line.slice("candidate:".length)
}

const parseOurs = (attributeValue: string): IceCandidate.Candidate => {
  const parsed = IceCandidate.fromSdp(`candidate:${attributeValue}`)
  if (Either.isLeft(parsed)) throw new Error(parsed.left.message)
  return parsed.right
}

const weriftFields = (c: WeriftCandidate): Fields => ({
  foundation: c.foundation,
  component: c.component,
  transport: c.transport,
  priority: c.priority,
  host: c.host,
  port: c.port,
  type: c.type,
  relatedAddress: c.relatedAddress ?? null,
  relatedPort: c.relatedPort ?? null,
  tcptype: c.tcptype ?? null
})

describe("candidate lines: ours ↔ werift-ice", () => {
  it("our lines parse in werift's Candidate.fromSdp to the same fields, and werift writes them back", () => {
    for (const candidate of ours) {
      const line = value(IceCandidate.toSdp(candidate))
      const theirs = WeriftCandidate.fromSdp(line)
      assert.deepStrictEqual(weriftFields(theirs), fieldsOf(candidate), line)
      assert.strictEqual(theirs.toSdp(), line)
    }
  })

  it("werift's lines parse with our fromSdp to the same fields (generation and ufrag kept as extensions)", () => {
    const theirs = [
      new WeriftCandidate(
        "1908372631",
        1,
        "udp",
        2130706431,
        "192.0.2.20",
        40001,
        "host",
        undefined,
        undefined,
        undefined,
        0,
        "Ab1c"
      ),
      new WeriftCandidate("2938475610", 1, "udp", 2130706175, "2001:db8::20", 40002, "host"),
      new WeriftCandidate(
        "3029384756",
        1,
        "udp",
        1694498815,
        "198.51.100.20",
        40003,
        "srflx",
        "192.0.2.20",
        40001,
        undefined,
        0,
        "Ab1c"
      ),
      new WeriftCandidate("1029384756", 1, "udp", 16777215, "203.0.113.20", 40004, "relay", "198.51.100.20", 40003),
      new WeriftCandidate("4029384756", 1, "udp", 1862270975, "198.51.100.21", 40005, "prflx"),
      new WeriftCandidate(
        "5029384756",
        1,
        "tcp",
        1518280447,
        "192.0.2.20",
        40006,
        "host",
        undefined,
        undefined,
        "passive",
        0,
        "Ab1c"
      ),
      new WeriftCandidate("6029384756", 1, "tcp", 1518214911, "192.0.2.20", 9, "host", undefined, undefined, "active")
    ]
    for (const candidate of theirs) {
      const line = candidate.toSdp()
      const parsed = parseOurs(line)
      assert.deepStrictEqual(fieldsOf(parsed), weriftFields(candidate), line)
      const extensions = [
        ...(candidate.generation === undefined ? [] : [["generation", String(candidate.generation)] as const]),
        ...(candidate.ufrag === undefined ? [] : [["ufrag", candidate.ufrag] as const])
      ]
      assert.deepStrictEqual(parsed.extensions, extensions, line)
      assert.strictEqual(value(IceCandidate.toSdp(parsed)), line)
    }
  })
})

/** Reads JSON lines `{ op, ... }` on stdin; prints one JSON line per input. */
const aioiceProgram = `
import json, sys
from aioice import Candidate
def fields(c):
    return {"foundation": c.foundation, "component": c.component, "transport": c.transport,
            "priority": c.priority, "host": c.host, "port": c.port, "type": c.type,
            "relatedAddress": c.related_address, "relatedPort": c.related_port, "tcptype": c.tcptype}
for line in sys.stdin:
    if not line.strip():
        continue
    request = json.loads(line)
    if request["op"] == "parse":
        c = Candidate.from_sdp(request["sdp"])
        print(json.dumps({"fields": fields(c), "sdp": c.to_sdp()}))
    else:
        c = Candidate(**request["candidate"])
        print(json.dumps({"fields": fields(c), "sdp": c.to_sdp()}))
`

const runAioice = (requests: ReadonlyArray<object>) =>
  Effect.gen(function*() {
    const result = yield* runCommandEffect(debianPython, ["-c", aioiceProgram], {
      timeoutMs: 20_000,
      input: requests.map((r) => JSON.stringify(r)).join("\n") + "\n"
    })
    assert.strictEqual(result.code, 0, `aioice: ${result.stderr}`)
    return result.stdout.trim().split("\n").map((line) =>
      JSON.parse(line) as { readonly fields: Fields; readonly sdp: string }
    )
  })

describe.skipIf(aioice.skip)(`candidate lines: ours ↔ aioice ${aioice.info.version ?? ""} ${aioice.reason}`, () => {
  it.live("our lines parse in aioice's Candidate.from_sdp to the same fields, and aioice writes them back", () =>
    Effect.gen(function*() {
      const lines = ours.map((c) => value(IceCandidate.toSdp(c)))
      const answers = yield* runAioice(lines.map((sdp) => ({ op: "parse", sdp })))
      assert.strictEqual(answers.length, ours.length)
      answers.forEach((answer, i) => {
        assert.deepStrictEqual(answer.fields, fieldsOf(ours[i]!), lines[i])
        assert.strictEqual(answer.sdp, lines[i])
      })
    }))

  it.live("aioice's lines parse with our fromSdp to the same fields (generation kept as an extension)", () =>
    Effect.gen(function*() {
      const theirs = [
        {
          foundation: "6815297761",
          component: 1,
          transport: "udp",
          priority: 2130706431,
          host: "192.0.2.30",
          port: 31102,
          type: "host",
          generation: 0
        },
        {
          foundation: "a1b2c3d4e5",
          component: 1,
          transport: "udp",
          priority: 2130706431,
          host: "2001:db8::30",
          port: 31103,
          type: "host"
        },
        {
          foundation: "1b2c3d4e5f",
          component: 1,
          transport: "udp",
          priority: 1694498815,
          host: "198.51.100.30",
          port: 31104,
          type: "srflx",
          related_address: "192.0.2.30",
          related_port: 31102
        },
        {
          foundation: "2b2c3d4e5f",
          component: 1,
          transport: "udp",
          priority: 16777215,
          host: "203.0.113.30",
          port: 31105,
          type: "relay",
          related_address: "198.51.100.30",
          related_port: 31104
        },
        {
          foundation: "3b2c3d4e5f",
          component: 1,
          transport: "udp",
          priority: 1862270975,
          host: "198.51.100.31",
          port: 31106,
          type: "prflx"
        },
        {
          foundation: "4b2c3d4e5f",
          component: 1,
          transport: "tcp",
          priority: 1518280447,
          host: "192.0.2.30",
          port: 31107,
          type: "host",
          tcptype: "passive"
        },
        {
          foundation: "5b2c3d4e5f",
          component: 1,
          transport: "tcp",
          priority: 1518214911,
          host: "192.0.2.30",
          port: 9,
          type: "host",
          tcptype: "active"
        }
      ]
      const answers = yield* runAioice(theirs.map((candidate) => ({ op: "make", candidate })))
      assert.strictEqual(answers.length, theirs.length)
      answers.forEach((answer, i) => {
        const parsed = parseOurs(answer.sdp)
        assert.deepStrictEqual(fieldsOf(parsed), answer.fields, answer.sdp)
        const generation = theirs[i]!.generation
        assert.deepStrictEqual(
          parsed.extensions,
          generation === undefined ? [] : [["generation", String(generation)]],
          answer.sdp
        )
        assert.strictEqual(value(IceCandidate.toSdp(parsed)), answer.sdp)
      })
    }))
})
