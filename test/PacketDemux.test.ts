import { assert, describe, it } from "@effect/vitest"
import { FastCheck } from "effect"
import * as PacketDemux from "../src/PacketDemux.js"

const { PacketKind } = PacketDemux

describe("PacketDemux", () => {
  it("classifies the RFC 7983 range boundaries", () => {
    const cases: ReadonlyArray<readonly [number, PacketDemux.PacketKind]> = [
      [0, PacketKind.Stun],
      [3, PacketKind.Stun],
      [4, PacketKind.Unknown],
      [15, PacketKind.Unknown],
      [16, PacketKind.Zrtp],
      [19, PacketKind.Zrtp],
      [20, PacketKind.Dtls],
      [63, PacketKind.Dtls],
      [64, PacketKind.TurnChannel],
      [79, PacketKind.TurnChannel],
      [80, PacketKind.Unknown],
      [127, PacketKind.Unknown],
      [128, PacketKind.RtpRtcp],
      [191, PacketKind.RtpRtcp],
      [192, PacketKind.Unknown],
      [255, PacketKind.Unknown]
    ]
    for (const [byte, kind] of cases) {
      assert.strictEqual(PacketDemux.classify(byte), kind, `first byte ${byte}`)
      assert.strictEqual(PacketDemux.classifyPacket(Uint8Array.from([byte, 0, 0, 0])), kind, `packet ${byte}`)
    }
  })

  it("has exactly the RFC 7983 range sizes over all 256 bytes", () => {
    const counts = new Map<PacketDemux.PacketKind, number>()
    for (let byte = 0; byte < 256; byte++) {
      const kind = PacketDemux.classify(byte)
      counts.set(kind, (counts.get(kind) ?? 0) + 1)
    }
    assert.deepStrictEqual(Object.fromEntries(counts), {
      Stun: 4,
      Unknown: 12 + 48 + 64,
      Zrtp: 4,
      Dtls: 44,
      TurnChannel: 16,
      RtpRtcp: 64
    })
  })

  it("classifies an empty packet and values that are not bytes as Unknown", () => {
    assert.strictEqual(PacketDemux.classifyPacket(new Uint8Array(0)), PacketKind.Unknown)
    for (const value of [-1, 256, 1000, 1.5, Number.NaN]) {
      assert.strictEqual(PacketDemux.classify(value), PacketKind.Unknown, `value ${value}`)
    }
  })

  it("classifies real first bytes: a Binding request, ChannelData, a DTLS handshake, RTP version 2", () => {
    assert.strictEqual(PacketDemux.classifyPacket(Uint8Array.from([0x00, 0x01, 0x00, 0x00])), PacketKind.Stun)
    assert.strictEqual(PacketDemux.classifyPacket(Uint8Array.from([0x01, 0x01, 0x00, 0x0c])), PacketKind.Stun)
    assert.strictEqual(PacketDemux.classifyPacket(Uint8Array.from([0x40, 0x00, 0x00, 0x04])), PacketKind.TurnChannel)
    assert.strictEqual(PacketDemux.classifyPacket(Uint8Array.from([0x16, 0xfe, 0xfd])), PacketKind.Dtls)
    assert.strictEqual(PacketDemux.classifyPacket(Uint8Array.from([0x80, 0x60])), PacketKind.RtpRtcp)
  })

  it.prop(
    "agrees with the RFC 7983 ranges for every packet",
    { packet: FastCheck.uint8Array({ minLength: 1, maxLength: 8 }) },
    ({ packet }) => {
      const b = packet[0]!
      const expected = b <= 3
        ? "Stun"
        : b >= 16 && b <= 19
        ? "Zrtp"
        : b >= 20 && b <= 63
        ? "Dtls"
        : b >= 64 && b <= 79
        ? "TurnChannel"
        : b >= 128 && b <= 191
        ? "RtpRtcp"
        : "Unknown"
      assert.strictEqual(PacketDemux.classifyPacket(packet), expected)
    }
  )
})
