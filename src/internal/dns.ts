/**
 * The DNS message format (RFC 1035 §4.1) as Multicast DNS uses it (RFC 6762 §18): a pure codec for queries and
 * responses, with A (RFC 1035 §3.4.1) and AAAA (RFC 3596 §2.2) records decoded to IP text and every other record
 * type kept as raw RDATA.
 *
 * ```
 *  Header (RFC 1035 §4.1.1), 12 bytes:  ID | flags | QDCOUNT | ANCOUNT | NSCOUNT | ARCOUNT
 *  Question (§4.1.2):                   QNAME | QTYPE | QCLASS   (top bit of QCLASS: mDNS unicast-response, "QU")
 *  Resource record (§4.1.3):            NAME | TYPE | CLASS | TTL | RDLENGTH | RDATA
 *                                       (top bit of CLASS: mDNS cache-flush, RFC 6762 §10.2)
 * ```
 *
 * Names (RFC 1035 §3.1, §4.1.4). A name is a sequence of labels of 1–63 bytes ending with the zero-length root
 * label, at most 255 bytes on the wire. Decoding follows compression pointers (two bytes, top bits `11`, a 14-bit
 * offset into the message); to be loop-safe the first pointer of a name must point strictly before itself and each
 * further one strictly before the previous one's target, a name may follow at most {@link maxPointerHops} pointers,
 * and it may not exceed 255 bytes. Label bytes are read as UTF-8
 * (RFC 6762 §16; invalid sequences become U+FFFD); a `.` or `\` inside a label is written `\.` or `\\` in the
 * text form (RFC 4343 §2.1 presentation format), and `encode` reads those escapes back. Encoding never compresses.
 * Label types `01` and `10` (RFC 6891 §5, RFC 2673; obsolete or unassigned) are rejected.
 *
 * Decoding never throws: it returns `Either.left(DnsDecodeError)` with a reason and the byte offset of the
 * problem. Bytes after the last record are ignored. Encoding a name that is not encodable (an empty label, a
 * label over 63 bytes, a name over 255 bytes) or a record whose address does not match its type is a programming
 * error and throws a `RangeError`.
 *
 * @internal
 */
import { Data, Either, Option } from "effect"
import { formatIPv4, formatIPv6, ipToBytes } from "../TransportAddress.js"
import { utf8Bytes } from "./utf8.js"

/**
 * Resource record types this codec knows by name (RFC 1035 §3.2.2, RFC 3596 §2.1); QTYPE ANY is RFC 1035 §3.2.3.
 *
 * @internal
 */
export const RecordType = {
  A: 1, // A: a host address (IPv4)
  PTR: 12, // PTR: a domain name pointer
  TXT: 16, // TXT: text strings
  AAAA: 28, // AAAA: an IPv6 host address
  SRV: 33, // SRV: service location (RFC 2782)
  NSEC: 47, // NSEC: next secure, used by mDNS for negative answers (RFC 6762 §6.1)
  ANY: 255 // "*": a request for all records (QTYPE only)
} as const

/**
 * CLASS IN, the Internet: RFC 1035 §3.2.4.
 *
 * @internal
 */
export const classIn = 1

/**
 * The top bit of a question's QCLASS: the mDNS "unicast-response" bit (RFC 6762 §5.4, §18.12).
 *
 * @internal
 */
export const unicastResponseBit = 0x8000

/**
 * The top bit of a resource record's CLASS: the mDNS "cache-flush" bit (RFC 6762 §10.2, §18.13).
 *
 * @internal
 */
export const cacheFlushBit = 0x8000

/**
 * Flags of a response: QR (RFC 1035 §4.1.1). mDNS responses also set AA (RFC 6762 §18.4).
 *
 * @internal
 */
export const Flags = {
  QR: 0x8000, // QR: this message is a response
  AA: 0x0400, // AA: authoritative answer
  TC: 0x0200 // TC: truncated (in mDNS queries: more known answers follow, RFC 6762 §18.5)
} as const

/**
 * Size of the message header: RFC 1035 §4.1.1.
 *
 * @internal
 */
export const headerSize = 12

/**
 * The longest name on the wire, root label included: RFC 1035 §2.3.4 ("names 255 octets or less").
 *
 * @internal
 */
export const maxNameLength = 255

/**
 * The longest label: RFC 1035 §2.3.4 ("labels 63 octets or less").
 *
 * @internal
 */
export const maxLabelLength = 63

/**
 * The most compression pointers one name may follow (a 255-byte name has at most 127 labels, so a longer chain
 * of pointers can only be a loop or padding).
 *
 * @internal
 */
export const maxPointerHops = 127

/**
 * A question (RFC 1035 §4.1.2). `class` is QCLASS without the unicast-response bit.
 *
 * @internal
 */
export interface Question {
  readonly name: string
  readonly type: number
  readonly class: number
  readonly unicastResponse: boolean
}

/**
 * A resource record (RFC 1035 §4.1.3). `class` is CLASS without the cache-flush bit. A and AAAA records carry
 * `address` (canonical IP text); any other type carries its raw `rdata`, a view into the decoded bytes (names
 * inside it are not decompressed).
 *
 * @internal
 */
export type ResourceRecord =
  | {
    readonly name: string
    readonly type: typeof RecordType.A | typeof RecordType.AAAA
    readonly class: number
    readonly cacheFlush: boolean
    readonly ttl: number
    readonly address: string
  }
  | {
    readonly name: string
    readonly type: number
    readonly class: number
    readonly cacheFlush: boolean
    readonly ttl: number
    readonly rdata: Uint8Array
  }

/**
 * A DNS message. `flags` is the whole second 16-bit word of the header (QR, OPCODE, AA, TC, RD, RA, Z, RCODE).
 *
 * @internal
 */
export interface Message {
  readonly id: number
  readonly flags: number
  readonly questions: ReadonlyArray<Question>
  readonly answers: ReadonlyArray<ResourceRecord>
  readonly authorities: ReadonlyArray<ResourceRecord>
  readonly additionals: ReadonlyArray<ResourceRecord>
}

/**
 * Why a message did not decode, and at which byte offset.
 *
 * - `Truncated`: the message ends inside the header, a name, a question or a record.
 * - `BadPointer`: a compression pointer that does not point strictly before itself (or, after the first pointer of
 *   a name, strictly before the previous pointer's target).
 * - `TooManyPointers`: a name that follows more than {@link maxPointerHops} pointers.
 * - `BadLabelType`: a label length byte with top bits `01` or `10` (so also any length over 63).
 * - `NameTooLong`: a name longer than 255 bytes on the wire.
 * - `BadRdata`: an A record whose RDATA is not 4 bytes, or an AAAA record whose RDATA is not 16.
 *
 * @internal
 */
export class DnsDecodeError extends Data.TaggedError("DnsDecodeError")<{
  readonly reason: "Truncated" | "BadPointer" | "TooManyPointers" | "BadLabelType" | "NameTooLong" | "BadRdata"
  readonly offset: number
}> {
  override get message(): string {
    return `DNS message: ${this.reason} at byte ${this.offset}`
  }
}

// -----------------------------------------------------------------------------
// decoding
// -----------------------------------------------------------------------------

const textDecoder = new TextDecoder("utf-8")

/** One label as text: ASCII fast path, UTF-8 with replacement otherwise; `.` and `\` escaped. */
const labelText = (bytes: Uint8Array, start: number, end: number): string => {
  let text = ""
  for (let i = start; i < end; i++) {
    const c = bytes[i]!
    if (c >= 0x80) {
      const rest = textDecoder.decode(bytes.subarray(i, end))
      return text + rest.replace(/[.\\]/g, (m) => "\\" + m)
    }
    text += c === 0x2e ? "\\." : c === 0x5c ? "\\\\" : String.fromCharCode(c)
  }
  return text
}

class Failure {
  constructor(readonly reason: DnsDecodeError["reason"], readonly offset: number) {}
}

/** Reads the name at `offset`; returns the name and the offset after it (after the first pointer, if any). */
const readName = (bytes: Uint8Array, offset: number): { readonly name: string; readonly next: number } | Failure => {
  const labels: Array<string> = []
  let position = offset
  let next = -1
  let wireLength = 1 // the root label
  let hops = 0
  // Every pointer must point strictly before the previous pointer's target (the first: before itself), so the
  // targets strictly decrease and the walk ends; a compressor only ever points at names written earlier.
  let limit = offset
  for (;;) {
    if (position >= bytes.length) return new Failure("Truncated", position)
    const length = bytes[position]!
    const type = length & 0xc0
    if (type === 0xc0) {
      if (position + 1 >= bytes.length) return new Failure("Truncated", position)
      const target = ((length & 0x3f) << 8) | bytes[position + 1]!
      if (target >= (next < 0 ? position : limit)) return new Failure("BadPointer", position)
      if (++hops > maxPointerHops) return new Failure("TooManyPointers", position)
      if (next < 0) next = position + 2
      limit = target
      position = target
      continue
    }
    if (type !== 0) return new Failure("BadLabelType", position)
    if (length === 0) {
      return { name: labels.join("."), next: next < 0 ? position + 1 : next }
    }
    wireLength += length + 1
    if (wireLength > maxNameLength) return new Failure("NameTooLong", position)
    const end = position + 1 + length
    if (end > bytes.length) return new Failure("Truncated", position)
    labels.push(labelText(bytes, position + 1, end))
    position = end
  }
}

const readQuestion = (bytes: Uint8Array, view: DataView, offset: number): [Question, number] | Failure => {
  const name = readName(bytes, offset)
  if (name instanceof Failure) return name
  const at = name.next
  if (at + 4 > bytes.length) return new Failure("Truncated", at)
  const qclass = view.getUint16(at + 2)
  return [{
    name: name.name,
    type: view.getUint16(at),
    class: qclass & ~unicastResponseBit,
    unicastResponse: (qclass & unicastResponseBit) !== 0
  }, at + 4]
}

const readRecord = (bytes: Uint8Array, view: DataView, offset: number): [ResourceRecord, number] | Failure => {
  const name = readName(bytes, offset)
  if (name instanceof Failure) return name
  const at = name.next
  if (at + 10 > bytes.length) return new Failure("Truncated", at)
  const type = view.getUint16(at)
  const rclass = view.getUint16(at + 2)
  const ttl = view.getUint32(at + 4)
  const length = view.getUint16(at + 8)
  const start = at + 10
  const end = start + length
  if (end > bytes.length) return new Failure("Truncated", at + 8)
  const base = { name: name.name, class: rclass & ~cacheFlushBit, cacheFlush: (rclass & cacheFlushBit) !== 0, ttl }
  if (type === RecordType.A || type === RecordType.AAAA) {
    const size = type === RecordType.A ? 4 : 16
    if (length !== size) return new Failure("BadRdata", at + 8)
    const address = size === 4 ? formatIPv4(bytes, start) : formatIPv6(bytes, start)
    return [{ ...base, type, address }, end]
  }
  return [{ ...base, type, rdata: bytes.subarray(start, end) }, end]
}

/**
 * Decodes a DNS message, or says what is wrong and where. Never throws.
 *
 * @internal
 */
export const decode = (bytes: Uint8Array): Either.Either<Message, DnsDecodeError> => {
  if (bytes.length < headerSize) return Either.left(new DnsDecodeError({ reason: "Truncated", offset: bytes.length }))
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  const counts = [view.getUint16(4), view.getUint16(6), view.getUint16(8), view.getUint16(10)] as const
  let offset = headerSize
  const questions: Array<Question> = []
  for (let i = 0; i < counts[0]; i++) {
    const result = readQuestion(bytes, view, offset)
    if (result instanceof Failure) return Either.left(new DnsDecodeError(result))
    questions.push(result[0])
    offset = result[1]
  }
  const sections: Array<Array<ResourceRecord>> = [[], [], []]
  for (let s = 0; s < 3; s++) {
    const records = sections[s]!
    for (let i = 0; i < counts[s + 1]!; i++) {
      const result = readRecord(bytes, view, offset)
      if (result instanceof Failure) return Either.left(new DnsDecodeError(result))
      records.push(result[0])
      offset = result[1]
    }
  }
  return Either.right({
    id: view.getUint16(0),
    flags: view.getUint16(2),
    questions,
    answers: sections[0]!,
    authorities: sections[1]!,
    additionals: sections[2]!
  })
}

// -----------------------------------------------------------------------------
// encoding
// -----------------------------------------------------------------------------

/** Splits a name's text form into labels, honouring `\.` and `\\` escapes; a trailing dot is the root. */
const splitLabels = (name: string): Array<string> => {
  const labels: Array<string> = []
  let current = ""
  for (let i = 0; i < name.length; i++) {
    const c = name[i]!
    if (c === "\\" && i + 1 < name.length) {
      current += name[++i]!
    } else if (c === ".") {
      labels.push(current)
      current = ""
    } else {
      current += c
    }
  }
  if (current.length > 0 || labels.length === 0) labels.push(current)
  if (labels.length === 1 && labels[0] === "") return [] // the root
  return labels
}

/** A name's wire form: length-prefixed labels and the root label. Throws a `RangeError` when not encodable. */
const nameBytes = (name: string): Uint8Array => {
  const labels = splitLabels(name).map(utf8Bytes)
  let size = 1
  for (const label of labels) {
    if (label.length === 0 || label.length > maxLabelLength) {
      throw new RangeError(`DNS name ${JSON.stringify(name)}: a label of ${label.length} bytes`)
    }
    size += label.length + 1
  }
  if (size > maxNameLength) throw new RangeError(`DNS name ${JSON.stringify(name)}: ${size} bytes > 255`)
  const out = new Uint8Array(size)
  let offset = 0
  for (const label of labels) {
    out[offset++] = label.length
    out.set(label, offset)
    offset += label.length
  }
  return out
}

const rdataOf = (record: ResourceRecord): Uint8Array => {
  if ("address" in record) {
    const bytes = ipToBytes(record.address)
    const size = record.type === RecordType.A ? 4 : 16
    if (Option.isNone(bytes) || bytes.value.length !== size) {
      throw new RangeError(`DNS record type ${record.type}: address ${JSON.stringify(record.address)}`)
    }
    return bytes.value
  }
  return record.rdata
}

/**
 * Encodes a DNS message without name compression. Throws a `RangeError` for a name that is not encodable, a count
 * over 65535, RDATA over 65535 bytes, or an A/AAAA address of the wrong family.
 *
 * @internal
 */
export const encode = (message: Message): Uint8Array => {
  const parts: Array<Uint8Array> = []
  let size = headerSize
  const push = (part: Uint8Array) => {
    parts.push(part)
    size += part.length
  }
  const fixed = (length: number, write: (view: DataView) => void) => {
    const part = new Uint8Array(length)
    write(new DataView(part.buffer))
    push(part)
  }
  for (const question of message.questions) {
    push(nameBytes(question.name))
    fixed(4, (view) => {
      view.setUint16(0, question.type)
      view.setUint16(2, (question.class & 0x7fff) | (question.unicastResponse ? unicastResponseBit : 0))
    })
  }
  for (const records of [message.answers, message.authorities, message.additionals]) {
    for (const record of records) {
      const rdata = rdataOf(record)
      if (rdata.length > 0xffff) throw new RangeError(`DNS record: RDATA of ${rdata.length} bytes`)
      push(nameBytes(record.name))
      fixed(10, (view) => {
        view.setUint16(0, record.type)
        view.setUint16(2, (record.class & 0x7fff) | (record.cacheFlush ? cacheFlushBit : 0))
        view.setUint32(4, record.ttl >>> 0)
        view.setUint16(8, rdata.length)
      })
      push(rdata)
    }
  }
  const counts = [message.questions, message.answers, message.authorities, message.additionals].map((s) => s.length)
  if (counts.some((n) => n > 0xffff)) throw new RangeError("DNS message: more than 65535 entries in a section")
  const out = new Uint8Array(size)
  const view = new DataView(out.buffer)
  view.setUint16(0, message.id & 0xffff)
  view.setUint16(2, message.flags & 0xffff)
  counts.forEach((n, i) => view.setUint16(4 + 2 * i, n))
  let offset = headerSize
  for (const part of parts) {
    out.set(part, offset)
    offset += part.length
  }
  return out
}
