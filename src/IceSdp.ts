/**
 * The ICE parts of an SDP offer or answer (RFC 8839 §5): reading them out of a whole session description, and
 * writing them back, alone or inside a minimal data-channel-only SDP that browsers accept.
 *
 * Implements:
 * - RFC 8839 §5.1 `a=candidate` (through `IceCandidate.fromSdp` / `toSdp`), media level only.
 * - RFC 8839 §5 `a=ice-lite`, session level only.
 * - RFC 8839 §5.4 `a=ice-ufrag` (4 to 256 ice-chars) and `a=ice-pwd` (22 to 256 ice-chars), at session or media
 *   level; a media-level value wins over the session-level one. ice-char = ALPHA / DIGIT / "+" / "/".
 * - RFC 8839 §5 `a=ice-options`: one or more ice-option-tags (1*ice-char) separated by single spaces, such as
 *   `trickle` (RFC 8838) or `ice2`; at session or media level, a media-level attribute replacing the session
 *   one. Several lines at one level add up.
 * - RFC 8840 `a=end-of-candidates`, at media level or (for every media section) at session level.
 * - RFC 5888 `a=mid`, and the m-line index (the 0-based position of the `m=` line) that `RTCIceCandidate` carries
 *   as `sdpMLineIndex`.
 *
 * Reading is tolerant of what is not ICE: CRLF or LF line ends, blank lines, any other line or attribute. It is
 * strict on the ICE attributes: a malformed value, an ICE attribute twice at one level (`ice-ufrag`, `ice-pwd`), one
 * at the wrong level, a bad candidate line, or a media section left without a ufrag or password is an
 * `IceSdpError` with the 1-based line number. Attribute names are matched exactly, in lower case as browsers write
 * them, so `a=ICE-UFRAG:...` is some other attribute. A line that is not `<letter>=<value>` is an error too. A
 * media section with port 0 (rejected, or `bundle-only`) and no ICE attributes or candidates is left out of the
 * result; the other sections' `mLineIndex` still count it. Never throws.
 *
 * Writing (`mediaAttributes`, `format`) does not validate: values that `isValidUfrag`, `isValidPwd` and
 * `isValidOptionTag` accept, and candidates `IceCandidate.fromSdp` gave, come back equal from `parse`.
 *
 * @since 0.1.0
 */
import { Data, Either } from "effect"
import * as IceCandidate from "./IceCandidate.js"

/**
 * Shortest `ice-ufrag`: RFC 8839 §5.4 (`ice-ufrag-att = "ice-ufrag:" 4*256ice-char`).
 *
 * @since 0.1.0
 * @category constants
 */
export const minUfragLength = 4

/**
 * Longest `ice-ufrag`: RFC 8839 §5.4.
 *
 * @since 0.1.0
 * @category constants
 */
export const maxUfragLength = 256

/**
 * Shortest `ice-pwd`: RFC 8839 §5.4 (`ice-pwd-att = "ice-pwd:" 22*256ice-char`).
 *
 * @since 0.1.0
 * @category constants
 */
export const minPwdLength = 22

/**
 * Longest `ice-pwd`: RFC 8839 §5.4.
 *
 * @since 0.1.0
 * @category constants
 */
export const maxPwdLength = 256

/**
 * The ICE attributes of one media section.
 *
 * `mLineIndex` is the 0-based position of its `m=` line among all `m=` lines; `mid` is its `a=mid`, absent when it
 * has none. `ufrag`, `pwd` and `options` are the effective values (media level, else session level);
 * `endOfCandidates` is set by `a=end-of-candidates` at media or session level.
 *
 * @since 0.1.0
 * @category models
 */
export interface IceMedia {
  readonly mid?: string | undefined
  readonly mLineIndex: number
  readonly ufrag: string
  readonly pwd: string
  readonly options: ReadonlyArray<string>
  readonly candidates: ReadonlyArray<IceCandidate.Candidate>
  readonly endOfCandidates: boolean
}

/**
 * The ICE content of a session description: whether the peer is an ICE lite implementation, and each media
 * section's ICE attributes in `m=` line order.
 *
 * @since 0.1.0
 * @category models
 */
export interface IceDescription {
  readonly lite: boolean
  readonly media: ReadonlyArray<IceMedia>
}

/**
 * Why an SDP's ICE attributes could not be read. `line` is the 1-based line number (of the `m=` line for a media
 * section missing its ufrag or password), `text` that line, `detail` what is wrong:
 * - `InvalidLine`: not `<letter>=<value>`, or an `m=` line without media, port and protocol.
 * - `InvalidUfrag`, `InvalidPwd`, `InvalidOptions`: a value outside the RFC 8839 §5 grammar.
 * - `InvalidCandidate`: `IceCandidate.fromSdp` refused an `a=candidate` line (its reason is in `detail`).
 * - `InvalidAttribute`: `a=ice-lite` or `a=end-of-candidates` with a value.
 * - `DuplicateAttribute`: `ice-ufrag` or `ice-pwd` twice at one level.
 * - `MisplacedAttribute`: `a=ice-lite` in a media section, or `a=candidate` at session level.
 * - `MissingUfrag`, `MissingPwd`: a media section with neither a media- nor a session-level value.
 *
 * @since 0.1.0
 * @category errors
 */
export class IceSdpError extends Data.TaggedError("IceSdpError")<{
  readonly reason:
    | "InvalidLine"
    | "InvalidUfrag"
    | "InvalidPwd"
    | "InvalidOptions"
    | "InvalidCandidate"
    | "InvalidAttribute"
    | "DuplicateAttribute"
    | "MisplacedAttribute"
    | "MissingUfrag"
    | "MissingPwd"
  readonly line: number
  readonly text: string
  readonly detail: string
}> {
  override get message(): string {
    return `SDP line ${this.line}: ${this.reason}: ${this.detail}`
  }
}

const iceCharsPattern = /^[A-Za-z0-9+/]*$/

/**
 * Whether every character of `text` is an ice-char (RFC 8839 §5.1: ALPHA / DIGIT / "+" / "/"); true for `""`.
 *
 * @since 0.1.0
 * @category guards
 */
export const isIceChars = (text: string): boolean => iceCharsPattern.test(text)

/**
 * Whether `text` is a valid `ice-ufrag` value: 4 to 256 ice-chars (RFC 8839 §5.4).
 *
 * @since 0.1.0
 * @category guards
 */
export const isValidUfrag = (text: string): boolean =>
  text.length >= minUfragLength && text.length <= maxUfragLength && isIceChars(text)

/**
 * Whether `text` is a valid `ice-pwd` value: 22 to 256 ice-chars (RFC 8839 §5.4).
 *
 * @since 0.1.0
 * @category guards
 */
export const isValidPwd = (text: string): boolean =>
  text.length >= minPwdLength && text.length <= maxPwdLength && isIceChars(text)

/**
 * Whether `text` is a valid ice-option-tag: 1 or more ice-chars (RFC 8839 §5, `ice-options`).
 *
 * @since 0.1.0
 * @category guards
 */
export const isValidOptionTag = (text: string): boolean => text.length > 0 && isIceChars(text)

interface Level {
  ufrag?: string
  pwd?: string
  options?: Array<string>
  endOfCandidates: boolean
}

interface MediaDraft extends Level {
  readonly mLineIndex: number
  readonly line: number
  readonly text: string
  readonly port: number
  mid?: string
  readonly candidates: Array<IceCandidate.Candidate>
}

const linePattern = /^[a-z]=/
const portPattern = /^([0-9]+)(?:\/[0-9]+)?$/

/**
 * Reads the ICE attributes of a session description (see the module documentation for what is accepted and what
 * is refused). Never throws.
 *
 * @since 0.1.0
 * @category parsing
 */
export const parse = (sdp: string): Either.Either<IceDescription, IceSdpError> => {
  const lines = sdp.split("\n")
  const session: Level = { endOfCandidates: false }
  let lite = false
  const drafts: Array<MediaDraft> = []
  let current: MediaDraft | undefined
  for (let i = 0; i < lines.length; i++) {
    const raw = lines[i]!
    const text = raw.endsWith("\r") ? raw.slice(0, -1) : raw
    const lineNumber = i + 1
    const fail = (reason: IceSdpError["reason"], detail: string) =>
      Either.left(new IceSdpError({ reason, line: lineNumber, text, detail }))
    if (text.length === 0) continue
    if (!linePattern.test(text)) return fail("InvalidLine", "not an SDP line (<letter>=<value>)")
    if (text.startsWith("m=")) {
      const fields = text.slice(2).split(" ")
      const port = portPattern.exec(fields[1] ?? "")
      if (fields.length < 3 || fields[0] === "" || port === null) {
        return fail("InvalidLine", "an m= line needs <media> <port> <proto>")
      }
      current = {
        mLineIndex: drafts.length,
        line: lineNumber,
        text,
        port: Number(port[1]),
        endOfCandidates: false,
        candidates: []
      }
      drafts.push(current)
      continue
    }
    if (!text.startsWith("a=")) continue
    const colon = text.indexOf(":")
    const name = colon < 0 ? text.slice(2) : text.slice(2, colon)
    const value = colon < 0 ? undefined : text.slice(colon + 1)
    const level: Level = current ?? session
    switch (name) {
      case "ice-ufrag": {
        if (value === undefined || !isValidUfrag(value)) {
          return fail("InvalidUfrag", "ice-ufrag must be 4 to 256 ice-chars (ALPHA / DIGIT / \"+\" / \"/\")")
        }
        if (level.ufrag !== undefined) return fail("DuplicateAttribute", "ice-ufrag appears twice at this level")
        level.ufrag = value
        break
      }
      case "ice-pwd": {
        if (value === undefined || !isValidPwd(value)) {
          return fail("InvalidPwd", "ice-pwd must be 22 to 256 ice-chars (ALPHA / DIGIT / \"+\" / \"/\")")
        }
        if (level.pwd !== undefined) return fail("DuplicateAttribute", "ice-pwd appears twice at this level")
        level.pwd = value
        break
      }
      case "ice-options": {
        const tags = value === undefined ? [""] : value.split(" ")
        if (!tags.every(isValidOptionTag)) {
          return fail("InvalidOptions", "ice-options must be ice-option-tags separated by single spaces")
        }
        level.options = [...(level.options ?? []), ...tags]
        break
      }
      case "ice-lite": {
        if (value !== undefined) return fail("InvalidAttribute", "ice-lite takes no value")
        if (current !== undefined) return fail("MisplacedAttribute", "ice-lite is a session-level attribute")
        lite = true
        break
      }
      case "end-of-candidates": {
        if (value !== undefined) return fail("InvalidAttribute", "end-of-candidates takes no value")
        level.endOfCandidates = true
        break
      }
      case "candidate": {
        if (current === undefined) return fail("MisplacedAttribute", "a candidate belongs in a media section")
        const candidate = IceCandidate.fromSdp(text.slice(2))
        if (Either.isLeft(candidate)) return fail("InvalidCandidate", candidate.left.reason)
        current.candidates.push(candidate.right)
        break
      }
      case "mid": {
        if (current !== undefined && current.mid === undefined && value !== undefined && value.length > 0) {
          current.mid = value
        }
        break
      }
    }
  }
  const media: Array<IceMedia> = []
  for (const draft of drafts) {
    const ufrag = draft.ufrag ?? session.ufrag
    const pwd = draft.pwd ?? session.pwd
    if (draft.port === 0 && draft.ufrag === undefined && draft.pwd === undefined && draft.candidates.length === 0) {
      continue
    }
    const fail = (reason: IceSdpError["reason"], detail: string) =>
      Either.left(new IceSdpError({ reason, line: draft.line, text: draft.text, detail }))
    if (ufrag === undefined) return fail("MissingUfrag", `media section ${draft.mLineIndex} has no ice-ufrag`)
    if (pwd === undefined) return fail("MissingPwd", `media section ${draft.mLineIndex} has no ice-pwd`)
    media.push({
      ...(draft.mid === undefined ? {} : { mid: draft.mid }),
      mLineIndex: draft.mLineIndex,
      ufrag,
      pwd,
      options: draft.options ?? session.options ?? [],
      candidates: draft.candidates,
      endOfCandidates: draft.endOfCandidates || session.endOfCandidates
    })
  }
  return Either.right({ lite, media })
}

/**
 * The ICE attribute lines of one media section, without line ends: `a=ice-ufrag`, `a=ice-pwd`, `a=ice-options`
 * (when there are options), one `a=candidate` per candidate, and `a=end-of-candidates` when set. `mid` and
 * `mLineIndex` are not written (they belong to the section, see `format`).
 *
 * @since 0.1.0
 * @category formatting
 */
export const mediaAttributes = (media: Omit<IceMedia, "mid" | "mLineIndex">): Array<string> => {
  const lines = [`a=ice-ufrag:${media.ufrag}`, `a=ice-pwd:${media.pwd}`]
  if (media.options.length > 0) lines.push(`a=ice-options:${media.options.join(" ")}`)
  for (const candidate of media.candidates) lines.push(`a=${IceCandidate.toSdp(candidate)}`)
  if (media.endOfCandidates) lines.push("a=end-of-candidates")
  return lines
}

/**
 * Options for `format`. Browsers refuse a description without a DTLS fingerprint (`setRemoteDescription` fails), so
 * an application that hands the SDP to a browser passes its certificate's `fingerprint`; `setup` is then written
 * too (default `actpass`, the offerer's value, RFC 8842).
 *
 * @since 0.1.0
 * @category models
 */
export interface FormatOptions {
  /** The `o=` line's sess-id, decimal digits; default `"0"`. */
  readonly sessionId?: string | undefined
  /** `a=fingerprint:<algorithm> <value>` (RFC 8122), e.g. `{ algorithm: "sha-256", value: "AB:CD:..." }`. */
  readonly fingerprint?: { readonly algorithm: string; readonly value: string } | undefined
  /** `a=setup` (RFC 4145): `actpass` in an offer, `active` or `passive` in an answer. */
  readonly setup?: "actpass" | "active" | "passive" | undefined
}

/**
 * A minimal whole session description carrying `description`: one `m=application 9 UDP/DTLS/SCTP
 * webrtc-datachannel` section per media entry, in order (its `mLineIndex` is its position), with `c=IN IP4 0.0.0.0`,
 * `a=mid` when it has one, its ICE attributes, `a=sctp-port:5000` and `a=max-message-size:262144`;
 * `a=group:BUNDLE` over the mids when every section has one, `a=ice-lite` when `lite`. Lines end in CRLF
 * (RFC 8866), the last one too. `parse` gives `description` back.
 *
 * @since 0.1.0
 * @category formatting
 */
export const format = (description: IceDescription, options?: FormatOptions): string => {
  const lines = ["v=0", `o=- ${options?.sessionId ?? "0"} 2 IN IP4 127.0.0.1`, "s=-", "t=0 0"]
  const mids = description.media.map((media) => media.mid)
  if (mids.length > 0 && mids.every((mid) => mid !== undefined)) lines.push(`a=group:BUNDLE ${mids.join(" ")}`)
  if (description.lite) lines.push("a=ice-lite")
  for (const media of description.media) {
    lines.push("m=application 9 UDP/DTLS/SCTP webrtc-datachannel", "c=IN IP4 0.0.0.0")
    if (media.mid !== undefined) lines.push(`a=mid:${media.mid}`)
    lines.push(...mediaAttributes(media))
    if (options?.fingerprint !== undefined) {
      lines.push(`a=fingerprint:${options.fingerprint.algorithm} ${options.fingerprint.value}`)
      lines.push(`a=setup:${options.setup ?? "actpass"}`)
    } else if (options?.setup !== undefined) {
      lines.push(`a=setup:${options.setup}`)
    }
    lines.push("a=sctp-port:5000", "a=max-message-size:262144")
  }
  return lines.join("\r\n") + "\r\n"
}

/**
 * The candidates of a description as `RTCIceCandidateInit` values, the way a trickling peer sends them: each media
 * section's candidates in order with its `sdpMid` (when it has one), `sdpMLineIndex` and `usernameFragment` (its
 * ufrag), followed, when the section has `endOfCandidates`, by an end-of-candidates init (`candidate: ""`) with the
 * same fields.
 *
 * @since 0.1.0
 * @category formatting
 */
export const candidateInits = (description: IceDescription): Array<IceCandidate.CandidateInit> => {
  const out: Array<IceCandidate.CandidateInit> = []
  for (const media of description.media) {
    const fields = {
      ...(media.mid === undefined ? {} : { sdpMid: media.mid }),
      sdpMLineIndex: media.mLineIndex,
      usernameFragment: media.ufrag
    }
    for (const candidate of media.candidates) out.push(IceCandidate.toInit(candidate, fields))
    if (media.endOfCandidates) out.push({ candidate: "", ...fields })
  }
  return out
}
