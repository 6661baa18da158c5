/**
 * A minimal STUN/TURN codec for the benchmark's client side, hand-rolled on `node:crypto` so the load generator
 * depends on nothing under test: requests with long-term MESSAGE-INTEGRITY (RFC 8489 §9.2, MD5 key, HMAC-SHA1),
 * the few attributes a TURN client needs, and a decoder that returns the attributes by type. No FINGERPRINT: no
 * server of the benchmark requires it.
 */
import { createHash, createHmac, randomBytes } from "node:crypto"

export const magicCookie = 0x2112a442

export const Method = {
  Binding: 0x001,
  Allocate: 0x003,
  Refresh: 0x004,
  Send: 0x006,
  Data: 0x007,
  CreatePermission: 0x008,
  ChannelBind: 0x009
} as const

export const Attr = {
  ChannelNumber: 0x000c,
  Lifetime: 0x000d,
  XorPeerAddress: 0x0012,
  Data: 0x0013,
  Realm: 0x0014,
  Nonce: 0x0015,
  XorRelayedAddress: 0x0016,
  RequestedTransport: 0x0019,
  XorMappedAddress: 0x0020,
  Username: 0x0006,
  MessageIntegrity: 0x0008,
  ErrorCode: 0x0009
} as const

/** Message types for methods below 0x10 (every TURN method): the class bits are 0x0010 and 0x0100. */
export const requestType = (method: number): number => method
export const indicationType = (method: number): number => method | 0x0010
export const successType = (method: number): number => method | 0x0100
export const errorType = (method: number): number => method | 0x0110

export interface Attribute {
  readonly type: number
  readonly value: Buffer
}

export const attribute = (type: number, value: Buffer): Attribute => ({ type, value })
export const text = (type: number, value: string): Attribute => ({ type, value: Buffer.from(value, "utf8") })
export const requestedTransportUdp: Attribute = { type: Attr.RequestedTransport, value: Buffer.from([17, 0, 0, 0]) }
export const channelNumber = (n: number): Attribute => ({
  type: Attr.ChannelNumber,
  value: Buffer.from([n >> 8, n & 0xff, 0, 0])
})

/** An IPv4 XOR-…-ADDRESS value. */
export const xorAddress = (type: number, ip: string, port: number): Attribute => {
  const value = Buffer.alloc(8)
  value[1] = 0x01
  value.writeUInt16BE(port ^ (magicCookie >>> 16), 2)
  const octets = ip.split(".").map(Number)
  const address = ((octets[0]! << 24) | (octets[1]! << 16) | (octets[2]! << 8) | octets[3]!) >>> 0
  value.writeUInt32BE((address ^ magicCookie) >>> 0, 4)
  return { type, value }
}

export const decodeXorAddress = (value: Buffer): { readonly ip: string; readonly port: number } | undefined => {
  if (value.length !== 8 || value[1] !== 0x01) return undefined
  const port = value.readUInt16BE(2) ^ (magicCookie >>> 16)
  const address = (value.readUInt32BE(4) ^ magicCookie) >>> 0
  return { ip: [address >>> 24, (address >>> 16) & 255, (address >>> 8) & 255, address & 255].join("."), port }
}

export const longTermKey = (username: string, realm: string, password: string): Buffer =>
  createHash("md5").update(`${username}:${realm}:${password}`, "utf8").digest()

export const newTransactionId = (): Buffer => randomBytes(12)

/** Header, attributes (zero-padded), and MESSAGE-INTEGRITY last when `key` is given. */
export const encode = (
  type: number,
  transactionId: Buffer,
  attributes: ReadonlyArray<Attribute>,
  key?: Buffer
): Buffer => {
  let bodyLength = 0
  for (const a of attributes) bodyLength += 4 + ((a.value.length + 3) & ~3)
  const total = 20 + bodyLength + (key === undefined ? 0 : 24)
  const out = Buffer.alloc(total)
  out.writeUInt16BE(type, 0)
  out.writeUInt16BE(total - 20, 2)
  out.writeUInt32BE(magicCookie, 4)
  transactionId.copy(out, 8, 0, 12)
  let offset = 20
  for (const a of attributes) {
    out.writeUInt16BE(a.type, offset)
    out.writeUInt16BE(a.value.length, offset + 2)
    a.value.copy(out, offset + 4)
    offset += 4 + ((a.value.length + 3) & ~3)
  }
  if (key !== undefined) {
    const mac = createHmac("sha1", key).update(out.subarray(0, offset)).digest()
    out.writeUInt16BE(Attr.MessageIntegrity, offset)
    out.writeUInt16BE(20, offset + 2)
    mac.copy(out, offset + 4)
  }
  return out
}

export interface Decoded {
  readonly type: number
  readonly transactionId: Buffer
  /** The first attribute of each type. */
  readonly attributes: ReadonlyMap<number, Buffer>
}

export const decode = (data: Buffer): Decoded | undefined => {
  if (data.length < 20 || (data[0]! & 0xc0) !== 0 || data.readUInt32BE(4) !== magicCookie) return undefined
  const length = data.readUInt16BE(2)
  if (20 + length > data.length) return undefined
  const attributes = new Map<number, Buffer>()
  let offset = 20
  while (offset + 4 <= 20 + length) {
    const type = data.readUInt16BE(offset)
    const size = data.readUInt16BE(offset + 2)
    if (offset + 4 + size > data.length) return undefined
    if (!attributes.has(type)) attributes.set(type, data.subarray(offset + 4, offset + 4 + size))
    offset += 4 + ((size + 3) & ~3)
  }
  return { type: data.readUInt16BE(0), transactionId: data.subarray(8, 20), attributes }
}

/** ERROR-CODE as a number (e.g. 401), or undefined. */
export const errorCode = (message: Decoded): number | undefined => {
  const value = message.attributes.get(Attr.ErrorCode)
  if (value === undefined || value.length < 4) return undefined
  return (value[2]! & 7) * 100 + value[3]!
}

/** Where the long-term credentials stand: the realm and nonce of the last challenge. */
export interface Challenge {
  realm: string
  nonce: string
}

/** The authentication attributes and the key, for a request built under `challenge`. */
export const authenticated = (
  method: number,
  attributes: ReadonlyArray<Attribute>,
  challenge: Challenge | undefined,
  username: string,
  password: string
): Buffer => {
  const tid = newTransactionId()
  if (challenge === undefined) return encode(requestType(method), tid, attributes)
  return encode(requestType(method), tid, [
    ...attributes,
    text(Attr.Username, username),
    text(Attr.Realm, challenge.realm),
    text(Attr.Nonce, challenge.nonce)
  ], longTermKey(username, challenge.realm, password))
}

/** A 401 or 438 with REALM and NONCE: the challenge to answer; otherwise undefined. */
export const challengeOf = (message: Decoded): Challenge | undefined => {
  const code = errorCode(message)
  if (code !== 401 && code !== 438) return undefined
  const realm = message.attributes.get(Attr.Realm)
  const nonce = message.attributes.get(Attr.Nonce)
  if (realm === undefined || nonce === undefined) return undefined
  return { realm: realm.toString("utf8"), nonce: nonce.toString("utf8") }
}
