/**
 * A tour of the STUN wire codecs, with no network: decode the RFC 5769 sample messages and check their
 * MESSAGE-INTEGRITY and FINGERPRINT; build an ICE connectivity check the way an agent does and read it back;
 * show what the decoder says about damaged bytes; frame STUN and ChannelData on a TCP byte stream.
 *
 * Run: `npm start` (or `npx tsx examples/stun-codec.ts`).
 */
import { Either } from "effect"
import {
  PacketDemux,
  StreamFraming,
  StunAttribute,
  StunIntegrity,
  StunMessage,
  TransportAddress,
  TurnChannelData
} from "../src/index.js"

const fromHex = (hex: string) => Uint8Array.from(hex.match(/../g)!.map((h) => parseInt(h, 16)))

// RFC 5769 §2.2: a Binding success response, protected with the short-term password below.
const response = fromHex(
  "0101003c2112a442b7e7a701bc34d686fa87dfae8022000b7465737420766563746f722000200008" +
    "0001a147e112a643000800142b91f599fd9e90c38c7489f92af9ba53f06be7d780280004c07d4c96"
)
const key = Either.getOrThrow(StunIntegrity.shortTermKey("VOkJxbRl1RmTxUk/WvJxBt"))

const decoded = StunMessage.decode(response)
if (Either.isLeft(decoded)) throw decoded.left
const message = decoded.right
const mapped = StunMessage.find(message, "XorMappedAddress")
console.log("RFC 5769 §2.2:", StunMessage.describe(message))
console.log("  mapped address:", mapped === undefined ? "none" : TransportAddress.format(mapped.address))
console.log("  software:", StunMessage.find(message, "Software")?.value)
console.log("  integrity and fingerprint:", Either.isRight(StunIntegrity.verify(message, key)) ? "valid" : "INVALID")

// An ICE connectivity check (RFC 8445 §7.1.1), as the controlling agent sends it.
const check = StunMessage.unsafeEncode(
  StunMessage.make(StunMessage.StunClass.Request, StunMessage.StunMethod.Binding, fromHex("a1b2c3d4e5f60718293a4b5c"), [
    StunAttribute.username("remoteUfrag:localUfrag"),
    StunAttribute.priority(1853824767),
    StunAttribute.iceControlling(0x0102030405060708n),
    StunAttribute.useCandidate
  ]),
  { integrity: Either.getOrThrow(StunIntegrity.shortTermKey("remotePasswordOf22Chars")), fingerprint: true }
)
console.log(`ICE check: ${check.length} bytes, first byte says ${PacketDemux.classifyPacket(check)}`)
const checkBack = Either.getOrThrow(StunMessage.decode(check))
console.log("  attributes:", checkBack.attributes.map((a) => a._tag).join(", "))

// Damaged bytes give a typed error that says what and where, never an exception.
const damaged = response.slice(0, 70)
const failure = StunMessage.decode(damaged)
if (Either.isLeft(failure)) console.log("truncated datagram:", failure.left.reason, "at byte", failure.left.offset)
const tampered = response.slice()
tampered[30] ^= 0x01
const tamperedResult = StunIntegrity.verify(Either.getOrThrow(StunMessage.decode(tampered)), key)
console.log("one flipped bit:", Either.isLeft(tamperedResult) ? tamperedResult.left.reason : "accepted?!")

// TURN over TCP: STUN and ChannelData messages on one byte stream, cut at arbitrary places.
const channelData = TurnChannelData.encode(0x4001, new TextEncoder().encode("hello"), { padded: true })
const stream = new Uint8Array([...response, ...channelData, ...check])
const deframer = StreamFraming.makeTurnStreamDeframer()
const frames: Array<string> = []
for (let i = 0; i < stream.length; i += 7) {
  deframer.push(
    stream.subarray(i, i + 7),
    (frame) => frames.push(`${PacketDemux.classifyPacket(frame)}(${frame.length})`)
  )
}
console.log("frames from a TCP stream read 7 bytes at a time:", frames.join(" "))
