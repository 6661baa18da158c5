/**
 * Every counter and gauge of effect-ice, in one place, as Effect `Metric`s. Applications export them with any
 * Effect metrics exporter (Prometheus, OpenTelemetry); tests read them with `Metric.value`.
 *
 * Per-packet code updates them with `unsafeUpdate` (no Effect per packet, as the hot-path rule says); control-plane
 * code may use the ordinary combinators. Labels are few and bounded (method, class, reason), never addresses.
 *
 * @since 0.1.0
 */
import { Metric, MetricLabel } from "effect"

/**
 * STUN client transactions started, by method (label `method`).
 *
 * @since 0.1.0
 * @category stun
 */
export const stunTransactions = Metric.counter("effect_ice_stun_transactions_total", {
  description: "STUN client transactions started"
})

/**
 * STUN requests sent again because no response came within the RTO (RFC 8489 §6.2.1).
 *
 * @since 0.1.0
 * @category stun
 */
export const stunRetransmissions = Metric.counter("effect_ice_stun_retransmissions_total", {
  description: "STUN request retransmissions"
})

/**
 * STUN client transactions that ended without a response.
 *
 * @since 0.1.0
 * @category stun
 */
export const stunTimeouts = Metric.counter("effect_ice_stun_timeouts_total", {
  description: "STUN client transactions that timed out"
})

/**
 * Datagrams or frames that looked like STUN but did not decode.
 *
 * @since 0.1.0
 * @category stun
 */
export const stunDecodeFailures = Metric.counter("effect_ice_stun_decode_failures_total", {
  description: "STUN messages that failed to decode"
})

/**
 * STUN responses dropped by a client, by reason (label `reason`: fingerprint, integrity, unmatched).
 *
 * @since 0.1.0
 * @category stun
 */
export const stunResponsesDropped = Metric.counter("effect_ice_stun_responses_dropped_total", {
  description: "STUN responses a client dropped"
})

/**
 * STUN requests a server received, by method and class of the answer (labels `method`, `outcome`).
 *
 * @since 0.1.0
 * @category stun
 */
export const stunServerRequests = Metric.counter("effect_ice_stun_server_requests_total", {
  description: "STUN requests answered or dropped by a server"
})

/**
 * A label, for code that tags the counters above.
 *
 * @since 0.1.0
 * @category labels
 */
export const label = (key: string, value: string): MetricLabel.MetricLabel => MetricLabel.make(key, value)

/**
 * Adds one to a counter from plain (non-Effect) code, with labels.
 *
 * @since 0.1.0
 * @category combinators
 */
export const increment = (
  counter: Metric.Metric.Counter<number>,
  labels: ReadonlyArray<MetricLabel.MetricLabel> = []
): void => counter.unsafeUpdate(1, labels)

/**
 * TURN allocations a server holds now (an up-down counter: +1 when created, −1 when released).
 *
 * @since 0.1.0
 * @category turn
 */
export const turnAllocations = Metric.counter("effect_ice_turn_allocations", {
  description: "TURN allocations held by servers"
})

/**
 * TURN permissions a server holds now (up-down; an expired permission is counted out when the sweeper removes it).
 *
 * @since 0.1.0
 * @category turn
 */
export const turnPermissions = Metric.counter("effect_ice_turn_permissions", {
  description: "TURN permissions held by servers"
})

/**
 * TURN channel bindings a server holds now (up-down; counted out when the sweeper removes them).
 *
 * @since 0.1.0
 * @category turn
 */
export const turnChannels = Metric.counter("effect_ice_turn_channels", {
  description: "TURN channel bindings held by servers"
})

/**
 * Packets a TURN server relayed, by direction (label `direction`: to-peer, to-client).
 *
 * @since 0.1.0
 * @category turn
 */
export const turnRelayedPackets = Metric.counter("effect_ice_turn_relayed_packets_total", {
  description: "Packets relayed by TURN servers"
})

/**
 * Application bytes a TURN server relayed, by direction (label `direction`: to-peer, to-client).
 *
 * @since 0.1.0
 * @category turn
 */
export const turnRelayedBytes = Metric.counter("effect_ice_turn_relayed_bytes_total", {
  description: "Bytes relayed by TURN servers"
})

/**
 * TURN requests refused for authentication, by error code (label `code`: 400, 401, 438, 441).
 *
 * @since 0.1.0
 * @category turn
 */
export const turnAuthFailures = Metric.counter("effect_ice_turn_auth_failures_total", {
  description: "TURN requests refused for authentication"
})

/**
 * Packets a TURN server dropped, by reason (label `reason`).
 *
 * @since 0.1.0
 * @category turn
 */
export const turnDrops = Metric.counter("effect_ice_turn_drops_total", {
  description: "Packets dropped by TURN servers"
})

/**
 * TURN requests a server answered, by method and response code (labels `method`, `code`; 200 for success).
 *
 * @since 0.1.0
 * @category turn
 */
export const turnRequests = Metric.counter("effect_ice_turn_requests_total", {
  description: "TURN requests answered by servers"
})

/**
 * ICE connectivity checks started by agents (RFC 8445 §7.2), by `kind`: `ordinary`, `triggered`, `nomination`,
 * `consent` (RFC 7675); retransmissions are counted by `stunRetransmissions`.
 *
 * @since 0.1.0
 * @category ice
 */
export const iceChecks = Metric.counter("effect_ice_ice_checks_total", {
  description: "ICE connectivity checks started"
})

/**
 * ICE checks answered by agents (RFC 8445 §7.3), by `result`: `success`, `400`, `401`, `487`.
 *
 * @since 0.1.0
 * @category ice
 */
export const iceChecksAnswered = Metric.counter("effect_ice_ice_checks_answered_total", {
  description: "ICE connectivity checks answered"
})

/**
 * ICE agent state changes, by the new `state` (the `RTCIceTransportState` names).
 *
 * @since 0.1.0
 * @category ice
 */
export const iceStateChanges = Metric.counter("effect_ice_ice_state_changes_total", {
  description: "ICE agent state changes"
})
