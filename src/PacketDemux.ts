/**
 * First-byte demultiplexing of the packets arriving on one socket, when STUN, TURN ChannelData, DTLS, ZRTP and
 * RTP/RTCP share it (as on a WebRTC ICE component).
 *
 * Implements RFC 7983 §7 as updated by RFC 9443: the receiver looks only at the first byte of the packet.
 *
 * ```
 *               +----------------+
 *               |        [0..3] -+--> STUN          (PacketKind.Stun)
 *               |      [16..19] -+--> ZRTP          (PacketKind.Zrtp)
 *   packet -->  |      [20..63] -+--> DTLS          (PacketKind.Dtls)
 *               |      [64..79] -+--> TURN Channel  (PacketKind.TurnChannel)
 *               |    [128..191] -+--> RTP/RTCP      (PacketKind.RtpRtcp)
 *               +----------------+
 * ```
 *
 * Every other first byte (4–15, 80–127, 192–255) is `Unknown`; RFC 7983 says such packets MUST be dropped. RFC 9443
 * makes room in this scheme for QUIC; this library does not multiplex QUIC on ICE sockets, so those bytes stay
 * `Unknown` here. The classification is a 256-entry table built once at module load: one indexed read per packet,
 * no allocation.
 *
 * @since 0.1.0
 */

/**
 * What a packet is, by its first byte (RFC 7983 §7, RFC 9443).
 *
 * @since 0.1.0
 * @category models
 */
export const PacketKind = {
  /** STUN: first byte 0–3 */
  Stun: "Stun",
  /** ZRTP: first byte 16–19 */
  Zrtp: "Zrtp",
  /** DTLS: first byte 20–63 */
  Dtls: "Dtls",
  /** TURN Channel (ChannelData): first byte 64–79 */
  TurnChannel: "TurnChannel",
  /** RTP/RTCP: first byte 128–191 */
  RtpRtcp: "RtpRtcp",
  /** No protocol of RFC 7983: the packet MUST be dropped */
  Unknown: "Unknown"
} as const

/**
 * One of the values of {@link PacketKind}.
 *
 * @since 0.1.0
 * @category models
 */
export type PacketKind = typeof PacketKind[keyof typeof PacketKind]

const table: ReadonlyArray<PacketKind> = (() => {
  const kinds: Array<PacketKind> = []
  for (let byte = 0; byte < 256; byte++) {
    kinds.push(
      byte <= 3
        ? PacketKind.Stun
        : byte >= 16 && byte <= 19
        ? PacketKind.Zrtp
        : byte >= 20 && byte <= 63
        ? PacketKind.Dtls
        : byte >= 64 && byte <= 79
        ? PacketKind.TurnChannel
        : byte >= 128 && byte <= 191
        ? PacketKind.RtpRtcp
        : PacketKind.Unknown
    )
  }
  return kinds
})()

/**
 * Classifies a packet by its first byte (RFC 7983 §7, RFC 9443). A value that is not a byte (not an integer in
 * 0–255) is `Unknown`.
 *
 * @since 0.1.0
 * @category combinators
 */
export const classify = (firstByte: number): PacketKind => table[firstByte] ?? PacketKind.Unknown

/**
 * Classifies a packet by its first byte (RFC 7983 §7, RFC 9443); an empty packet is `Unknown`.
 *
 * @since 0.1.0
 * @category combinators
 */
export const classifyPacket = (bytes: Uint8Array): PacketKind =>
  bytes.length === 0 ? PacketKind.Unknown : table[bytes[0]!]!
