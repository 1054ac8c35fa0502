#!/usr/bin/env python3
"""Alert latency, push to subscriber, of the hub and of NATS JetStream, measured the same way by
the same Python client in one run.

    python3 tests/interop/alert_latency.py --hub target/release/quotahub \
        [--subscribers 1,100,1000] [--messages 200] [--nats nats://127.0.0.1:4222]

The hub: this script starts `quotahub serve` on a temporary data directory with development
certificates (or, with `--address` and `--pki-dir`, uses a running hub on development
certificates). N discipline subscriptions (140100) to PAID_NOT_ON_ROLL each open a
`FeedService.StreamingSubscribe` stream and acknowledge every event on it; finance (140100) pushes,
one at a time, a payroll line for someone on no roll at an institution the staffing office
registered (`FinanceService.PushPayrollLine`, a new person each time), and each push raises one
finding, so one alert event for every subscriber.

NATS: a JetStream stream on file storage and N durable push consumers with explicit acks, one ack
sent per message; the publisher's `js.publish` (which waits for the stream's acknowledgement) of a
message as large as the hub's alert event.

Latency is the time from the start of the push (or publish) call to each subscriber receiving the
event for it, on one clock in one process; the next push starts once every subscriber has it.
Pushes to the hub and publishes to NATS alternate, one each, so that both meet the machine's load
of the same moments; `--warmup` of each come first, untimed.
Prints p50 and p99 per N as a Markdown table, with the hub's p99 over NATS's. Without a reachable
NATS server with JetStream it says so and measures the hub alone. Exits non-zero when an event
does not reach a subscriber within `--timeout` seconds or a push is refused.

Needs grpcio and grpcio-tools (the contract is compiled with protoc at run time), and nats-py for
the NATS half.
"""

import argparse
import asyncio
import datetime
import itertools
import os
import pathlib
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse

from contract import compile_contract

# GB 11643: weights of the 17 digits and the check character for each remainder.
RESIDENT_WEIGHTS = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2]
RESIDENT_CHECK = "10X98765432"
# GB 32100: the code's alphabet (no I, O, S, V, Z) and the weights of its 17 characters.
USCC_ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"
USCC_WEIGHTS = [1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28]

# Subscriber streams (or NATS consumers) per connection, as the Rust bench multiplexes them.
STREAMS_PER_CONNECTION = 100
# Setup calls in flight at once; refusals for the agency's call rate are retried.
SETUP_CONCURRENCY = 50
JURISDICTION = "140100"


def resident_id(n):
    """A valid resident ID of division 999999 (no roll anywhere has it), distinct for each n."""
    birth = datetime.date(1990, 1, 1) + datetime.timedelta(days=n // 1000)
    body = f"999999{birth:%Y%m%d}{n % 1000:03d}"
    return body + RESIDENT_CHECK[sum(int(d) * w for d, w in zip(body, RESIDENT_WEIGHTS)) % 11]


def uscc(first17):
    total = sum(USCC_ALPHABET.index(c) * w for c, w in zip(first17, USCC_WEIGHTS))
    return first17 + USCC_ALPHABET[(31 - total % 31) % 31]


def percentile(sorted_values, q):
    """Nearest rank, as `quotahub bench` reports it."""
    return sorted_values[round((len(sorted_values) - 1) * q)]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Phase:
    """The receipts of one measurement: which push is in flight, when it started, who has it."""

    def __init__(self, subscribers):
        self.subscribers = subscribers
        self.key = None
        self.started = 0.0
        self.seen = 0
        self.done = asyncio.Event()
        self.latencies = []
        self.recording = False
        self.strays = 0
        self.failure = None

    def fail(self, failure):
        """A subscriber's stream broke: stop waiting for it."""
        self.failure = self.failure or failure
        self.done.set()

    def begin(self, key, recording):
        self.key = key
        self.seen = 0
        self.recording = recording
        self.done.clear()
        self.started = time.perf_counter()

    def receive(self, key):
        now = time.perf_counter()
        if key != self.key:
            # An event for no push in flight: the one-at-a-time protocol broke.
            self.strays += 1
            return
        if self.recording:
            self.latencies.append(now - self.started)
        self.seen += 1
        if self.seen == self.subscribers:
            self.done.set()


def summary(latencies):
    values = sorted(latencies)
    return percentile(values, 0.5) * 1000, percentile(values, 0.99) * 1000


# ------------------------------------------------------------------------------------------------
# The hub


class Hub:
    def __init__(self, args, stubs):
        self.args = args
        self.stubs = stubs
        self.process = None
        self.scratch = None
        self.address = args.address
        self.pki = pathlib.Path(args.pki_dir) if args.pki_dir else None
        self.institution = uscc(f"11{JURISDICTION}MB{os.getpid() % 10_000_000:07d}")
        self.run = f"{os.getpid()}-{int(time.time())}"
        self.ghosts = 0
        self.event_bytes = []

    def start(self):
        if self.address:
            return
        self.scratch = tempfile.TemporaryDirectory(prefix="quotahub-alert-latency-")
        port = free_port()
        self.address = f"127.0.0.1:{port}"
        self.pki = pathlib.Path(self.scratch.name) / "pki"
        command = [
            self.args.hub,
            "serve",
            "--data-dir",
            self.scratch.name,
            "--listen",
            self.address,
            # The development console would take its fixed port; give it a free one.
            "--console-listen",
            f"127.0.0.1:{free_port()}",
        ]
        if self.args.database_url:
            command += ["--database-url", self.args.database_url]
        self.log = open(pathlib.Path(self.scratch.name) / "hub.log", "w")
        self.process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=self.log, text=True
        )
        # It prints where it listens once it serves.
        for line in self.process.stdout:
            if line.startswith("quotahub listening on"):
                break
        else:
            raise SystemExit("the hub did not start")

    def hub_log(self):
        self.log.flush()
        return (pathlib.Path(self.scratch.name) / "hub.log").read_text()[-3000:]

    def stop(self):
        if self.process:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
            self.log.close()
        if self.scratch:
            self.scratch.cleanup()

    def channel(self, kind):
        import grpc

        read = lambda name: (self.pki / name).read_bytes()
        credentials = grpc.ssl_channel_credentials(
            root_certificates=read("ca.pem"),
            private_key=read(f"{JURISDICTION}-{kind}-key.pem"),
            certificate_chain=read(f"{JURISDICTION}-{kind}.pem"),
        )
        return grpc.aio.secure_channel(
            self.address,
            credentials,
            options=[
                ("grpc.ssl_target_name_override", "localhost"),
                # A connection of its own: grpc shares one between equal channels otherwise.
                ("grpc.use_local_subchannel_pool", 1),
            ],
        )

    async def call(self, method, request):
        """A setup call; refusals for the call rate are retried after the delay they give."""
        import grpc

        for _ in range(200):
            try:
                return await method(request, timeout=30)
            except grpc.aio.AioRpcError as error:
                if error.code() != grpc.StatusCode.RESOURCE_EXHAUSTED:
                    raise
                await asyncio.sleep(0.1)
        raise SystemExit("the hub refused setup calls for the call rate for 20 s")

    async def register_institution(self):
        from quotahub.v1 import common_pb2, staffing_pb2, staffing_pb2_grpc

        async with self.channel("staffing-office") as channel:
            result = await staffing_pb2_grpc.StaffingServiceStub(channel).PushInstitution(
                staffing_pb2.Institution(
                    record_id=f"alert-latency-{self.run}",
                    uscc=self.institution,
                    name="告警时延测试机关",
                    jurisdiction=JURISDICTION,
                    kind=common_pb2.InstitutionKind.Value("INSTITUTION_KIND_ORGAN"),
                    grade=common_pb2.Grade.Value("GRADE_DIVISION_PRINCIPAL"),
                    status=common_pb2.InstitutionStatus.Value("INSTITUTION_STATUS_ACTIVE"),
                    approval_document="并编发〔2020〕1号",
                    established_on="2020-01-01",
                ),
                timeout=30,
            )
        if result.outcome != common_pb2.RecordOutcome.Value("RECORD_OUTCOME_ACCEPTED"):
            raise SystemExit(f"the institution was refused: {result}")

    async def rounds(self, count):
        """Sets up `count` subscribers, yields their `Phase`, then makes one push per `asend`
        (whether to record it) and yields once every subscriber has its alert."""
        import grpc
        from google.protobuf import timestamp_pb2
        from quotahub.v1 import common_pb2, feed_pb2, feed_pb2_grpc, finance_pb2, finance_pb2_grpc
        from quotahub.v1 import findings_pb2

        phase = Phase(count)
        channels = [
            self.channel("discipline") for _ in range(-(-count // STREAMS_PER_CONNECTION))
        ]
        names = [f"alert-latency-{self.run}-{count}-{i}" for i in range(count)]
        gate = asyncio.Semaphore(SETUP_CONCURRENCY)
        code = findings_pb2.RuleCode.Value("RULE_CODE_PAID_NOT_ON_ROLL")
        since = timestamp_pb2.Timestamp()
        since.GetCurrentTime()
        ready = []
        calls = []

        async def subscriber(i):
            feed = feed_pb2_grpc.FeedServiceStub(channels[i // STREAMS_PER_CONNECTION])
            async with gate:
                await self.call(
                    feed.PutSubscription,
                    feed_pb2.PutSubscriptionRequest(
                        subscription=feed_pb2.Subscription(
                            name=names[i],
                            filter=feed_pb2.SubscriptionFilter(codes=[code]),
                            content_mode=feed_pb2.ContentMode.Value("CONTENT_MODE_FULL"),
                        )
                    ),
                )
            opened = asyncio.Event()
            ready.append(opened)
            while True:
                async with gate:
                    call = feed.StreamingSubscribe()
                    await call.write(
                        feed_pb2.StreamingSubscribeRequest(
                            subscribe=feed_pb2.SubscribeRequest(
                                name=names[i],
                                since=since,
                                # The first heartbeat says the stream is live; then events come
                                # more often than that.
                                heartbeat_ms=1000,
                            )
                        )
                    )
                    try:
                        message = await call.read()
                        break
                    except grpc.aio.AioRpcError as error:
                        if error.code() != grpc.StatusCode.RESOURCE_EXHAUSTED:
                            raise
                    await asyncio.sleep(0.1)
            calls.append(call)
            opened.set()
            try:
                while message is not grpc.aio.EOF:
                    kind = message.WhichOneof("message")
                    if kind == "event":
                        phase.receive(message.event.finding.subject)
                        if i == 0:
                            self.event_bytes.append(message.event.ByteSize())
                        # The acknowledgement rides on the stream, one per event.
                        await call.write(
                            feed_pb2.StreamingSubscribeRequest(ack_seq=message.event.seq)
                        )
                    elif kind == "drain":
                        phase.fail(f"the hub drained a stream: {message.drain.reason}")
                    message = await call.read()
                phase.fail(f"subscriber {i}'s stream ended")
            except grpc.aio.AioRpcError as error:
                if error.code() != grpc.StatusCode.CANCELLED:
                    phase.fail(f"subscriber {i}'s stream failed: {error.code()} {error.details()}")

        tasks = [asyncio.create_task(subscriber(i)) for i in range(count)]
        try:
            while len(ready) < count or not all(e.is_set() for e in ready):
                failed = [t for t in tasks if t.done()]
                if failed:
                    failed[0].result()
                    raise SystemExit("a subscriber's stream ended before the pushes")
                await asyncio.sleep(0.05)

            async with self.channel("finance") as finance:
                push = finance_pb2_grpc.FinanceServiceStub(finance).PushPayrollLine
                accepted = common_pb2.RecordOutcome.Value("RECORD_OUTCOME_ACCEPTED")
                recording = yield phase
                for sample in itertools.count():
                    n = self.ghosts
                    self.ghosts += 1
                    resident = resident_id(n)
                    line = finance_pb2.PayrollLine(
                        record_id=f"alert-latency-{self.run}-{n}",
                        period="2024-06",
                        institution_uscc=self.institution,
                        resident_id=resident,
                        name="幽灵",
                        gross_fen=500_000,
                    )
                    phase.begin(resident, recording)
                    result = await push(line, timeout=30)
                    if result.outcome != accepted:
                        raise SystemExit(f"the ghost push was refused: {result}")
                    try:
                        await asyncio.wait_for(phase.done.wait(), self.args.timeout)
                    except asyncio.TimeoutError:
                        raise SystemExit(
                            f"hub, {count} subscribers: {phase.seen} of them had the alert "
                            f"of push {sample} after {self.args.timeout} s"
                        )
                    if phase.failure:
                        raise SystemExit(f"hub, {count} subscribers: {phase.failure}")
                    if phase.strays:
                        raise SystemExit(f"hub, {count} subscribers: an event for no push")
                    recording = yield phase
        finally:
            for call in calls:
                call.cancel()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            # Leave no subscription behind to weigh on the next phase.
            async def delete(i):
                feed = feed_pb2_grpc.FeedServiceStub(channels[i // STREAMS_PER_CONNECTION])
                async with gate:
                    try:
                        await self.call(
                            feed.DeleteSubscription, feed_pb2.SubscriptionName(name=names[i])
                        )
                    except grpc.aio.AioRpcError:
                        pass

            await asyncio.gather(*(delete(i) for i in range(count)))
            for channel in channels:
                await channel.close()


# ------------------------------------------------------------------------------------------------
# NATS JetStream


class Nats:
    def __init__(self, url):
        self.url = url
        self.stream = f"QUOTAHUB_ALERT_LATENCY_{os.getpid()}"
        self.subject = f"quotahub.alert_latency.{os.getpid()}"
        self.connections = []

    async def connect(self):
        """None when the server answers with JetStream, else why not."""
        try:
            import nats
        except ImportError:
            return "nats-py is not installed (pip install nats-py)"
        # nats-py retries a refused first connection without end: ask the port first.
        address = urllib.parse.urlsplit(self.url)
        try:
            socket.create_connection((address.hostname, address.port or 4222), timeout=2).close()
        except OSError as error:
            return f"cannot connect to {self.url}: {error}"
        try:
            connection = await asyncio.wait_for(self.connection(), 10)
        except Exception as error:  # any failure to reach it means: hub only
            return f"cannot connect to {self.url}: {error!r}"
        self.connections.append(connection)
        self.js = connection.jetstream()
        try:
            await self.js.account_info()
        except Exception as error:
            return f"{self.url} has no JetStream: {error!r}"
        from nats.js.api import StorageType, StreamConfig

        try:
            await self.js.delete_stream(self.stream)
        except Exception:
            pass
        await self.js.add_stream(
            StreamConfig(
                name=self.stream,
                subjects=[self.subject],
                # On disk, as the hub keeps its feed.
                storage=StorageType.FILE,
                max_msgs=1_000_000,
            )
        )
        return None

    async def connection(self):
        import nats

        async def quiet(error):
            # Failures surface as exceptions where they matter; no tracebacks on stderr.
            pass

        return await nats.connect(
            self.url,
            connect_timeout=2,
            max_reconnect_attempts=0,
            allow_reconnect=False,
            error_cb=quiet,
        )

    async def close(self):
        try:
            await self.js.delete_stream(self.stream)
        except Exception:
            pass
        for connection in self.connections:
            await connection.close()

    async def rounds(self, count, size, timeout):
        """As `Hub.rounds`: one publish of a message of `size()` bytes per `asend`."""
        from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

        phase = Phase(count)
        connections = [
            await self.connection() for _ in range(-(-count // STREAMS_PER_CONNECTION))
        ]
        gate = asyncio.Semaphore(SETUP_CONCURRENCY)
        names = [f"alert_latency_{os.getpid()}_{count}_{i}" for i in range(count)]
        subscriptions = []

        async def handler(message):
            phase.receive(message.data[:16])
            # Explicit acknowledgement, one per message.
            await message.ack()

        async def subscriber(i):
            js = connections[i // STREAMS_PER_CONNECTION].jetstream()
            async with gate:
                subscriptions.append(
                    await js.subscribe(
                        self.subject,
                        stream=self.stream,
                        durable=names[i],
                        cb=handler,
                        manual_ack=True,
                        config=ConsumerConfig(
                            ack_policy=AckPolicy.EXPLICIT, deliver_policy=DeliverPolicy.NEW
                        ),
                    )
                )

        try:
            await asyncio.gather(*(subscriber(i) for i in range(count)))
            for connection in connections:
                await connection.flush()
            recording = yield phase
            for sample in itertools.count():
                key = f"{count:06d}-{sample:09d}".encode()
                payload = key + b"x" * max(0, size() - len(key))
                phase.begin(key, recording)
                await self.js.publish(self.subject, payload)
                try:
                    await asyncio.wait_for(phase.done.wait(), timeout)
                except asyncio.TimeoutError:
                    raise SystemExit(
                        f"NATS, {count} subscribers: {phase.seen} of them had message "
                        f"{sample} after {timeout} s"
                    )
                if phase.strays:
                    raise SystemExit(f"NATS, {count} subscribers: a message for no publish")
                recording = yield phase
        finally:
            for subscription in subscriptions:
                try:
                    await subscription.unsubscribe()
                except Exception:
                    pass

            async def delete(name):
                async with gate:
                    try:
                        await self.js.delete_consumer(self.stream, name)
                    except Exception:
                        pass

            await asyncio.gather(*(delete(name) for name in names))
            for connection in connections:
                await connection.close()


# ------------------------------------------------------------------------------------------------


async def measure_all(args, hub):
    nats_server = None
    if args.nats:
        nats_server = Nats(args.nats)
        why_not = await nats_server.connect()
        if why_not:
            print(f"NATS not measured: {why_not}", file=sys.stderr)
            nats_server = None
    await hub.register_institution()
    # NATS carries messages as large as the hub's latest alert event.
    size = lambda: hub.event_bytes[-1] if hub.event_bytes else 490
    rows = []
    try:
        for count in args.subscribers:
            sides = [hub.rounds(count)]
            if nats_server and count <= args.nats_max_subscribers:
                sides.append(nats_server.rounds(count, size, args.timeout))
            print(
                f"{count} subscribers of {' and of '.join(['the hub', 'NATS'][: len(sides)])}, "
                f"{args.warmup} + {args.messages} messages",
                file=sys.stderr,
            )
            try:
                phases = [await side.asend(None) for side in sides]
                # Alternately, one push to the hub and one publish to NATS, so that both see the
                # machine's load of the same moments.
                for sample in range(args.warmup + args.messages):
                    for side in sides:
                        await side.asend(sample >= args.warmup)
            finally:
                for side in sides:
                    await side.aclose()
            figures = [summary(phase.latencies) for phase in phases]
            rows.append((count, figures[0], figures[1] if len(figures) > 1 else None))
    finally:
        if nats_server:
            await nats_server.close()
    return rows, hub.event_bytes


def table(rows, messages):
    ms = lambda v: f"{v:.2f} ms"
    lines = [
        "| subscribers | messages | hub p50 | hub p99 | NATS JetStream p50 | NATS JetStream p99 "
        "| p99 hub / NATS |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for count, (hub50, hub99), nats in rows:
        if nats:
            nats50, nats99 = nats
            cells = [ms(nats50), ms(nats99), f"{hub99 / nats99:.2f}×"]
        else:
            cells = ["—", "—", "—"]
        lines.append(
            "| " + " | ".join([f"{count:,}", f"{messages:,}", ms(hub50), ms(hub99)] + cells) + " |"
        )
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hub", help="the quotahub binary to start (serve on a temporary data dir)")
    parser.add_argument("--database-url", help="for the started hub (default: SQLite in its dir)")
    parser.add_argument("--address", help="a running hub on development certificates instead")
    parser.add_argument("--pki-dir", help="with --address: its pki directory (ca.pem, 140100-*)")
    parser.add_argument("--subscribers", default="1,100,1000", help="comma-separated counts")
    parser.add_argument("--messages", type=int, default=200, help="pushes timed per count")
    parser.add_argument("--warmup", type=int, default=5, help="pushes before timing, per count")
    parser.add_argument("--nats", default="nats://127.0.0.1:4222", help="'' to skip NATS")
    parser.add_argument("--nats-max-subscribers", type=int, default=1_000_000)
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds one delivery may take")
    args = parser.parse_args()
    args.subscribers = [int(n) for n in args.subscribers.split(",") if n]
    if bool(args.hub) == bool(args.address) or bool(args.address) != bool(args.pki_dir):
        parser.error("give --hub BIN, or --address and --pki-dir")
    if args.hub and not shutil.which(args.hub) and not os.path.exists(args.hub):
        parser.error(f"no hub binary at {args.hub}")

    stubs = tempfile.TemporaryDirectory()
    refused = compile_contract(stubs.name)
    if refused:
        print("protoc refuses: " + ", ".join(refused), file=sys.stderr)
        return 1
    sys.path.insert(0, stubs.name)

    load_before = os.getloadavg()
    hub = Hub(args, stubs.name)
    try:
        hub.start()
        rows, event_bytes = asyncio.run(measure_all(args, hub))
    except SystemExit as failure:
        if hub.process:
            print(f"the hub's log ends:\n{hub.hub_log()}", file=sys.stderr)
        print(failure, file=sys.stderr)
        return 1
    finally:
        hub.stop()
    load_after = os.getloadavg()
    print(table(rows, args.messages))
    print()
    size = f"{round(sum(event_bytes) / len(event_bytes))} bytes" if event_bytes else "unknown"
    measured_nats = any(nats for _, _, nats in rows)
    print(
        f"Alert event (FULL content) {size}"
        + ("; NATS messages of the same size. " if measured_nats else "; NATS not measured. ")
        + f"Hub: {args.hub or args.address}"
        + (f" on {args.database_url.split('@')[-1]}" if args.database_url else "")
        + ". "
        f"Load average (1 min) {load_before[0]:.2f} before, {load_after[0]:.2f} after; "
        f"{os.cpu_count()} CPUs."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
