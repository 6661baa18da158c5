/**
 * The `Network` service over real sockets: UDP through `node:dgram`, TCP through `node:net`, interface addresses
 * through `node:os`. This is the only module of the library that touches Node's socket APIs; every protocol engine
 * reaches the network through the `Network` tag, so the same STUN (RFC 8489), TURN (RFC 8656) and ICE (RFC 8445)
 * code runs here and on the simulated internet of `VirtualNetwork`.
 *
 * How it maps Node onto the service:
 *
 * - **UDP.** One `dgram` socket per `bindUdp`, `udp4` or `udp6` (an IPv6 socket is bound with `ipv6Only`, so an
 *   IPv6 wildcard and an IPv4 wildcard on the same port coexist and every sender of an IPv6 socket is IPv6). With
 *   `portRange`, ports are tried from a start drawn from Effect's `Random` and wrapping around the range. The socket
 *   has exactly one `message` listener, attached before `bind`, which calls the current handler synchronously with
 *   Node's `Buffer` (a `Uint8Array`, passed on without a copy) and the sender's canonical address: no fiber and no
 *   Effect per datagram. Until the first `setHandler`, up to `Network.maxPendingDatagrams` datagrams are kept and
 *   replayed in order; later ones are dropped, as a full receive buffer would drop them.
 * - **TCP.** A connection is read in flowing mode from the start, so `closed` sees the peer's FIN even when nobody
 *   installed a handler. Chunks that arrive before `setHandler` are kept; once `maxPendingStreamBytes` are waiting
 *   the socket is paused (TCP flow control then holds the peer back) and resumed by `setHandler`.
 * - **TLS.** `connectTls` runs `tls.connect` over the connected TCP socket; `listenTls` is a `tls.Server` with the
 *   given certificate and key (checked up front, so a bad PEM fails the listen with `TlsFailed`), and hands a
 *   connection over only after its handshake; a failed handshake just closes that connection.
 * - **Effects from handlers.** When a handler returns an Effect it runs in a fiber of a `FiberSet` owned by the
 *   socket's scope (through `FiberSet.runtime`), so it sees the caller's services and is interrupted when the socket
 *   closes. A handler that throws is logged, not allowed to crash the process.
 * - **What a UDP socket keeps.** A socket may live as long as a TURN allocation, of which a server holds thousands,
 *   so it keeps little: the `FiberSet` is made the first time a handler returns an Effect; the runtime for those
 *   effects is the caller's services (without its `Scope`) and fiber refs, taken before the `NodeNetwork.bindUdp`
 *   span (which captures no stack trace) and shared with the previous socket when made of the same values; the
 *   'error' and 'listening' listeners are two functions shared by every socket, so nothing of the bind (its fiber)
 *   stays reachable from the socket. `unsafeSend` still passes Node a callback: without one Node reports a failed
 *   send nowhere (no exception, no 'error' event), and `sendFailures` counts them.
 * - **Errors.** Node error codes become `NetworkError` reasons (`EADDRINUSE` → `AddressInUse`, `ECONNREFUSED` →
 *   `ConnectionRefused`, `ENETUNREACH` → `Unreachable`, …); the Node error is kept as `cause` and the address as
 *   `address`. Operations on a closed socket fail with `Closed`; a datagram for the other address family fails
 *   with `InvalidAddress` before it reaches Node.
 *
 * Addresses given to `bindUdp` and `listenTcp` must be IP literals (an IPv6 zone such as `fe80::1%eth0` is
 * allowed); host names are refused with `InvalidAddress`, since resolving names is not this layer's job.
 *
 * @since 0.1.0
 */
import {
  Cause,
  Context,
  Deferred,
  Effect,
  Either,
  Exit,
  FiberId,
  FiberRefs,
  FiberSet,
  Layer,
  Option,
  Random,
  Runtime,
  Scope
} from "effect"
import type { FiberRef } from "effect"
import * as Dgram from "node:dgram"
import * as Dns from "node:dns"
import * as Net from "node:net"
import * as Os from "node:os"
import * as Tls from "node:tls"
import * as Network from "./Network.js"
import type { Family, SocketAddress, TransportAddress } from "./TransportAddress.js"
import { canonicalIp, format } from "./TransportAddress.js"

/**
 * How many bytes a TCP connection keeps while no handler is installed before it pauses reading (1 MiB). A paused
 * connection also delays `closed` until a handler drains it, because Node reports the peer's FIN only after the
 * data before it.
 *
 * @since 0.1.0
 * @category constants
 */
export const maxPendingStreamBytes = 1024 * 1024

// ---------------------------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------------------------

type Operation = Network.NetworkError["operation"]

/**
 * The completion of one pending send or write: resumes the `Effect.async` once (success or the error), and is
 * registered in `pending` until then, so that closing the socket can fail everything still waiting on Node.
 */
const trackedCompletion = (
  pending: Set<(error: Network.NetworkError) => void>,
  resume: (effect: Effect.Effect<void, Network.NetworkError>) => void
): (error: Network.NetworkError | undefined) => void => {
  let done = false
  const finish = (error: Network.NetworkError | undefined): void => {
    if (done) return
    done = true
    pending.delete(fail)
    resume(error === undefined ? Effect.void : Effect.fail(error))
  }
  const fail = (error: Network.NetworkError): void => finish(error)
  pending.add(fail)
  return finish
}

const errorCode = (error: unknown): string | undefined => {
  if (typeof error !== "object" || error === null || !("code" in error)) return undefined
  return typeof error.code === "string" ? error.code : undefined
}

const fallbackReason: Record<Operation, Network.NetworkErrorReason> = {
  bind: "BindFailed",
  listen: "BindFailed",
  send: "SendFailed",
  write: "SendFailed",
  connect: "ConnectFailed",
  interfaces: "Unsupported",
  lookup: "NotFound"
}

const reasonOf = (code: string | undefined, operation: Operation): Network.NetworkErrorReason => {
  switch (code) {
    case "EADDRINUSE":
      return "AddressInUse"
    case "EADDRNOTAVAIL":
      return "AddressNotAvailable"
    case "EMSGSIZE":
      return "MessageTooLarge"
    case "ECONNREFUSED":
      return "ConnectionRefused"
    case "ECONNRESET":
    case "ECONNABORTED":
    case "EPIPE":
      return "ConnectionReset"
    case "ETIMEDOUT":
      return operation === "connect" ? "ConnectFailed" : "ConnectionReset"
    case "ENETUNREACH":
    case "EHOSTUNREACH":
    case "ENETDOWN":
    case "EHOSTDOWN":
      return "Unreachable"
    case "EAFNOSUPPORT":
    case "EPROTONOSUPPORT":
      return "Unsupported"
    case "EPERM":
      // sendto(2) answers EPERM when a local firewall rule rejects the packet.
      return operation === "send" || operation === "write" ? "Blocked" : fallbackReason[operation]
    case "ERR_SOCKET_BAD_PORT":
    case "ERR_INVALID_IP_ADDRESS":
    case "ERR_INVALID_ADDRESS_FAMILY":
      return "InvalidAddress"
    case "EBADF":
    case "ERR_SOCKET_DGRAM_NOT_RUNNING":
    case "ERR_SOCKET_CLOSED":
    case "ERR_STREAM_DESTROYED":
    case "ERR_STREAM_WRITE_AFTER_END":
    case "ERR_SERVER_NOT_RUNNING":
      return "Closed"
    default:
      return fallbackReason[operation]
  }
}

const toNetworkError = (error: unknown, operation: Operation, address: string | undefined): Network.NetworkError =>
  new Network.NetworkError({ reason: reasonOf(errorCode(error), operation), operation, address, cause: error })

const closedError = (operation: Operation, address: string | undefined): Network.NetworkError =>
  new Network.NetworkError({ reason: "Closed", operation, address })

const hostPort = (host: string, port: number): string => host.includes(":") ? `[${host}]:${port}` : `${host}:${port}`

// ---------------------------------------------------------------------------------------------------------------
// Addresses
// ---------------------------------------------------------------------------------------------------------------

/** An IP literal with an optional IPv6 zone: the canonical text, and the text Node needs (zone kept). */
interface BindTarget {
  readonly family: Family
  /** What Node binds to (keeps an IPv6 zone). */
  readonly host: string
  /** The canonical IP, for `local` when the OS reports nothing better. */
  readonly ip: string
  readonly ports: readonly [number, number] | number
}

const stripZone = (ip: string): string => {
  const percent = ip.indexOf("%")
  return percent < 0 ? ip : ip.slice(0, percent)
}

const isPort = (port: number): boolean => Number.isInteger(port) && port >= 0 && port <= 65535

const resolveBindOptions = (
  options: Network.BindOptions,
  operation: Operation
): Either.Either<BindTarget, Network.NetworkError> => {
  const invalid = (address: string) =>
    Either.left(new Network.NetworkError({ reason: "InvalidAddress", operation, address }))
  let family: Family = options.family ?? "IPv4"
  let host = family === "IPv6" ? "::" : "0.0.0.0"
  let ip = host
  if (options.address !== undefined) {
    const canonical = canonicalIp(stripZone(options.address))
    if (Option.isNone(canonical)) return invalid(options.address)
    if (options.family !== undefined && options.family !== canonical.value.family) return invalid(options.address)
    family = canonical.value.family
    host = options.address
    ip = canonical.value.ip
  }
  if (options.portRange !== undefined) {
    const [lo, hi] = options.portRange
    if (!isPort(lo) || !isPort(hi) || lo < 1 || lo > hi) return invalid(`${hostPort(ip, lo)}-${hi}`)
    return Either.right({ family, host, ip, ports: [lo, hi] })
  }
  const port = options.port ?? 0
  if (!isPort(port)) return invalid(hostPort(ip, port))
  return Either.right({ family, host, ip, ports: port })
}

/** The canonical form of an address Node reports (zone suffix removed), falling back to the text itself. */
const canonicalOr = (ip: string): string => {
  const canonical = canonicalIp(stripZone(ip))
  return Option.isSome(canonical) ? canonical.value.ip : ip
}

const familyOfText = (ip: string, fallback: Family): Family => {
  const canonical = canonicalIp(stripZone(ip))
  return Option.isSome(canonical) ? canonical.value.family : fallback
}

/**
 * Tries the target's ports: the single port, or every port of the range once, from a random start. Busy ports
 * (and ports the process may not bind) are skipped; any other failure ends the search.
 */
const bindPorts = <A>(
  target: BindTarget,
  operation: Operation,
  attempt: (port: number) => Effect.Effect<A, Network.NetworkError>
): Effect.Effect<A, Network.NetworkError> => {
  if (typeof target.ports === "number") return attempt(target.ports)
  const [lo, hi] = target.ports
  const count = hi - lo + 1
  return Effect.flatMap(Random.nextIntBetween(0, count), (start) => {
    const loop = (i: number): Effect.Effect<A, Network.NetworkError> =>
      i === count
        ? Effect.fail(
          new Network.NetworkError({ reason: "AddressInUse", operation, address: `${hostPort(target.ip, lo)}-${hi}` })
        )
        : Effect.catchIf(
          attempt(lo + (start + i) % count),
          (error) => error.reason === "AddressInUse" || errorCode(error.cause) === "EACCES",
          () => loop(i + 1)
        )
    return loop(0)
  })
}

// ---------------------------------------------------------------------------------------------------------------
// Handlers
// ---------------------------------------------------------------------------------------------------------------

/** Forks an effect into the socket's `FiberSet`. */
type RunFork = (effect: Effect.Effect<void>) => unknown

const reportThrow = (run: RunFork | undefined, what: string, error: unknown): void => {
  if (run !== undefined) run(Effect.logError(`NodeNetwork: ${what} handler threw`, Cause.die(error)))
}

const deliverDatagram = (
  handler: Network.DatagramHandler,
  data: Uint8Array,
  remote: SocketAddress,
  run: RunFork
): void => {
  try {
    const result = handler(data, remote)
    if (result !== undefined) run(result)
  } catch (error) {
    reportThrow(run, "datagram", error)
  }
}

const deliverChunk = (handler: Network.ChunkHandler, chunk: Uint8Array, run: RunFork | undefined): void => {
  try {
    const result = handler(chunk)
    if (result !== undefined && run !== undefined) run(result)
  } catch (error) {
    reportThrow(run, "chunk", error)
  }
}

// ---------------------------------------------------------------------------------------------------------------
// UDP
// ---------------------------------------------------------------------------------------------------------------

/**
 * The receive side of a UDP socket: the single `message` listener, the handler and the pre-handler queue. Its
 * functions are object methods rather than arrow functions: a socket lives as long as its allocation or session, so
 * what it holds per socket is kept small (a method is a closure without a `name` property of its own, whatever the
 * compiler does with arrow functions).
 */
const makeReceiver = (family: Family, run: RunFork) => {
  let handler: Network.DatagramHandler | undefined
  let pending: Array<Network.Datagram> | undefined = []
  // Node prints IPv6 senders with inet_ntop, which differs from RFC 5952 in corner cases (and may add a zone):
  // canonicalize, remembering the last sender so a steady peer costs one string comparison.
  let lastRaw = ""
  let lastIp = ""
  return {
    onMessage(data: Buffer, rinfo: Dgram.RemoteInfo): void {
      let ip = rinfo.address
      if (family === "IPv6") {
        if (ip === lastRaw) {
          ip = lastIp
        } else {
          lastRaw = ip
          ip = lastIp = canonicalOr(ip)
        }
      }
      const remote: SocketAddress = { family, ip, port: rinfo.port }
      if (handler !== undefined) {
        deliverDatagram(handler, data, remote, run)
      } else if (pending !== undefined && pending.length < Network.maxPendingDatagrams) {
        pending.push({ data, remote })
      }
    },
    setHandler(next: Network.DatagramHandler): Effect.Effect<void> {
      return Effect.sync(() => {
        handler = next
        const queued = pending
        if (queued === undefined) return
        pending = undefined
        for (const datagram of queued) deliverDatagram(handler, datagram.data, datagram.remote, run)
      })
    }
  }
}

const closeQuietly = (socket: Dgram.Socket, onClosed?: () => void): void => {
  try {
    socket.close(onClosed)
  } catch {
    onClosed?.()
  }
}

/** The sockets being bound, each with what settles its bind (`bindUdpOnce`). */
const binding = new Map<Dgram.Socket, (error: Error | undefined) => void>()

/**
 * Every UDP socket's 'error' and 'listening' listeners: the same two functions for all, which settle a pending bind
 * (looked up in `binding`) and otherwise do nothing. They stay for the socket's life (an 'error' event without a
 * listener would crash the process; receive errors are ignored), hold nothing of the bind (its `resume`, and through
 * it the binding fiber), and are never removed (removing one would turn the socket's listener table into a slow
 * dictionary).
 */
function onUdpError(this: Dgram.Socket, error: Error): void {
  const settle = binding.get(this)
  if (settle !== undefined) settle(error)
}
function onUdpListening(this: Dgram.Socket): void {
  const settle = binding.get(this)
  if (settle !== undefined) settle(undefined)
}

/** Binds one `dgram` socket to one port; the socket is closed again when the bind fails or is interrupted. */
const bindUdpOnce = (
  target: BindTarget,
  port: number,
  onMessage: (data: Buffer, rinfo: Dgram.RemoteInfo) => void
): Effect.Effect<Dgram.Socket, Network.NetworkError> =>
  Effect.async<Dgram.Socket, Network.NetworkError>((resume) => {
    const socket = target.family === "IPv6"
      ? Dgram.createSocket({ type: "udp6", ipv6Only: true })
      : Dgram.createSocket({ type: "udp4" })
    const fail = (error: unknown): void => {
      binding.delete(socket)
      closeQuietly(socket)
      resume(Effect.fail(toNetworkError(error, "bind", hostPort(target.ip, port))))
    }
    binding.set(socket, (error) => {
      if (error !== undefined) return fail(error)
      binding.delete(socket)
      resume(Effect.succeed(socket))
    })
    socket.on("error", onUdpError)
    socket.on("listening", onUdpListening)
    socket.on("message", onMessage)
    try {
      socket.bind({ address: target.host, port, exclusive: true })
    } catch (error) {
      fail(error)
    }
    return Effect.sync(() => {
      binding.delete(socket)
      closeQuietly(socket)
    })
  })

/** The last runtime `handlerRuntime` made, and the services and fiber-ref values it was made of. */
let sharedRuntime:
  | {
    readonly services: ReadonlyArray<unknown>
    readonly refs: ReadonlyArray<unknown>
    readonly runtime: Runtime.Runtime<never>
  }
  | undefined

/**
 * The runtime a socket runs its handler's effects with: the caller's services (without its `Scope`) and fiber refs
 * (without the context they carry, which the runtime sets itself). It is kept for the socket's whole life, so a
 * runtime made of the very same values as the last one made is that one again: sockets bound one after another by
 * the same code (a TURN server's relays, each bound in a fiber of its own) share one, instead of each keeping its
 * binding fiber's references alive.
 */
const handlerRuntime: Effect.Effect<Runtime.Runtime<never>> = Effect.map(Effect.runtime<never>(), (runtime) => {
  const services: Array<unknown> = []
  for (const [key, value] of runtime.context.unsafeMap) {
    if (key !== Scope.Scope.key) services.push(key, value)
  }
  const refs: Array<unknown> = []
  for (const ref of FiberRefs.fiberRefs(runtime.fiberRefs)) {
    const value = FiberRefs.getOrDefault(runtime.fiberRefs, ref)
    // The one holding the context itself (which the runtime sets); the default services are kept (a test's clock).
    if (value !== runtime.context) refs.push(ref, value)
  }
  const same = (a: ReadonlyArray<unknown>, b: ReadonlyArray<unknown>): boolean => {
    if (a.length !== b.length) return false
    for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false
    return true
  }
  if (sharedRuntime !== undefined && same(sharedRuntime.services, services) && same(sharedRuntime.refs, refs)) {
    return sharedRuntime.runtime
  }
  const serviceMap = new Map<string, unknown>()
  for (let i = 0; i < services.length; i += 2) serviceMap.set(services[i] as string, services[i + 1])
  const fiberId = FiberId.runtime(0, 0)
  const locals = new Map<FiberRef.FiberRef<any>, readonly [readonly [FiberId.Single, any]]>()
  for (let i = 0; i < refs.length; i += 2) locals.set(refs[i] as FiberRef.FiberRef<any>, [[fiberId, refs[i + 1]]])
  const shared = Runtime.make({
    context: Context.unsafeMake<never>(serviceMap),
    fiberRefs: FiberRefs.unsafeMake(locals),
    runtimeFlags: runtime.runtimeFlags
  })
  sharedRuntime = { services, refs, runtime: shared }
  return shared
})

/**
 * Binds a UDP socket. The runtime for the handler's effects is taken before the span starts (so no socket keeps a
 * span); their `FiberSet` is made the first time a handler returns one, so a socket whose handler never does (a
 * TURN relay) costs no fiber machinery.
 */
const bindUdp = (
  options: Network.BindOptions = {}
): Effect.Effect<Network.DatagramSocket, Network.NetworkError, Scope.Scope> =>
  Effect.flatMap(handlerRuntime, (runtime) => bindUdpTraced(options, runtime))

const bindUdpTraced = Effect.fn("NodeNetwork.bindUdp", { captureStackTrace: false })(function*(
  options: Network.BindOptions,
  runtime: Runtime.Runtime<never>
) {
  const target = yield* resolveBindOptions(options, "bind")
  const scope = yield* Effect.scope
  const udp = makeUdpSocket(target.family, runtime, scope)
  // `Scope.addFinalizer` rather than `Effect.addFinalizer`: the latter keeps the fiber's references (the span
  // among them) for the socket's whole life.
  const socket = yield* Effect.uninterruptibleMask((restore) =>
    restore(bindPorts(target, "bind", (port) => bindUdpOnce(target, port, udp.onMessage))).pipe(
      Effect.tap((socket) => Scope.addFinalizer(scope, udp.close(socket)))
    )
  )
  return udp.attach(socket)
})

/**
 * One UDP socket's state and operations. Every function here lives as long as the socket, so they are object
 * methods over a few variables (see `makeReceiver`), and what only some sockets need (the handler fibers, the set of
 * pending `send`s) is made when first needed.
 */
const makeUdpSocket = (family: Family, runtime: Runtime.Runtime<never>, scope: Scope.Scope) => {
  let socket: Dgram.Socket | undefined
  let closed = false
  let failures = 0
  let run: RunFork | undefined
  // Node never calls back a send still resolving its address when the socket closes: close fails those itself.
  let inFlight: Set<(error: Network.NetworkError) => void> | undefined
  const handlers = {
    run(effect: Effect.Effect<void>): void {
      if (!closed && run !== undefined) run(effect)
    },
    sent(error: Error | null): void {
      if (error !== null) failures++
    }
  }
  const receiver = makeReceiver(family, handlers.run)
  const operations = {
    close(bound: Dgram.Socket): Effect.Effect<void> {
      return Effect.async<void>((resume) => {
        closed = true
        if (inFlight !== undefined) {
          for (const fail of inFlight) fail(closedError("send", undefined))
          inFlight.clear()
        }
        closeQuietly(bound, () => resume(Effect.void))
      })
    },
    send(data: Uint8Array, to: SocketAddress): Effect.Effect<void, Network.NetworkError> {
      return Effect.async<void, Network.NetworkError>((resume) => {
        if (closed || socket === undefined) return resume(Effect.fail(closedError("send", format(to))))
        if (to.family !== family) {
          return resume(
            Effect.fail(new Network.NetworkError({ reason: "InvalidAddress", operation: "send", address: format(to) }))
          )
        }
        const finish = trackedCompletion(inFlight ??= new Set(), resume)
        try {
          socket.send(data, to.port, to.ip, (error) => {
            finish(error === null ? undefined : toNetworkError(error, "send", format(to)))
          })
        } catch (error) {
          finish(toNetworkError(error, "send", format(to)))
        }
      })
    },
    // The callback is what reports a failed send (Node neither throws nor emits 'error' for one without it).
    unsafeSend(data: Uint8Array, to: SocketAddress): void {
      if (closed || socket === undefined || to.family !== family) {
        failures++
        return
      }
      try {
        socket.send(data, to.port, to.ip, handlers.sent)
      } catch {
        failures++
      }
    },
    sendFailures(): number {
      return failures
    }
  }
  return {
    onMessage: receiver.onMessage,
    close: operations.close,
    attach(bound: Dgram.Socket): Network.DatagramSocket {
      socket = bound
      const address = bound.address()
      return {
        local: { family, ip: canonicalOr(address.address), port: address.port, transport: "udp" },
        send: operations.send,
        unsafeSend: operations.unsafeSend,
        setHandler(next: Network.DatagramHandler): Effect.Effect<void> {
          // The fibers for the handler's effects: made here, in an effect (never `run*` from a callback), with the
          // socket's handler runtime and scope, once per socket.
          const runner = run !== undefined ?
            Effect.void :
            Scope.extend(FiberSet.makeRuntime<never, void, never>(), scope).pipe(
              Effect.provide(runtime),
              Effect.map((fork) => {
                run = fork
              })
            )
          return Effect.zipRight(runner, receiver.setHandler(next))
        },
        sendFailures: operations.sendFailures
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------------------------
// TCP
// ---------------------------------------------------------------------------------------------------------------

const tcpAddress = (ip: string | undefined, port: number | undefined, fallback: Family): TransportAddress => {
  const text = ip ?? (fallback === "IPv6" ? "::" : "0.0.0.0")
  return { family: familyOfText(text, fallback), ip: canonicalOr(text), port: port ?? 0, transport: "tcp" }
}

/**
 * The state of one TCP connection, wired to the Node socket synchronously (so no event can be missed between
 * accept or connect and the fiber that serves the connection). `attach` later gives it a scope.
 */
const makeStreamState = (socket: Net.Socket, family: Family, addresses: Net.Socket = socket) => {
  const local = tcpAddress(addresses.localAddress, addresses.localPort, family)
  const remote = tcpAddress(addresses.remoteAddress, addresses.remotePort, family)
  const remoteText = format(remote)
  let handler: Network.ChunkHandler | undefined
  let pending: Array<Uint8Array> | undefined = []
  let pendingBytes = 0
  let pausedByUs = false
  let run: RunFork | undefined
  let failure: unknown
  const closed = Deferred.unsafeMake<void, Network.NetworkError>(FiberId.none)

  socket.on("data", (chunk: Buffer) => {
    if (handler !== undefined) return deliverChunk(handler, chunk, run)
    if (pending === undefined) return
    pending.push(chunk)
    pendingBytes += chunk.length
    if (pendingBytes >= maxPendingStreamBytes && !pausedByUs) {
      pausedByUs = true
      socket.pause()
    }
  })
  // Node calls a write's callback without an error when the socket was destroyed before the bytes left, so
  // pending `write`s are failed here, on an error and on `close`, before the socket is destroyed.
  const writing = new Set<(error: Network.NetworkError) => void>()
  const failWrites = (error: Network.NetworkError): void => {
    for (const fail of writing) fail(error)
    writing.clear()
  }
  socket.on("error", (error) => {
    failure ??= error
    failWrites(toNetworkError(error, "write", remoteText))
  })
  socket.on("end", () => {
    Deferred.unsafeDone(closed, Exit.void)
  })
  socket.on("close", () => {
    Deferred.unsafeDone(
      closed,
      failure === undefined ? Exit.void : Exit.fail(toNetworkError(failure, "connect", remoteText))
    )
  })

  const close = Effect.sync(() => {
    failWrites(closedError("write", remoteText))
    if (socket.destroyed) return
    socket.end()
    socket.destroy()
  })

  const setHandler = (next: Network.ChunkHandler): Effect.Effect<void> =>
    Effect.sync(() => {
      handler = next
      const queued = pending
      if (queued !== undefined) {
        pending = undefined
        for (const chunk of queued) deliverChunk(handler, chunk, run)
      }
      if (pausedByUs) {
        pausedByUs = false
        socket.resume()
      }
    })

  const write = (data: Uint8Array): Effect.Effect<void, Network.NetworkError> =>
    Effect.async<void, Network.NetworkError>((resume) => {
      if (!socket.writable) return resume(Effect.fail(closedError("write", remoteText)))
      const finish = trackedCompletion(writing, resume)
      try {
        socket.write(data, (error) => finish(error == null ? undefined : toNetworkError(error, "write", remoteText)))
      } catch (error) {
        finish(toNetworkError(error, "write", remoteText))
      }
    })

  const unsafeWrite = (data: Uint8Array): void => {
    if (socket.writable) socket.write(data)
  }

  /** Gives the connection a scope: handler effects run in its `FiberSet`, and closing it closes the socket. */
  const attach = Effect.gen(function*() {
    const set = yield* FiberSet.make()
    run = yield* FiberSet.runtime(set)()
    yield* Effect.addFinalizer(() => close)
    const streamSocket: Network.StreamSocket = {
      local,
      remote,
      write,
      unsafeWrite,
      setHandler,
      closed: Deferred.await(closed),
      close
    }
    return streamSocket
  })

  return { attach, close }
}

type StreamState = ReturnType<typeof makeStreamState>

/**
 * Connects a TCP socket; with `tls`, runs a TLS handshake over it as soon as it connects (in the same tick, so no
 * event of the raw socket goes unheard) and completes on `secureConnect`. An error before the handshake completes
 * is a `TlsFailed`.
 */
const connect = (
  remote: SocketAddress,
  options: Network.ConnectOptions,
  tls?: Network.TlsConnectOptions
): Effect.Effect<StreamState, Network.NetworkError> =>
  Effect.async<StreamState, Network.NetworkError>((resume) => {
    const address = format(remote)
    const connectOptions: Net.TcpNetConnectOpts = {
      host: remote.ip,
      port: remote.port,
      family: remote.family === "IPv6" ? 6 : 4,
      noDelay: true
    }
    if (options.localAddress !== undefined) connectOptions.localAddress = options.localAddress
    if (options.localPort !== undefined) connectOptions.localPort = options.localPort
    let socket: Net.Socket
    let secure: Tls.TLSSocket | undefined
    try {
      socket = Net.connect(connectOptions)
    } catch (error) {
      return resume(Effect.fail(toNetworkError(error, "connect", address)))
    }
    const onError = (error: Error): void => {
      socket.destroy()
      resume(Effect.fail(toNetworkError(error, "connect", address)))
    }
    socket.once("error", onError)
    socket.once("connect", () => {
      socket.removeListener("error", onError)
      socket.setNoDelay(true)
      if (tls === undefined) return resume(Effect.succeed(makeStreamState(socket, remote.family)))
      const raw = socket
      const onTlsError = (error: unknown): void => {
        secure?.destroy()
        raw.destroy()
        resume(
          Effect.fail(new Network.NetworkError({ reason: "TlsFailed", operation: "connect", address, cause: error }))
        )
      }
      // The raw socket's own errors reach the TLS socket; this listener only keeps them from being unhandled.
      raw.on("error", () => {})
      const secureOptions: Tls.ConnectionOptions = {
        socket: raw,
        host: remote.ip,
        rejectUnauthorized: tls.rejectUnauthorized ?? true
      }
      if (tls.serverName !== undefined) secureOptions.servername = tls.serverName
      if (tls.ca !== undefined) secureOptions.ca = typeof tls.ca === "string" ? tls.ca : [...tls.ca]
      try {
        secure = Tls.connect(secureOptions)
      } catch (error) {
        return onTlsError(error)
      }
      const upgraded = secure
      upgraded.once("error", onTlsError)
      upgraded.once("secureConnect", () => {
        upgraded.removeListener("error", onTlsError)
        resume(Effect.succeed(makeStreamState(upgraded, remote.family, raw)))
      })
    })
    return Effect.sync(() => {
      secure?.destroy()
      socket.destroy()
    })
  })

const validRemote = (remote: SocketAddress): boolean => {
  const canonical = canonicalIp(remote.ip)
  return Option.isSome(canonical) && canonical.value.family === remote.family && isPort(remote.port) &&
    remote.port !== 0
}

const connectTcp = Effect.fn("NodeNetwork.connectTcp")(
  function*(remote: SocketAddress, options: Network.ConnectOptions = {}) {
    if (!validRemote(remote)) {
      return yield* new Network.NetworkError({
        reason: "InvalidAddress",
        operation: "connect",
        address: format(remote)
      })
    }
    const state = yield* Effect.uninterruptibleMask((restore) =>
      restore(connect(remote, options)).pipe(Effect.tap((state) => Effect.addFinalizer(() => state.close)))
    )
    return yield* state.attach
  }
)

const connectTls = Effect.fn("NodeNetwork.connectTls")(
  function*(remote: SocketAddress, options: Network.TlsConnectOptions = {}) {
    if (!validRemote(remote)) {
      return yield* new Network.NetworkError({
        reason: "InvalidAddress",
        operation: "connect",
        address: format(remote)
      })
    }
    const state = yield* Effect.uninterruptibleMask((restore) =>
      restore(connect(remote, options, options)).pipe(Effect.tap((state) => Effect.addFinalizer(() => state.close)))
    )
    return yield* state.attach
  }
)

const listenOnce = (
  target: BindTarget,
  port: number,
  createServer: () => Net.Server
): Effect.Effect<Net.Server, Network.NetworkError> =>
  Effect.async<Net.Server, Network.NetworkError>((resume) => {
    const server = createServer()
    let listening = false
    // Permanent, like the UDP one: accept errors after `listen` (EMFILE and the like) must not crash the process.
    server.on("error", (error) => {
      if (listening) return
      listening = true
      server.close()
      resume(Effect.fail(toNetworkError(error, "listen", hostPort(target.ip, port))))
    })
    try {
      const listenOptions: Net.ListenOptions = { host: target.host, port, exclusive: true }
      if (target.family === "IPv6") listenOptions.ipv6Only = true
      server.listen(listenOptions, () => {
        if (listening) return
        listening = true
        resume(Effect.succeed(server))
      })
    } catch (error) {
      listening = true
      server.close()
      resume(Effect.fail(toNetworkError(error, "listen", hostPort(target.ip, port))))
    }
    return Effect.sync(() => server.close())
  })

/**
 * Listens with a `net.Server` (TCP) or a `tls.Server` (TLS: connections arrive on `secureConnection`, after the
 * handshake); the rest is the same for both.
 */
const listenWith = (
  options: Network.BindOptions,
  onConnection: (socket: Network.StreamSocket) => Effect.Effect<void, never, Scope.Scope>,
  createServer: (accept: (socket: Net.Socket) => void) => Net.Server
) =>
  Effect.gen(function*() {
    const target = yield* resolveBindOptions(options, "listen")
    // Finalizers run last-added first: stop accepting, interrupt the connection fibers (each closes its socket),
    // then destroy any socket whose fiber never got to start.
    const live = new Set<Net.Socket>()
    yield* Effect.addFinalizer(() =>
      Effect.sync(() => {
        for (const socket of live) socket.destroy()
        live.clear()
      })
    )
    const set = yield* FiberSet.make()
    const run = yield* FiberSet.runtime(set)()
    let stopped = false

    const accept = (socket: Net.Socket): void => {
      if (stopped) {
        socket.destroy()
        return
      }
      live.add(socket)
      socket.once("close", () => live.delete(socket))
      socket.setNoDelay(true)
      const state = makeStreamState(socket, target.family)
      run(Effect.scoped(Effect.flatMap(state.attach, onConnection)))
    }

    const server = yield* Effect.uninterruptibleMask((restore) =>
      restore(bindPorts(target, "listen", (port) => listenOnce(target, port, () => createServer(accept)))).pipe(
        Effect.tap((server) =>
          Effect.addFinalizer(() =>
            Effect.sync(() => {
              stopped = true
              server.close()
            })
          )
        )
      )
    )

    const address = server.address()
    const local: TransportAddress = typeof address === "object" && address !== null
      ? { family: target.family, ip: canonicalOr(address.address), port: address.port, transport: "tcp" }
      : { family: target.family, ip: target.ip, port: 0, transport: "tcp" }
    const listener: Network.StreamListener = { local }
    return listener
  })

const listenTcp = Effect.fn("NodeNetwork.listenTcp")(function*(
  options: Network.BindOptions,
  onConnection: (socket: Network.StreamSocket) => Effect.Effect<void, never, Scope.Scope>
) {
  return yield* listenWith(options, onConnection, (accept) => Net.createServer({ noDelay: true }, accept))
})

const listenTls = Effect.fn("NodeNetwork.listenTls")(function*(
  options: Network.TlsListenOptions,
  onConnection: (socket: Network.StreamSocket) => Effect.Effect<void, never, Scope.Scope>
) {
  // Check the certificate and key up front, so a bad PEM fails the listen rather than every handshake.
  yield* Effect.try({
    try: () => Tls.createSecureContext({ cert: options.certificate, key: options.key }),
    catch: (cause) =>
      new Network.NetworkError({
        reason: "TlsFailed",
        operation: "listen",
        address: options.address === undefined ? undefined : hostPort(options.address, options.port ?? 0),
        cause
      })
  })
  return yield* listenWith(options, onConnection, (accept) => {
    const server = Tls.createServer({ cert: options.certificate, key: options.key, noDelay: true }, accept)
    // A failed handshake closes that connection; without this listener Node would do the same, but say nothing.
    server.on("tlsClientError", () => {})
    return server
  })
})

// ---------------------------------------------------------------------------------------------------------------
// Interfaces
// ---------------------------------------------------------------------------------------------------------------

const prefixFromNetmask = (netmask: string): number => {
  const canonical = canonicalIp(netmask)
  if (Option.isNone(canonical)) return 0
  let bits = 0
  if (canonical.value.family === "IPv4") {
    for (const part of netmask.split(".")) {
      let octet = Number(part)
      while (octet & 0x80) {
        bits++
        octet = (octet << 1) & 0xff
      }
    }
    return bits
  }
  // IPv6 netmasks are leading ones: count the ones of each group before the first zero bit.
  for (const group of canonical.value.ip.split(":")) {
    if (group === "") break
    let value = parseInt(group, 16)
    for (let i = 0; i < 16 && value & 0x8000; i++) {
      bits++
      value = (value << 1) & 0xffff
    }
    if (bits % 16 !== 0) break
  }
  return bits
}

const familyOrder = (a: Network.IpAddress, b: Network.IpAddress) =>
  a.family === b.family ? 0 : a.family === "IPv4" ? -1 : 1

/** `dns.lookup` (the system resolver, as other programs on the host see names); IP literals are not looked up. */
const lookup = (host: string): Effect.Effect<ReadonlyArray<Network.IpAddress>, Network.NetworkError> => {
  const literal = canonicalIp(host)
  if (Option.isSome(literal)) return Effect.succeed([literal.value])
  return Effect.async<ReadonlyArray<Network.IpAddress>, Network.NetworkError>((resume) => {
    Dns.lookup(host, { all: true }, (error, addresses) => {
      if (error !== null) {
        resume(
          Effect.fail(
            new Network.NetworkError({ reason: "NotFound", operation: "lookup", address: host, cause: error })
          )
        )
        return
      }
      const out: Array<Network.IpAddress> = []
      for (const a of addresses) {
        const canonical = canonicalIp(a.address)
        if (Option.isSome(canonical)) out.push(canonical.value)
      }
      resume(
        out.length === 0
          ? Effect.fail(new Network.NetworkError({ reason: "NotFound", operation: "lookup", address: host }))
          : Effect.succeed(out.sort(familyOrder))
      )
    })
  })
}

const interfaces: Effect.Effect<ReadonlyArray<Network.NetworkInterface>, Network.NetworkError> = Effect.try({
  try: () => {
    const out: Array<Network.NetworkInterface> = []
    for (const [name, infos] of Object.entries(Os.networkInterfaces())) {
      for (const info of infos ?? []) {
        const familyText = String(info.family)
        const family: Family = familyText === "IPv6" || familyText === "6" ? "IPv6" : "IPv4"
        const slash = info.cidr === null ? -1 : info.cidr.indexOf("/")
        const prefixLength = info.cidr !== null && slash >= 0
          ? Number(info.cidr.slice(slash + 1))
          : prefixFromNetmask(info.netmask)
        out.push({ name, family, address: canonicalOr(info.address), prefixLength, internal: info.internal })
      }
    }
    return out
  },
  catch: (error) => toNetworkError(error, "interfaces", undefined)
})

// ---------------------------------------------------------------------------------------------------------------
// UDP multicast
// ---------------------------------------------------------------------------------------------------------------

/**
 * `Network.Service.bindMulticastUdp`: a `dgram` socket created with `reuseAddr` (so several sockets, in this process
 * or in others such as a system mDNS responder, share the port), bound to the family's wildcard at the port, joined
 * to the group with `addMembership(group, interfaceAddress)`, with `setMulticastLoopback(true)` and
 * `setMulticastTTL(255)`; with `interfaceAddress`, `setMulticastInterface` makes that interface the one multicast is
 * sent from too (on Linux, 127.0.0.1 for a group on the loopback interface). Receiving works as for `bindUdp`: one
 * `message` listener calling the handler synchronously, up to `Network.maxPendingDatagrams` kept until the first
 * `setHandler`, IPv6 senders canonicalized. Self-contained on purpose: it shares no state with `bindUdp`.
 */
const bindMulticastUdp = Effect.fn("NodeNetwork.bindMulticastUdp", { captureStackTrace: false })(function*(
  options: Network.MulticastOptions
) {
  const invalid = (address: string) =>
    new Network.NetworkError({ reason: "InvalidAddress", operation: "bind", address })
  const group = canonicalIp(options.group)
  if (
    Option.isNone(group) || !Network.isMulticastAddress(group.value.ip) ||
    (options.family !== undefined && options.family !== group.value.family)
  ) {
    return yield* invalid(options.group)
  }
  const family = group.value.family
  const port = options.port
  if (!(Number.isInteger(port) && port >= 1 && port <= 65535)) return yield* invalid(hostPort(group.value.ip, port))
  const iface = options.interfaceAddress
  if (iface !== undefined) {
    const canonical = canonicalIp(stripZone(iface))
    if (Option.isNone(canonical) || canonical.value.family !== family) return yield* invalid(iface)
  }
  const wildcard = family === "IPv6" ? "::" : "0.0.0.0"
  const where = hostPort(group.value.ip, port)
  const handlers = yield* FiberSet.make<void, never>()
  const run = yield* FiberSet.runtime(handlers)<never>()
  let handler: Network.DatagramHandler | undefined
  let pending: Array<Network.Datagram> | undefined = []
  let closed = false
  let sendFailures = 0
  const onMessage = (data: Buffer, rinfo: Dgram.RemoteInfo): void => {
    const remote: SocketAddress = {
      family,
      ip: family === "IPv6" ? canonicalOr(rinfo.address) : rinfo.address,
      port: rinfo.port
    }
    if (handler !== undefined) deliverDatagram(handler, data, remote, run)
    else if (pending !== undefined && pending.length < Network.maxPendingDatagrams) pending.push({ data, remote })
  }
  const socket = yield* Effect.acquireRelease(
    Effect.async<Dgram.Socket, Network.NetworkError>((resume) => {
      const socket = Dgram.createSocket(
        family === "IPv6" ? { type: "udp6", reuseAddr: true, ipv6Only: true } : { type: "udp4", reuseAddr: true }
      )
      let settled = false
      const fail = (error: unknown): void => {
        if (settled) return
        settled = true
        closeQuietly(socket)
        resume(Effect.fail(toNetworkError(error, "bind", where)))
      }
      // Stays for the socket's life: an 'error' event without a listener would crash the process.
      socket.on("error", fail)
      socket.on("message", onMessage)
      try {
        socket.bind({ address: wildcard, port }, () => {
          try {
            socket.addMembership(group.value.ip, iface)
            socket.setMulticastLoopback(true)
            socket.setMulticastTTL(255)
            if (iface !== undefined) socket.setMulticastInterface(iface)
          } catch (error) {
            return fail(error)
          }
          settled = true
          resume(Effect.succeed(socket))
        })
      } catch (error) {
        fail(error)
      }
      return Effect.sync(() => {
        if (!settled) closeQuietly(socket)
      })
    }),
    (socket) =>
      Effect.sync(() => {
        closed = true
        handler = undefined
        pending = undefined
        closeQuietly(socket)
      })
  )
  const local: TransportAddress = { family, ip: wildcard, port: socket.address().port, transport: "udp" }
  const check = (to: SocketAddress): Network.NetworkError | undefined =>
    closed
      ? closedError("send", hostPort(to.ip, to.port))
      : to.family !== family
      ? invalid(hostPort(to.ip, to.port))
      : undefined
  const datagramSocket: Network.DatagramSocket = {
    local,
    send: (data, to) =>
      Effect.async<void, Network.NetworkError>((resume) => {
        const error = check(to)
        if (error !== undefined) return resume(Effect.fail(error))
        try {
          socket.send(data, to.port, to.ip, (cause) =>
            resume(
              cause === null || cause === undefined
                ? Effect.void
                : Effect.fail(toNetworkError(cause, "send", hostPort(to.ip, to.port)))
            ))
        } catch (cause) {
          resume(Effect.fail(toNetworkError(cause, "send", hostPort(to.ip, to.port))))
        }
      }),
    unsafeSend: (data, to) => {
      if (check(to) !== undefined) {
        sendFailures++
        return
      }
      try {
        socket.send(data, to.port, to.ip, (cause) => {
          if (cause !== null && cause !== undefined) sendFailures++
        })
      } catch {
        sendFailures++
      }
    },
    setHandler: (next) =>
      Effect.sync(() => {
        if (closed) return
        handler = next
        const queued = pending
        pending = undefined
        if (queued !== undefined) {
          for (const datagram of queued) deliverDatagram(next, datagram.data, datagram.remote, run)
        }
      }),
    sendFailures: () => sendFailures
  }
  return datagramSocket
})

// ---------------------------------------------------------------------------------------------------------------
// Service
// ---------------------------------------------------------------------------------------------------------------

/**
 * The `Network` service over Node's sockets. It holds no state of its own (every socket belongs to the scope that
 * opened it), so one value serves any number of users.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make: Effect.Effect<Network.Service> = Effect.sync(() => ({
  bindUdp,
  bindMulticastUdp,
  connectTcp,
  connectTls,
  listenTcp,
  listenTls,
  interfaces,
  lookup
}))

/**
 * Provides `Network` with real sockets.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer: Layer.Layer<Network.Network> = Layer.effect(Network.Network, make)
