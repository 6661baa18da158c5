/**
 * The one I/O service every protocol engine uses: UDP datagram sockets, TCP stream sockets and the list of local
 * interfaces. `NodeNetwork` implements it with real sockets; `VirtualNetwork` implements it on a simulated
 * internet running on Effect's `Clock`, so STUN, TURN and ICE run unchanged on both.
 *
 * Sockets are scoped resources: they close when the scope that bound them closes. Receiving is push-based with a
 * single reader per socket: a handler `(data, remote) => Effect | void` is called for every datagram (or TCP
 * chunk) in the receive path itself, so per-packet work is plain code with no fiber; when the handler returns an
 * Effect (a control-plane reaction), that effect runs in a fiber owned by the socket. `datagrams` gives a `Stream`
 * view for code that prefers one.
 *
 * @since 0.1.0
 */
import type { Scope, Stream } from "effect"
import { Context, Data, Effect, Mailbox } from "effect"
import type { Family, SocketAddress, TransportAddress } from "./TransportAddress.js"

/**
 * Why an I/O operation failed.
 *
 * @since 0.1.0
 * @category errors
 */
export type NetworkErrorReason =
  | "AddressInUse"
  | "AddressNotAvailable"
  | "BindFailed"
  | "SendFailed"
  | "ConnectionRefused"
  | "ConnectionReset"
  | "ConnectFailed"
  | "Unreachable"
  | "Closed"
  | "InvalidAddress"
  | "MessageTooLarge"
  | "Blocked"
  | "Unsupported"
  | "NotFound"
  | "TlsFailed"

/**
 * An I/O failure: what was being done, to which address, and why.
 *
 * @since 0.1.0
 * @category errors
 */
export class NetworkError extends Data.TaggedError("NetworkError")<{
  readonly reason: NetworkErrorReason
  readonly operation: "bind" | "send" | "connect" | "listen" | "write" | "interfaces" | "lookup"
  readonly address?: string | undefined
  readonly cause?: unknown
}> {
  override get message(): string {
    return `${this.operation}${this.address === undefined ? "" : ` ${this.address}`} failed: ${this.reason}${
      this.cause instanceof Error ? ` (${this.cause.message})` : ""
    }`
  }
}

/**
 * What a socket's reader is given for each datagram: the bytes (owned by the handler; copy what must outlive the
 * call only if the implementation says it reuses buffers — neither built-in one does) and the sender.
 *
 * @since 0.1.0
 * @category models
 */
export type DatagramHandler = (data: Uint8Array, remote: SocketAddress) => Effect.Effect<void> | void

/**
 * A datagram, as the `Stream` view gives it.
 *
 * @since 0.1.0
 * @category models
 */
export interface Datagram {
  readonly data: Uint8Array
  readonly remote: SocketAddress
}

/**
 * A bound UDP socket.
 *
 * @since 0.1.0
 * @category models
 */
export interface DatagramSocket {
  /** The address and port the socket is bound to (a wildcard bind reports the wildcard address). */
  readonly local: TransportAddress
  /** Sends one datagram; fails with `NetworkError` when the socket is closed or the send is refused. */
  readonly send: (data: Uint8Array, to: SocketAddress) => Effect.Effect<void, NetworkError>
  /**
   * The hot-path send: hands the datagram to the transport and returns at once. A failure is not reported to the
   * caller (UDP gives no delivery guarantee anyway) but is counted in `sendFailures`.
   */
  readonly unsafeSend: (data: Uint8Array, to: SocketAddress) => void
  /**
   * Installs the socket's single reader, replacing the previous one. Datagrams that arrived while no handler was
   * installed (at most 256; more are dropped) are delivered to it first.
   */
  readonly setHandler: (handler: DatagramHandler) => Effect.Effect<void>
  /** Datagrams whose `unsafeSend` failed since the socket was bound. */
  readonly sendFailures: () => number
}

/**
 * What a TCP connection's reader is given: the next chunk of the byte stream, cut wherever the transport cut it.
 *
 * @since 0.1.0
 * @category models
 */
export type ChunkHandler = (chunk: Uint8Array) => Effect.Effect<void> | void

/**
 * A TCP connection.
 *
 * @since 0.1.0
 * @category models
 */
export interface StreamSocket {
  readonly local: TransportAddress
  readonly remote: TransportAddress
  /** Writes bytes; fails with `NetworkError` when the connection is closed. */
  readonly write: (data: Uint8Array) => Effect.Effect<void, NetworkError>
  /** The hot-path write: returns at once; a failure shows in `closed`. */
  readonly unsafeWrite: (data: Uint8Array) => void
  /** Installs the single reader, replacing the previous one; chunks received before it are delivered first. */
  readonly setHandler: (handler: ChunkHandler) => Effect.Effect<void>
  /** Completes when the connection ends: succeeds on an orderly close by either side, fails on a reset. */
  readonly closed: Effect.Effect<void, NetworkError>
  /** Closes the connection. Closing the scope that opened it does the same. */
  readonly close: Effect.Effect<void>
}

/**
 * A listening TCP socket.
 *
 * @since 0.1.0
 * @category models
 */
export interface StreamListener {
  readonly local: TransportAddress
}

/**
 * One address of a local network interface.
 *
 * @since 0.1.0
 * @category models
 */
export interface NetworkInterface {
  readonly name: string
  readonly family: Family
  readonly address: string
  /** Prefix length of the interface's network (24 for a /24). */
  readonly prefixLength: number
  /** Loopback and similar host-internal interfaces. */
  readonly internal: boolean
}

/**
 * Where to bind. The address defaults to the wildcard of `family` (default IPv4); the port to 0 (any free port).
 * With `portRange`, ports are tried from a random start within the range until one is free.
 *
 * @since 0.1.0
 * @category models
 */
export interface BindOptions {
  readonly address?: string | undefined
  readonly port?: number | undefined
  readonly portRange?: readonly [number, number] | undefined
  readonly family?: Family | undefined
}

/**
 * A multicast socket: the group to join and the port to bind; `family` defaults to the group's family, and
 * `interfaceAddress` (an address of this host) chooses the interface that joins the group and sends to it.
 *
 * @since 0.1.0
 * @category models
 */
export interface MulticastOptions {
  readonly group: string
  readonly port: number
  readonly family?: Family | undefined
  readonly interfaceAddress?: string | undefined
}

/**
 * Whether `ip` is a multicast address: IPv4 224.0.0.0/4 (RFC 5771), IPv6 ff00::/8 (RFC 4291 §2.7).
 *
 * @since 0.1.0
 * @category guards
 */
export const isMulticastAddress = (ip: string): boolean => {
  const dot = ip.indexOf(".")
  if (dot > 0 && !ip.includes(":")) {
    const first = Number(ip.slice(0, dot))
    return first >= 224 && first <= 239
  }
  return /^ff[0-9a-f]{2}:/i.test(ip)
}

/**
 * Where to connect from.
 *
 * @since 0.1.0
 * @category models
 */
export interface ConnectOptions {
  readonly localAddress?: string | undefined
  readonly localPort?: number | undefined
}

/**
 * How to open a TLS connection: where to connect from, and how to verify the server.
 *
 * @since 0.1.0
 * @category models
 */
export interface TlsConnectOptions extends ConnectOptions {
  /** The name sent in SNI and checked against the certificate; defaults to the remote IP. */
  readonly serverName?: string | undefined
  /** Trusted CA certificates (PEM), replacing the default roots. */
  readonly ca?: string | ReadonlyArray<string> | undefined
  /** Whether a certificate that does not verify fails the connection (default `true`). */
  readonly rejectUnauthorized?: boolean | undefined
}

/**
 * Where to listen for TLS connections, and the server's identity: its certificate (chain) and private key as PEM
 * text.
 *
 * @since 0.1.0
 * @category models
 */
export interface TlsListenOptions extends BindOptions {
  readonly certificate: string
  readonly key: string
}

/**
 * The operations of the network service.
 *
 * @since 0.1.0
 * @category models
 */
export interface Service {
  /** Binds a UDP socket for the lifetime of the scope. */
  readonly bindUdp: (options?: BindOptions) => Effect.Effect<DatagramSocket, NetworkError, Scope.Scope>
  /** Opens a TCP connection for the lifetime of the scope. */
  readonly connectTcp: (
    remote: SocketAddress,
    options?: ConnectOptions
  ) => Effect.Effect<StreamSocket, NetworkError, Scope.Scope>
  /**
   * Opens a TLS connection over TCP for the lifetime of the scope; the socket reads and writes plaintext. A failed
   * handshake (including a certificate that does not verify) fails with reason `TlsFailed`.
   */
  readonly connectTls: (
    remote: SocketAddress,
    options?: TlsConnectOptions
  ) => Effect.Effect<StreamSocket, NetworkError, Scope.Scope>
  /**
   * Listens for TCP connections for the lifetime of the scope. Each accepted connection runs `onConnection` in a
   * fiber of its own, with a scope of its own; the connection is closed when that effect ends (so a handler that
   * serves the connection until the peer leaves ends with `socket.closed`).
   */
  readonly listenTcp: (
    options: BindOptions,
    onConnection: (socket: StreamSocket) => Effect.Effect<void, never, Scope.Scope>
  ) => Effect.Effect<StreamListener, NetworkError, Scope.Scope>
  /**
   * Listens for TLS connections (TLS over TCP) for the lifetime of the scope, with the server's certificate and
   * private key (PEM text): like `listenTcp`, but each accepted connection is handed to `onConnection` only after its
   * handshake, and reads and writes plaintext. A connection whose handshake fails is closed and never reaches
   * `onConnection`. A certificate or key that cannot be loaded fails with reason `TlsFailed`.
   */
  readonly listenTls: (
    options: TlsListenOptions,
    onConnection: (socket: StreamSocket) => Effect.Effect<void, never, Scope.Scope>
  ) => Effect.Effect<StreamListener, NetworkError, Scope.Scope>
  /**
   * Binds a UDP socket for IP multicast for the lifetime of the scope: bound to the wildcard address of the group's
   * family at `port` with address reuse (so several sockets, of this process or others, share the port), joined to
   * `group` (on `interfaceAddress`, or the system's default interface), with multicast loopback on and a TTL (hop
   * limit) of 255. A datagram it sends to the group reaches every member socket on the same link, including the
   * other members on this host and the sender itself; it never crosses a router. Unicast datagrams to the port
   * reach one of the sockets sharing it. Fails with `InvalidAddress` when `group` is not a multicast address (IPv4
   * 224.0.0.0/4, IPv6 ff00::/8) of `family`, and usually `AddressNotAvailable` when `interfaceAddress` is not an
   * address of this host.
   */
  readonly bindMulticastUdp: (options: MulticastOptions) => Effect.Effect<DatagramSocket, NetworkError, Scope.Scope>
  /** The host's interface addresses. */
  readonly interfaces: Effect.Effect<ReadonlyArray<NetworkInterface>, NetworkError>
  /**
   * Resolves a host name to its addresses (an IP literal resolves to itself, canonicalized), IPv4 first. Fails with
   * reason `NotFound` when the name has no address.
   */
  readonly lookup: (host: string) => Effect.Effect<ReadonlyArray<IpAddress>, NetworkError>
}

/**
 * An IP address with its family, as `lookup` returns it.
 *
 * @since 0.1.0
 * @category models
 */
export interface IpAddress {
  readonly family: Family
  readonly ip: string
}

/**
 * The network service.
 *
 * @since 0.1.0
 * @category tags
 */
export class Network extends Context.Tag("effect-ice/Network")<Network, Service>() {}

/**
 * The most datagrams a socket keeps while no handler is installed.
 *
 * @since 0.1.0
 * @category constants
 */
export const maxPendingDatagrams = 256

/**
 * A `Stream` view of a socket's datagrams: installs a handler that queues each datagram (up to `capacity`; more
 * are dropped, as a full receive buffer would) and ends the stream when the scope closes.
 *
 * @since 0.1.0
 * @category combinators
 */
export const datagrams = (
  socket: DatagramSocket,
  capacity = 1024
): Effect.Effect<Stream.Stream<Datagram>, never, Scope.Scope> =>
  Effect.gen(function*() {
    const mailbox = yield* Mailbox.make<Datagram>({ capacity, strategy: "dropping" })
    yield* Effect.addFinalizer(() => mailbox.shutdown)
    yield* socket.setHandler((data, remote) => {
      mailbox.unsafeOffer({ data, remote })
    })
    return Mailbox.toStream(mailbox)
  })
