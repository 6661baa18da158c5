/**
 * One UDP socket shared by many ICE agents (what an SFU or any server with thousands of peers runs): every agent
 * created with the `mux` option (`IceAgent.Options.mux`) has the mux's socket as its only host base, so all of them
 * answer and send on one public port.
 *
 * Demultiplexing, in plain code in the socket's reader (no fiber per datagram):
 *
 * - A STUN Binding request is routed by the USERNAME attribute (RFC 8445 §7.2.2: `<receiver ufrag>:<sender
 *   ufrag>`): the part before the `:` is the local ufrag of the agent it is for. A request for no registered ufrag
 *   is dropped and counted (`droppedUnknownUfrag`). Authentication stays the agent's: the source address is learnt
 *   for the agent when the agent answers the check with a success (a valid check, RFC 8445 §7.3), not when it
 *   answers 401 or 400.
 * - A STUN response goes to the agent that sent the request with its transaction id (the mux notes the id of every
 *   request an agent sends: checks, consent checks, the Binding to a STUN server), else by address.
 * - Everything else (indications, DTLS, RTP, later STUN from a known peer) is routed by source address, learnt
 *   from the first valid check or from the first datagram the agent sent to that address (its own check, its data;
 *   never an error response). A datagram from an unknown address is dropped and counted (`droppedUnknownAddress`).
 *
 * The tables are bounded ({@link Options.maxAgents}, {@link Options.maxAddresses}, {@link maxTransactions}); an
 * agent's entries (its ufrag, the addresses learnt for it, its pending transaction ids) are removed when the scope
 * its base lives in closes (the agent's generation: a restart registers the new ufrag before the old one goes).
 *
 * A mux agent's ufrag is the routing key, so it must be unique on the mux: registering a ufrag in use fails with
 * {@link IceUdpMuxError}. Agents on a mux draw 8-character ufrags (48 random bits) unless given one.
 *
 * @since 0.1.0
 */
import { Data, Effect } from "effect"
import type { Scope } from "effect"
import * as IceGatherer from "./IceGatherer.js"
import * as Network from "./Network.js"
import type { SocketAddress, TransportAddress } from "./TransportAddress.js"

/**
 * The most request transaction ids the mux remembers for routing responses (the oldest is forgotten first).
 *
 * @since 0.1.0
 * @category constants
 */
export const maxTransactions = 65536

/**
 * How to open a mux.
 *
 * @since 0.1.0
 * @category models
 */
export interface Options {
  /** The address to bind (it is also the candidates' address, so give a concrete one, not a wildcard). */
  readonly address?: string | undefined
  readonly port?: number | undefined
  readonly family?: "IPv4" | "IPv6" | undefined
  /** The most agents (ufrags) registered at once (default 10000). */
  readonly maxAgents?: number | undefined
  /** The most remote addresses learnt at once (default 65536); more are not learnt, and counted. */
  readonly maxAddresses?: number | undefined
}

/**
 * Counters and table sizes.
 *
 * @since 0.1.0
 * @category models
 */
export interface MuxStats {
  readonly agents: number
  readonly addresses: number
  readonly transactions: number
  /** Binding requests whose USERNAME names no registered ufrag (or that have none and come from no known address). */
  readonly droppedUnknownUfrag: number
  /** Other datagrams from an address no agent is known to talk to. */
  readonly droppedUnknownAddress: number
  /** Addresses not learnt because the table was full. */
  readonly addressTableFull: number
  /** Datagrams handed to an agent. */
  readonly delivered: number
}

/**
 * A base could not be registered: the ufrag is in use on this mux, or the mux has {@link Options.maxAgents}.
 *
 * @since 0.1.0
 * @category errors
 */
export class IceUdpMuxError extends Data.TaggedError("IceUdpMuxError")<{
  readonly reason: "UfragInUse" | "TooManyAgents"
  readonly ufrag: string
}> {
  override get message(): string {
    return `ICE UDP mux: cannot register ufrag ${JSON.stringify(this.ufrag)}: ${this.reason}`
  }
}

/**
 * A running mux.
 *
 * @since 0.1.0
 * @category models
 */
export interface IceUdpMux {
  /** The shared socket's address (every mux agent's host candidate). */
  readonly local: TransportAddress
  /**
   * A host base on the shared socket for the agent whose local ufrag is `ufrag`, registered until the scope closes.
   */
  readonly base: (ufrag: string) => Effect.Effect<IceGatherer.Base, IceUdpMuxError, Scope.Scope>
  readonly stats: Effect.Effect<MuxStats>
}

interface Entry {
  readonly ufrag: string
  reader: Network.DatagramHandler | undefined
  readonly addresses: Set<string>
  readonly transactions: Set<string>
  closed: boolean
}

const STUN_COOKIE = 0x2112a442
const USERNAME = 0x0006

const addressKey = (a: SocketAddress) => `${a.ip}|${a.port}`

/** The 12-byte transaction id as a string key (one char per byte). */
const transactionKey = (data: Uint8Array): string => {
  let s = ""
  for (let i = 8; i < 20; i++) s += String.fromCharCode(data[i]!)
  return s
}

/** The STUN class of a datagram (0 request, 1 indication, 2 success, 3 error), or -1 when it is not STUN. */
const stunClass = (data: Uint8Array): number => {
  if (data.length < 20 || data[0]! > 3) return -1
  if (((data[4]! << 24) | (data[5]! << 16) | (data[6]! << 8) | data[7]!) >>> 0 !== STUN_COOKIE) return -1
  return ((data[0]! & 0x01) << 1) | ((data[1]! & 0x10) >> 4)
}

/** The part of USERNAME before `:` (the receiver's ufrag), or undefined. Plain scan, no decoding of the rest. */
const usernameUfrag = (data: Uint8Array): string | undefined => {
  const end = Math.min(data.length, 20 + ((data[2]! << 8) | data[3]!))
  let offset = 20
  while (offset + 4 <= end) {
    const type = (data[offset]! << 8) | data[offset + 1]!
    const length = (data[offset + 2]! << 8) | data[offset + 3]!
    const start = offset + 4
    if (start + length > end) return undefined
    if (type === USERNAME) {
      let s = ""
      for (let i = start; i < start + length; i++) {
        const c = data[i]!
        if (c === 0x3a) return s
        s += String.fromCharCode(c)
      }
      return s
    }
    offset = start + ((length + 3) & ~3)
  }
  return undefined
}

/**
 * A mux on a socket the caller bound (the socket's reader is replaced by the mux's).
 *
 * @since 0.1.0
 * @category constructors
 */
export const fromSocket = (
  socket: Network.DatagramSocket,
  options: Pick<Options, "maxAgents" | "maxAddresses"> = {}
): Effect.Effect<IceUdpMux> =>
  Effect.gen(function*() {
    const maxAgents = options.maxAgents ?? 10000
    const maxAddresses = options.maxAddresses ?? 65536
    const byUfrag = new Map<string, Entry>()
    const byAddress = new Map<string, Entry>()
    const byTransaction = new Map<string, Entry>()
    const counters = {
      droppedUnknownUfrag: 0,
      droppedUnknownAddress: 0,
      addressTableFull: 0,
      delivered: 0
    }

    const learn = (key: string, entry: Entry) => {
      const owner = byAddress.get(key)
      if (owner === entry) return
      if (owner === undefined && byAddress.size >= maxAddresses) {
        counters.addressTableFull++
        return
      }
      owner?.addresses.delete(key)
      byAddress.set(key, entry)
      entry.addresses.add(key)
    }

    const deliver = (entry: Entry, data: Uint8Array, from: SocketAddress) => {
      const reader = entry.reader
      if (reader === undefined) return
      counters.delivered++
      return reader(data, from)
    }

    yield* socket.setHandler((data, from) => {
      const cls = stunClass(data)
      if (cls === 0) {
        const ufrag = usernameUfrag(data)
        if (ufrag !== undefined) {
          const entry = byUfrag.get(ufrag)
          if (entry === undefined) {
            counters.droppedUnknownUfrag++
            return
          }
          return deliver(entry, data, from)
        }
      } else if (cls >= 2) {
        const key = transactionKey(data)
        const entry = byTransaction.get(key)
        if (entry !== undefined) {
          byTransaction.delete(key)
          entry.transactions.delete(key)
          return deliver(entry, data, from)
        }
      }
      const entry = byAddress.get(addressKey(from))
      if (entry === undefined) {
        if (cls === 0) counters.droppedUnknownUfrag++
        else counters.droppedUnknownAddress++
        return
      }
      return deliver(entry, data, from)
    })

    /**
     * Notes what an agent sends: the destination is learnt (unless it is an error response: a 401 to a check that
     * failed authentication teaches nothing), and a request's transaction id is kept for its response.
     */
    const outgoing = (entry: Entry, data: Uint8Array, to: SocketAddress) => {
      if (entry.closed) return
      const cls = stunClass(data)
      if (cls !== 3) learn(addressKey(to), entry)
      if (cls === 0) {
        if (byTransaction.size >= maxTransactions) {
          const oldest = byTransaction.entries().next()
          if (oldest.done !== true) {
            byTransaction.delete(oldest.value[0])
            oldest.value[1].transactions.delete(oldest.value[0])
          }
        }
        const key = transactionKey(data)
        byTransaction.set(key, entry)
        entry.transactions.add(key)
      }
    }

    const release = (entry: Entry) =>
      Effect.sync(() => {
        entry.closed = true
        entry.reader = undefined
        if (byUfrag.get(entry.ufrag) === entry) byUfrag.delete(entry.ufrag)
        for (const key of entry.addresses) if (byAddress.get(key) === entry) byAddress.delete(key)
        entry.addresses.clear()
        for (const key of entry.transactions) if (byTransaction.get(key) === entry) byTransaction.delete(key)
        entry.transactions.clear()
      })

    const base = (ufrag: string): Effect.Effect<IceGatherer.Base, IceUdpMuxError, Scope.Scope> =>
      Effect.gen(function*() {
        if (byUfrag.has(ufrag)) return yield* Effect.fail(new IceUdpMuxError({ reason: "UfragInUse", ufrag }))
        if (byUfrag.size >= maxAgents) return yield* Effect.fail(new IceUdpMuxError({ reason: "TooManyAgents", ufrag }))
        const entry: Entry = {
          ufrag,
          reader: undefined,
          addresses: new Set(),
          transactions: new Set(),
          closed: false
        }
        byUfrag.set(ufrag, entry)
        yield* Effect.addFinalizer(() => release(entry))
        const view: Network.DatagramSocket = {
          local: socket.local,
          send: (data, to) =>
            Effect.suspend(() => {
              outgoing(entry, data, to)
              return socket.send(data, to)
            }),
          unsafeSend: (data, to) => {
            outgoing(entry, data, to)
            socket.unsafeSend(data, to)
          },
          setHandler: (handler) =>
            Effect.sync(() => {
              if (!entry.closed) entry.reader = handler
            }),
          sendFailures: socket.sendFailures
        }
        return yield* IceGatherer.hostBase(view)
      })

    return {
      local: socket.local,
      base,
      stats: Effect.sync(() => ({
        agents: byUfrag.size,
        addresses: byAddress.size,
        transactions: byTransaction.size,
        ...counters
      }))
    }
  })

/**
 * Binds a UDP socket for the lifetime of the scope and runs a mux on it.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (
  options: Options = {}
): Effect.Effect<IceUdpMux, Network.NetworkError, Network.Network | Scope.Scope> =>
  Effect.gen(function*() {
    const network = yield* Network.Network
    const socket = yield* network.bindUdp({
      ...(options.address === undefined ? {} : { address: options.address }),
      ...(options.port === undefined ? {} : { port: options.port }),
      ...(options.family === undefined ? {} : { family: options.family })
    })
    return yield* fromSocket(socket, options)
  }).pipe(Effect.withSpan("IceUdpMux.make", { captureStackTrace: false }))
