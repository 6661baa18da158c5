/**
 * UTF-8 helpers for the codecs: byte length, writing into a buffer and strict reading, with an ASCII fast
 * path (STUN usernames, realms, nonces and software names are almost always ASCII).
 *
 * @internal
 */

const decoder = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true })
const encoder = new TextEncoder()

/**
 * The number of bytes `text` takes in UTF-8. Lone surrogates count as U+FFFD (3 bytes), as TextEncoder
 * writes them.
 *
 * @internal
 */
export const utf8Length = (text: string): number => {
  let length = 0
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i)
    if (c < 0x80) length += 1
    else if (c < 0x800) length += 2
    else if (c >= 0xd800 && c <= 0xdbff && i + 1 < text.length) {
      const next = text.charCodeAt(i + 1)
      if (next >= 0xdc00 && next <= 0xdfff) {
        length += 4
        i++
      } else {
        length += 3
      }
    } else length += 3
  }
  return length
}

/**
 * Writes `text` as UTF-8 at `offset` and returns the number of bytes written. The caller has sized the
 * buffer with {@link utf8Length}.
 *
 * @internal
 */
export const writeUtf8 = (buffer: Uint8Array, offset: number, text: string): number => {
  const length = text.length
  let i = 0
  for (; i < length; i++) {
    const c = text.charCodeAt(i)
    if (c >= 0x80) break
    buffer[offset + i] = c
  }
  if (i === length) return length
  return i + encoder.encodeInto(text.slice(i), buffer.subarray(offset + i)).written
}

/**
 * Reads `bytes[start, end)` as UTF-8, or returns `undefined` when the bytes are not valid UTF-8.
 *
 * @internal
 */
export const readUtf8 = (bytes: Uint8Array, start: number, end: number): string | undefined => {
  let text = ""
  for (let i = start; i < end; i++) {
    const c = bytes[i]!
    if (c >= 0x80) {
      try {
        return text + decoder.decode(bytes.subarray(i, end))
      } catch {
        return undefined
      }
    }
    text += String.fromCharCode(c)
  }
  return text
}

/**
 * UTF-8 bytes of a string.
 *
 * @internal
 */
export const utf8Bytes = (text: string): Uint8Array => encoder.encode(text)
