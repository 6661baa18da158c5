/**
 * effect-ice: NAT traversal for Effect applications. STUN (RFC 8489), TURN (RFC 8656) and ICE (RFC 8445)
 * building blocks; each module is re-exported here as a namespace.
 *
 * @since 0.1.0
 */

/**
 * ICE candidates (RFC 8445 §5.1): priorities, foundations, redundancy, and the SDP `a=candidate` codec (RFC 8839
 * §5.1, RFC 6544) with its `RTCIceCandidateInit` form.
 *
 * @since 0.1.0
 */
export * as IceCandidate from "./IceCandidate.js"

/**
 * The ICE checklist (RFC 8445 §6.1.2, §6.1.4.2, §7.2.5.3, §8.1) as an immutable state machine: pair formation,
 * priority, pruning, pair states, the valid list and nomination.
 *
 * @since 0.1.0
 */
export * as IceChecklist from "./IceChecklist.js"

/**
 * First-byte demultiplexing of STUN, ChannelData, DTLS, RTP/RTCP and ZRTP on one socket (RFC 7983, RFC 9443).
 *
 * @since 0.1.0
 */
export * as PacketDemux from "./PacketDemux.js"

/**
 * STUN and ChannelData framing on stream transports (RFC 8489 §6.2.2, RFC 8656 §12.5) and RFC 4571 framing.
 *
 * @since 0.1.0
 */
export * as StreamFraming from "./StreamFraming.js"

/**
 * Typed STUN attributes and their wire codec (RFC 8489 §14, RFC 8656 §18, RFC 5780 §7, RFC 8445 §16.1).
 *
 * @since 0.1.0
 */
export * as StunAttribute from "./StunAttribute.js"

/**
 * MESSAGE-INTEGRITY, MESSAGE-INTEGRITY-SHA256, FINGERPRINT and credential keys (RFC 8489 §9, §14).
 *
 * @since 0.1.0
 */
export * as StunIntegrity from "./StunIntegrity.js"

/**
 * STUN message encode and decode (RFC 8489 §5, §6).
 *
 * @since 0.1.0
 */
export * as StunMessage from "./StunMessage.js"

/**
 * IP addresses, ports and transports: parsing, formatting, byte forms, map keys.
 *
 * @since 0.1.0
 */
export * as TransportAddress from "./TransportAddress.js"

/**
 * TURN ChannelData messages (RFC 8656 §12.4).
 *
 * @since 0.1.0
 */
export * as TurnChannelData from "./TurnChannelData.js"

/**
 * Every counter and gauge of effect-ice, as Effect `Metric`s.
 *
 * @since 0.1.0
 */
export * as Metrics from "./Metrics.js"

/**
 * The I/O service: UDP and TCP sockets and interfaces, implemented by `NodeNetwork` and `VirtualNetwork`.
 *
 * @since 0.1.0
 */
export * as Network from "./Network.js"

/**
 * The `Network` service over Node's real sockets.
 *
 * @since 0.1.0
 */
export * as NodeNetwork from "./NodeNetwork.js"

/**
 * The `Network` service over a simulated internet that runs on Effect's `Clock`.
 *
 * @since 0.1.0
 */
export * as VirtualNetwork from "./VirtualNetwork.js"

/**
 * STUN client transactions: retransmission on the RFC 8489 schedule, response matching, authentication.
 *
 * @since 0.1.0
 */
export * as StunTransaction from "./StunTransaction.js"

/**
 * A STUN Binding server over UDP and TCP with RFC 5780 NAT behavior discovery (CHANGE-REQUEST, OTHER-ADDRESS,
 * RESPONSE-ORIGIN, RESPONSE-PORT, PADDING) and the RFC 8489 §6.3.1 response cache.
 *
 * @since 0.1.0
 */
export * as StunServer from "./StunServer.js"

/**
 * The `effect-ice` command line (`stun`, `stun-server`), as Effects on the `Network` service.
 *
 * @since 0.1.0
 */
export * as Cli from "./Cli.js"

/**
 * The RFC 4787 vocabulary of NAT behaviour: mapping, filtering, hairpinning, lifetimes, the classical names.
 *
 * @since 0.1.0
 */
export * as NatBehavior from "./NatBehavior.js"

/**
 * NAT behavior discovery (RFC 5780 §4): mapping and filtering behaviour, hairpinning and binding lifetime against a
 * STUN server with two addresses, as a typed `NatReport`.
 *
 * @since 0.1.0
 */
export * as NatDiscovery from "./NatDiscovery.js"

/**
 * mDNS names for ICE host candidates (draft-ietf-mmusic-mdns-ice-candidates): random `<uuid>.local` names, a
 * responder and a resolver (RFC 6762 §5, §6, §8.3, §10; RFC 1035 §4.1 message format).
 *
 * @since 0.1.0
 */
export * as Mdns from "./Mdns.js"

/**
 * TURN credentials: static long-term users and TURN REST API ephemeral credentials.
 *
 * @since 0.1.0
 */
export * as TurnAuth from "./TurnAuth.js"

/**
 * A TURN server (RFC 8656): allocations, permissions, channels, the relay data plane, long-term and TURN REST
 * credentials with expiring nonces, quotas and refused peer ranges.
 *
 * @since 0.1.0
 */
export * as TurnServer from "./TurnServer.js"

/**
 * How a TURN server is configured from outside: CLI flags, a turnserver.conf-style file and environment variables,
 * one `Settings` vocabulary for all three, and `layerConfig`.
 *
 * @since 0.1.0
 */
export * as TurnServerConfig from "./TurnServerConfig.js"

/**
 * Effect metrics in the Prometheus text exposition format, and a minimal HTTP endpoint serving them.
 *
 * @since 0.1.0
 */
export * as Prometheus from "./Prometheus.js"

/**
 * The TURN client (RFC 8656): an allocation as a scoped resource, with its refresh, permission and channel timers,
 * Send/Data indications and ChannelData, and a `Stream` of relayed data.
 *
 * @since 0.1.0
 */
export * as TurnClient from "./TurnClient.js"

/**
 * ICE candidate gathering (RFC 8445 §5.1.1): host, server-reflexive and relayed candidates as a `Stream`, the
 * gathering state, and the bases checks and data are sent from.
 *
 * @since 0.1.0
 */
export * as IceGatherer from "./IceGatherer.js"

/**
 * The ICE agent (RFC 8445, RFC 8838, RFC 7675): roles, paced and triggered checks, nomination, the selected pair,
 * keepalives, consent freshness, restart and the data path, as a scoped resource.
 *
 * @since 0.1.0
 */
export * as IceAgent from "./IceAgent.js"

/**
 * One UDP socket shared by many ICE agents, demultiplexed by the ufrag in USERNAME and then by remote address.
 *
 * @since 0.1.0
 */
export * as IceUdpMux from "./IceUdpMux.js"

/**
 * ICE server configuration in the WebRTC `RTCIceServer` shape and its `stun:`/`stuns:`/`turn:`/`turns:` URIs
 * (RFC 7064, RFC 7065).
 *
 * @since 0.1.0
 */
export * as IceServer from "./IceServer.js"

/**
 * The ICE attributes of SDP (RFC 8839 §5): ufrag, pwd, options, ice-lite, candidates, end-of-candidates.
 *
 * @since 0.1.0
 */
export * as IceSdp from "./IceSdp.js"
