/**
 * TURN credentials (RFC 8656 §9.2 uses STUN's long-term credential mechanism, RFC 8489 §9.2) and the "TURN REST
 * API" ephemeral credentials that WebRTC deployments use (draft-uberti-behave-turn-rest, as coturn implements it
 * with `use-auth-secret`): a server and an application share a secret; the application hands a client the username
 * `<expiry unix seconds>:<user>` and the password base64(HMAC-SHA1(secret, username)); the server recomputes the
 * password from the username and refuses expired ones.
 *
 * Pure functions: the time is passed in (servers read it from Effect's `Clock`).
 *
 * @since 0.1.0
 */
import { Either } from "effect"
import { hmacSha1Into, hmacSha1Key } from "./internal/sha1.js"
import { utf8Bytes } from "./internal/utf8.js"

/**
 * Static long-term credentials: a username and its password.
 *
 * @since 0.1.0
 * @category models
 */
export interface StaticCredentials {
  readonly username: string
  readonly password: string
}

const base64 = (bytes: Uint8Array): string => {
  let binary = ""
  for (let i = 0; i < bytes.length; i++) binary += String.fromCharCode(bytes[i]!)
  return btoa(binary)
}

/**
 * The REST API password for a username: base64(HMAC-SHA1(secret, username)).
 *
 * @since 0.1.0
 * @category rest
 */
export const restPassword = (secret: string, username: string): string => {
  const mac = new Uint8Array(20)
  const data = utf8Bytes(username)
  hmacSha1Into(hmacSha1Key(utf8Bytes(secret)), data, 0, data.length, -1, mac, 0)
  return base64(mac)
}

/**
 * Ephemeral REST API credentials for `user`, valid until `nowSeconds + ttlSeconds` (unix time).
 *
 * @since 0.1.0
 * @category rest
 */
export const restCredentials = (
  secret: string,
  user: string,
  nowSeconds: number,
  ttlSeconds: number
): StaticCredentials => {
  const username = `${Math.floor(nowSeconds + ttlSeconds)}:${user}`
  return { username, password: restPassword(secret, username) }
}

/**
 * Why a REST API username is refused.
 *
 * @since 0.1.0
 * @category models
 */
export type RestRefusal = "Malformed" | "Expired"

/**
 * Checks a REST API username at `nowSeconds` and, when it is well formed and not expired, returns the password
 * each of `secrets` gives it (several secrets allow rotation: the server accepts any of them, and the client's
 * MESSAGE-INTEGRITY tells which one was used). The expiry is the part before the first `:`, a decimal unix time.
 *
 * @since 0.1.0
 * @category rest
 */
export const restPasswords = (
  secrets: ReadonlyArray<string>,
  username: string,
  nowSeconds: number
): Either.Either<ReadonlyArray<string>, RestRefusal> => {
  const colon = username.indexOf(":")
  const expiryText = colon < 0 ? username : username.slice(0, colon)
  if (!/^[0-9]{1,15}$/.test(expiryText)) return Either.left("Malformed")
  if (Number(expiryText) < nowSeconds) return Either.left("Expired")
  return Either.right(secrets.map((secret) => restPassword(secret, username)))
}
