/**
 * `TurnServerConfig`: the turnserver.conf-style file, flags over file, the rules of `resolve`, and the environment
 * (`config`, `layerConfig`, with `ConfigProvider.fromMap`).
 */
import { assert, describe, it } from "@effect/vitest"
import { ConfigProvider, Context, Duration, Effect, Either, Fiber, Layer, Redacted, TestClock } from "effect"
import * as Network from "../src/Network.js"
import * as TurnClient from "../src/TurnClient.js"
import * as TurnServer from "../src/TurnServer.js"
import * as TurnServerConfig from "../src/TurnServerConfig.js"
import * as VirtualNetwork from "../src/VirtualNetwork.js"

/** Settings with secrets revealed, for exact comparison (two `Redacted`s compare equal whatever they hold). */
const reveal = (settings: TurnServerConfig.Settings) => ({
  ...settings,
  users: settings.users.map((u) => `${u.name}:${Redacted.value(u.password)}`),
  authSecrets: settings.authSecrets.map(Redacted.value)
})

const file = `# effect-ice turn server
listen=192.0.2.1:3478
listen = [2001:db8::1]:3478
tls-listen=192.0.2.1
cert=/etc/turn/cert.pem
key="/etc/turn/key.pem"
realm=example.org
  # indented comment
user=alice:pa:ss=word
user=bob:hunter2
auth-secret=s3cret
relay-ip=192.0.2.10
relay-ip=2001:DB8::10
relay-ports=49152-65535
external-ip=203.0.113.1
allow-peer=127.0.0.0/8
deny-peer=198.51.100.0/24
max-allocations=500
user-quota=5
max-bps=125000
unauthenticated-rate-limit=20
lifetime=300
max-lifetime=1800
software=
no-tcp
metrics-port=9641
`

describe("TurnServerConfig.parseConfigFile", () => {
  it("reads every setting: name=value, a bare flag, comments, quotes, repeated names accumulating", () => {
    const settings = Either.getOrThrow(TurnServerConfig.parseConfigFile(file))
    assert.deepStrictEqual(reveal(settings), {
      listen: [
        { family: "IPv4", ip: "192.0.2.1", port: 3478 },
        { family: "IPv6", ip: "2001:db8::1", port: 3478 }
      ],
      tlsListen: [{ family: "IPv4", ip: "192.0.2.1", port: 5349 }],
      cert: "/etc/turn/cert.pem",
      key: "/etc/turn/key.pem",
      realm: "example.org",
      users: ["alice:pa:ss=word", "bob:hunter2"],
      authSecrets: ["s3cret"],
      relayIps: ["192.0.2.10", "2001:db8::10"],
      relayPorts: [49152, 65535],
      externalIps: ["203.0.113.1"],
      allowPeers: ["127.0.0.0/8"],
      denyPeers: ["198.51.100.0/24"],
      maxAllocations: 500,
      userQuota: 5,
      maxBps: 125000,
      unauthenticatedRateLimit: 20,
      lifetime: 300,
      maxLifetime: 1800,
      software: "",
      noTcp: true,
      metricsPort: 9641
    })
  })

  it("says which line is wrong and why", () => {
    const error = (text: string) => {
      const result = TurnServerConfig.parseConfigFile(text, "/etc/turn.conf")
      return Either.isLeft(result) ? result.left.message : "no error"
    }
    assert.strictEqual(error("realm=a\n\nlisten-port=3478\n"), "/etc/turn.conf:3: unknown setting \"listen-port\"")
    assert.strictEqual(
      error("# x\nlisten=192.0.2.1:99999"),
      "/etc/turn.conf:2: expected IP:PORT, [IPv6]:PORT or IP, got \"192.0.2.1:99999\""
    )
    assert.strictEqual(error("user=alice"), "/etc/turn.conf:1: expected NAME:PASSWORD")
    assert.strictEqual(error("realm"), "/etc/turn.conf:1: realm needs a value (realm=...)")
    assert.strictEqual(error("max-bps=-1"), "/etc/turn.conf:1: expected a whole number, got \"-1\"")
    assert.strictEqual(
      error("relay-ports=6000-5000"),
      "/etc/turn.conf:1: expected LO-HI with 1 <= LO <= HI <= 65535, got \"6000-5000\""
    )
    assert.strictEqual(
      error("allow-peer=10.0.0.0/33"),
      "/etc/turn.conf:1: expected an address range such as 192.0.2.0/24 or 2001:db8::/32, got \"10.0.0.0/33\""
    )
    assert.strictEqual(error("no-tcp=maybe"), "/etc/turn.conf:1: expected true or false, got \"maybe\"")
    assert.strictEqual(error("metrics-port=70000"), "/etc/turn.conf:1: expected a port (0-65535), got 70000")
    assert.strictEqual(error("lifetime=0"), "/etc/turn.conf:1: expected more than 0, got 0")
  })
})

describe("TurnServerConfig.merge", () => {
  it("flags win: a given flag replaces the file's value or list; the rest of the file stays", () => {
    const fromFile = Either.getOrThrow(
      TurnServerConfig.parseConfigFile("realm=file.org\nuser=a:1\nuser=b:2\nuser-quota=3\nallow-peer=10.0.0.0/8\n")
    )
    const fromFlags = Either.getOrThrow(
      TurnServerConfig.parseConfigFile("realm=flag.org\nuser=c:3\nmax-bps=10\n")
    )
    const merged = reveal(TurnServerConfig.merge(fromFile, fromFlags))
    assert.deepStrictEqual(
      [merged.realm, merged.users, merged.userQuota, merged.allowPeers, merged.maxBps, merged.listen],
      ["flag.org", ["c:3"], 3, ["10.0.0.0/8"], 10, []]
    )
  })
})

describe("TurnServerConfig.resolve", () => {
  const settings = (text: string) => Either.getOrThrow(TurnServerConfig.parseConfigFile(text))

  it("defaults: 127.0.0.1:3478, UDP and TCP, only the given values", () => {
    assert.deepStrictEqual(
      TurnServerConfig.resolve(settings("user=alice:secret")),
      Either.right({ addresses: ["127.0.0.1"], port: 3478, tcp: true, users: { alice: "secret" } })
    )
  })

  it("maps every setting to its server option", () => {
    const options = Either.getOrThrow(
      TurnServerConfig.resolve(settings(file), { certificate: "CERT", key: "KEY" })
    )
    assert.deepStrictEqual(options, {
      addresses: ["192.0.2.1", "2001:db8::1"],
      port: 3478,
      tcp: false,
      users: { alice: "pa:ss=word", bob: "hunter2" },
      tls: { certificate: "CERT", key: "KEY", addresses: ["192.0.2.1"], port: 5349 },
      realm: "example.org",
      restSecrets: ["s3cret"],
      relayAddresses: ["192.0.2.10", "2001:db8::10"],
      relayPortRange: [49152, 65535],
      externalAddresses: ["203.0.113.1"],
      allowPeers: ["127.0.0.0/8"],
      denyPeers: ["198.51.100.0/24"],
      totalQuota: 500,
      userQuota: 5,
      maxBytesPerSecond: 125000,
      unauthenticatedRateLimit: 20,
      defaultLifetime: Duration.seconds(300),
      maxLifetime: Duration.seconds(1800),
      software: ""
    })
  })

  it("cert and key without tls-listen: TLS on the listen addresses and the default port (left to the server)", () => {
    const options = Either.getOrThrow(
      TurnServerConfig.resolve(settings("user=a:b\ncert=c.pem\nkey=k.pem"), { certificate: "C", key: "K" })
    )
    assert.deepStrictEqual(options.tls, { certificate: "C", key: "K" })
  })

  it("refuses what cannot work, naming the setting", () => {
    const error = (text: string, pem?: { certificate: string; key: string }) => {
      const result = TurnServerConfig.resolve(settings(text), pem)
      return Either.isLeft(result) ? result.left.message : "no error"
    }
    assert.strictEqual(
      error("user=a:b\nlisten=0.0.0.0:3478"),
      "relay-ip: listening on 0.0.0.0 needs relay-ip (the specific IP relayed sockets are bound on)"
    )
    assert.strictEqual(error("user=a:b\nlisten=0.0.0.0:3478\nrelay-ip=192.0.2.10"), "no error")
    assert.strictEqual(
      error("user=a:b\nlisten=192.0.2.1:3478\nlisten=192.0.2.2:3479"),
      "listen: every address must use the same port"
    )
    assert.strictEqual(error("listen=192.0.2.1"), "user: give at least one user (NAME:PASSWORD) or auth-secret")
    assert.strictEqual(error("auth-secret=x"), "no error")
    assert.strictEqual(error("user=a:b\ncert=c.pem"), "cert: cert and key go together")
    assert.strictEqual(error("user=a:b\ntls-listen=192.0.2.1:5349"), "tls-listen: needs cert and key")
  })

  it.effect("toOptions reads the certificate and key with the given reader, and says which one it could not read", () =>
    Effect.gen(function*() {
      const files: Record<string, string> = { "c.pem": "CERT", "k.pem": "KEY" }
      const readFile = (path: string) =>
        path in files ? Effect.succeed(files[path]!) : Effect.fail(new Error(`no such file ${path}`))
      const options = yield* TurnServerConfig.toOptions(settings("user=a:b\ncert=c.pem\nkey=k.pem"), readFile)
      assert.deepStrictEqual(options.tls, { certificate: "CERT", key: "KEY" })
      const error = yield* Effect.flip(
        TurnServerConfig.toOptions(settings("user=a:b\ncert=c.pem\nkey=missing.pem"), readFile)
      )
      assert.strictEqual(error.message, "key: cannot read missing.pem (no such file missing.pem)")
    }))
})

describe("TurnServerConfig.config", () => {
  const withEnv = (env: Record<string, string>) =>
    Effect.withConfigProvider(ConfigProvider.fromMap(new Map(Object.entries(env))))

  it.effect("reads TURN_* variables, lists comma-separated, secrets redacted", () =>
    Effect.gen(function*() {
      const options = yield* TurnServerConfig.config.pipe(withEnv({
        TURN_LISTEN: "192.0.2.1:3479, 192.0.2.2:3479",
        TURN_REALM: "example.org",
        TURN_USERS: "alice:secret,bob:hunter2",
        TURN_AUTH_SECRETS: "one,two",
        TURN_RELAY_IPS: "192.0.2.10",
        TURN_EXTERNAL_IPS: "203.0.113.1",
        TURN_ALLOW_PEERS: "127.0.0.0/8",
        TURN_MAX_ALLOCATIONS: "20",
        TURN_MAX_BPS: "1000",
        TURN_NO_TCP: "true",
        TURN_TLS_CERT_PEM: "CERT",
        TURN_TLS_KEY_PEM: "KEY"
      }))
      assert.deepStrictEqual(options, {
        addresses: ["192.0.2.1", "192.0.2.2"],
        port: 3479,
        tcp: false,
        users: { alice: "secret", bob: "hunter2" },
        tls: { certificate: "CERT", key: "KEY" },
        realm: "example.org",
        restSecrets: ["one", "two"],
        relayAddresses: ["192.0.2.10"],
        externalAddresses: ["203.0.113.1"],
        allowPeers: ["127.0.0.0/8"],
        totalQuota: 20,
        maxBytesPerSecond: 1000
      })
      const settings = yield* TurnServerConfig.settingsConfig.pipe(withEnv({ TURN_USERS: "a:b", TURN_NO_TCP: "false" }))
      assert.deepStrictEqual([settings.noTcp, settings.users.length], [undefined, 1])
    }))

  it.effect("an invalid or missing value is a ConfigError naming the variable", () =>
    Effect.gen(function*() {
      const bad = yield* Effect.flip(TurnServerConfig.config.pipe(withEnv({ TURN_USERS: "a:b", TURN_LISTEN: "nope" })))
      assert.include(String(bad), "TURN_LISTEN")
      assert.include(String(bad), "expected IP:PORT, [IPv6]:PORT or IP, got \"nope\"")
      const none = yield* Effect.flip(TurnServerConfig.config.pipe(withEnv({})))
      assert.include(String(none), "give at least one user (NAME:PASSWORD) or auth-secret")
    }))

  it.scoped("layerConfig starts a server from the environment that relays on TURN_RELAY_IPS, advertising TURN_EXTERNAL_IPS", () =>
    Effect.gen(function*() {
      const world = yield* VirtualNetwork.make()
      const host = yield* world.addHost({ name: "server", addresses: ["192.0.2.1", "192.0.2.10"] })
      const clientHost = yield* world.addHost({ name: "client", addresses: ["198.51.100.7"] })
      const env = new Map([
        ["TURN_LISTEN", "192.0.2.1:3478"],
        ["TURN_USERS", "alice:secret"],
        ["TURN_RELAY_IPS", "192.0.2.10"],
        ["TURN_EXTERNAL_IPS", "203.0.113.99"]
      ])
      const server = yield* Layer.build(
        TurnServerConfig.layerConfig.pipe(
          Layer.provide(Layer.succeed(Network.Network, host.network)),
          Layer.provide(Layer.setConfigProvider(ConfigProvider.fromMap(env)))
        )
      ).pipe(Effect.map(Context.get(TurnServer.TurnServer)))
      assert.deepStrictEqual(server.endpoints.map((e) => `${e.transport} ${e.ip}:${e.port}`), [
        "udp 192.0.2.1:3478",
        "tcp 192.0.2.1:3478"
      ])
      // Allocate, look, release (Refresh with LIFETIME 0), all in virtual time.
      const fiber = yield* Effect.fork(
        Effect.scoped(Effect.gen(function*() {
          const allocation = yield* TurnClient.allocate({
            server: { family: "IPv4", ip: "192.0.2.1", port: 3478 },
            auth: { mode: "static", username: "alice", password: "secret" }
          })
          return [allocation.relayed.ip, server.allocations().map((a) => [a.username, a.relaySocket.ip])]
        })).pipe(Effect.provideService(Network.Network, clientHost.network))
      )
      yield* TestClock.adjust("1 second")
      assert.deepStrictEqual(yield* Fiber.join(fiber), ["203.0.113.99", [["alice", "192.0.2.10"]]])
      assert.strictEqual(server.allocationCount(), 0)
    }))
})
