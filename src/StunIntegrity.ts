/**
 * STUN message integrity and fingerprint (RFC 8489 §9, §14.5–§14.7, §18.5).
 *
 * - Keys: the short-term key is the OpaqueString-prepared password (RFC 8489 §9.1.1); the long-term key is
 *   MD5 or SHA-256 of `username ":" OpaqueString(realm) ":" OpaqueString(password)` as PASSWORD-ALGORITHM
 *   chooses (RFC 8489 §9.2.2, §18.5.1); USERHASH is SHA-256 of `OpaqueString(username) ":" OpaqueString(realm)`
 *   (RFC 8489 §14.4). OpaqueString is the PRECIS profile of RFC 8265 §4.2.
 * - MESSAGE-INTEGRITY is HMAC-SHA1 and MESSAGE-INTEGRITY-SHA256 is HMAC-SHA256 (possibly truncated to 16–32
 *   bytes) of the message up to the attribute, with the header's length field adjusted to point to the end of
 *   the attribute. FINGERPRINT is CRC-32 of the message up to the attribute, xor 0x5354554E.
 * - An {@link IntegrityKey} caches its HMAC inner and outer hash states, so checking a message costs only the
 *   hash of the message itself; verification compares in constant time and never copies the datagram.
 *
 * Attributes after MESSAGE-INTEGRITY (other than MESSAGE-INTEGRITY-SHA256 and FINGERPRINT) are not covered by
 * it: `StunMessage.decode` already leaves them out of the decoded attributes, as RFC 8489 §14.5 says.
 *
 * @since 0.1.0
 */
import { Data, Either } from "effect"
import { crc32 } from "./internal/crc32.js"
import { md5 } from "./internal/md5.js"
import type { HmacSha1Key } from "./internal/sha1.js"
import { hmacSha1Key, hmacSha1Verify } from "./internal/sha1.js"
import type { HmacSha256Key } from "./internal/sha256.js"
import { hmacSha256Key, hmacSha256Verify, sha256 } from "./internal/sha256.js"
import { utf8Bytes } from "./internal/utf8.js"
import { PasswordAlgorithmNumber } from "./StunAttribute.js"
import type { DecodedStunMessage } from "./StunMessage.js"

/**
 * The value xored into the CRC-32 of FINGERPRINT (RFC 8489 §14.7).
 *
 * @since 0.1.0
 * @category constants
 */
export const fingerprintXor = 0x5354554e

/**
 * A credential could not be prepared (RFC 8265 OpaqueString refuses it).
 *
 * @since 0.1.0
 * @category errors
 */
export class CredentialError extends Data.TaggedError("CredentialError")<{
  readonly field: "username" | "realm" | "password"
  readonly reason: "Empty" | "DisallowedCharacter"
}> {
  override get message(): string {
    return `${this.field} cannot be used as a STUN credential: ${this.reason}`
  }
}

/**
 * A message failed its integrity or fingerprint check.
 *
 * @since 0.1.0
 * @category errors
 */
export class StunIntegrityError extends Data.TaggedError("StunIntegrityError")<{
  readonly reason: "MissingIntegrity" | "IntegrityMismatch" | "FingerprintMismatch"
}> {
  override get message(): string {
    return `STUN integrity check failed: ${this.reason}`
  }
}

/**
 * An HMAC key for MESSAGE-INTEGRITY(-SHA256), with its inner and outer hash states computed once, on first use.
 * Keep one per credential and reuse it.
 *
 * @since 0.1.0
 * @category models
 */
export class IntegrityKey {
  private sha1State: HmacSha1Key | undefined
  private sha256State: HmacSha256Key | undefined
  /** The raw key bytes. */
  readonly bytes: Uint8Array
  constructor(bytes: Uint8Array) {
    this.bytes = bytes
  }
  /** HMAC-SHA1 state, computed on first use. @internal */
  get sha1(): HmacSha1Key {
    return this.sha1State ??= hmacSha1Key(this.bytes)
  }
  /** HMAC-SHA256 state, computed on first use. @internal */
  get sha256(): HmacSha256Key {
    return this.sha256State ??= hmacSha256Key(this.bytes)
  }
}

const printableAscii = /^[\x20-\x7e]*$/
const nonAsciiSpace = /[\u00a0\u1680\u2000-\u200a\u202f\u205f\u3000]/g
const disallowed = /[\p{Cc}\p{Cs}\p{Cn}\p{Co}\p{Default_Ignorable_Code_Point}]/u

/**
 * Prepares a string with the PRECIS OpaqueString profile (RFC 8265 §4.2): non-ASCII spaces become U+0020, the
 * result is NFC-normalized, and control, unassigned, private-use and default-ignorable code points are refused,
 * as is the empty string. Printable ASCII passes unchanged.
 *
 * @since 0.1.0
 * @category credentials
 */
export const opaqueString = (
  text: string,
  field: "username" | "realm" | "password" = "password"
): Either.Either<string, CredentialError> => {
  if (text.length === 0) return Either.left(new CredentialError({ field, reason: "Empty" }))
  if (printableAscii.test(text)) return Either.right(text)
  const prepared = text.replace(nonAsciiSpace, " ").normalize("NFC")
  return disallowed.test(prepared)
    ? Either.left(new CredentialError({ field, reason: "DisallowedCharacter" }))
    : Either.right(prepared)
}

/**
 * The short-term credential key (RFC 8489 §9.1.1): the OpaqueString-prepared password. ICE uses it with the
 * remote or local password (RFC 8445 §7.2.2).
 *
 * @since 0.1.0
 * @category credentials
 */
export const shortTermKey = (password: string): Either.Either<IntegrityKey, CredentialError> =>
  Either.map(opaqueString(password, "password"), (prepared) => new IntegrityKey(utf8Bytes(prepared)))

/**
 * The long-term credential key (RFC 8489 §9.2.2): MD5 (16 bytes, the default and what RFC 5389 servers use) or
 * SHA-256 (32 bytes) of `username ":" OpaqueString(realm) ":" OpaqueString(password)`.
 *
 * @since 0.1.0
 * @category credentials
 */
export const longTermKey = (
  username: string,
  realm: string,
  password: string,
  algorithm: number = PasswordAlgorithmNumber.Md5
): Either.Either<IntegrityKey, CredentialError> =>
  Either.flatMap(opaqueString(realm, "realm"), (r) =>
    Either.map(opaqueString(password, "password"), (p) => {
      const input = utf8Bytes(username + ":" + r + ":" + p)
      return new IntegrityKey(algorithm === PasswordAlgorithmNumber.Sha256 ? sha256(input) : md5(input))
    }))

/**
 * USERHASH (RFC 8489 §14.4): SHA-256 of `OpaqueString(username) ":" OpaqueString(realm)`.
 *
 * @since 0.1.0
 * @category credentials
 */
export const userhash = (username: string, realm: string): Either.Either<Uint8Array, CredentialError> =>
  Either.flatMap(
    opaqueString(username, "username"),
    (u) => Either.map(opaqueString(realm, "realm"), (r) => sha256(utf8Bytes(u + ":" + r)))
  )

/**
 * The FINGERPRINT value for `bytes[0, end)`: CRC-32 xor 0x5354554E.
 *
 * @since 0.1.0
 * @category fingerprint
 */
export const fingerprintOf = (bytes: Uint8Array, end: number): number => (crc32(bytes, 0, end) ^ fingerprintXor) >>> 0

const readU32 = (b: Uint8Array, o: number): number =>
  ((b[o]! << 24) | (b[o + 1]! << 16) | (b[o + 2]! << 8) | b[o + 3]!) >>> 0

/**
 * Whether the message carries a FINGERPRINT attribute and it matches. A message without one gives `false`;
 * look at `fingerprintOffset` to tell the two apart.
 *
 * @since 0.1.0
 * @category fingerprint
 */
export const verifyFingerprint = (message: DecodedStunMessage): boolean => {
  const o = message.fingerprintOffset
  return o >= 0 && fingerprintOf(message.raw, o) === readU32(message.raw, o + 4)
}

/**
 * Whether the message carries MESSAGE-INTEGRITY (HMAC-SHA1) and it matches `key`. Constant time; no copy.
 *
 * @since 0.1.0
 * @category integrity
 */
export const verifyIntegritySha1 = (message: DecodedStunMessage, key: IntegrityKey): boolean => {
  const o = message.integrityOffset
  return o >= 0 && hmacSha1Verify(key.sha1, message.raw, 0, o, o + 24 - 20, message.raw, o + 4)
}

/**
 * Whether the message carries MESSAGE-INTEGRITY-SHA256 and it matches `key` over the (possibly truncated)
 * length the sender chose. Constant time; no copy.
 *
 * @since 0.1.0
 * @category integrity
 */
export const verifyIntegritySha256 = (message: DecodedStunMessage, key: IntegrityKey): boolean => {
  const o = message.integritySha256Offset
  if (o < 0) return false
  const length = (message.raw[o + 2]! << 8) | message.raw[o + 3]!
  return hmacSha256Verify(key.sha256, message.raw, 0, o, o + 4 + length - 20, message.raw, o + 4, length)
}

/**
 * Checks a message's integrity the way RFC 8489 §9.1.3 and §9.2.4 say a receiver does: with
 * MESSAGE-INTEGRITY-SHA256 when present, otherwise with MESSAGE-INTEGRITY; and, when the message has a
 * FINGERPRINT, that too.
 *
 * @since 0.1.0
 * @category integrity
 */
export const verify = (message: DecodedStunMessage, key: IntegrityKey): Either.Either<void, StunIntegrityError> => {
  if (message.fingerprintOffset >= 0 && !verifyFingerprint(message)) {
    return Either.left(new StunIntegrityError({ reason: "FingerprintMismatch" }))
  }
  if (message.integritySha256Offset >= 0) {
    return verifyIntegritySha256(message, key)
      ? Either.void
      : Either.left(new StunIntegrityError({ reason: "IntegrityMismatch" }))
  }
  if (message.integrityOffset < 0) return Either.left(new StunIntegrityError({ reason: "MissingIntegrity" }))
  return verifyIntegritySha1(message, key)
    ? Either.void
    : Either.left(new StunIntegrityError({ reason: "IntegrityMismatch" }))
}
