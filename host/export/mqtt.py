"""MQTT export: the unit's state published to a site's broker with aiomqtt, read-only (R7):
it subscribes to nothing, so nothing that arrives over MQTT can reach the unit.

Topics (``<prefix>/<unit id>/...``, see host.export.hass.UnitTopics): ``availability``
(retained ``online``; the last will sets ``offline``), ``mains/<quantity>`` once a second,
``channel/<id>/current`` on a change beyond ``deadband_a`` and ``channel/<id>/state`` on a
change, ``breaker``, ``board/<group>/availability``, ``meter/availability``, ``event`` (one
JSON message per event), and the Home Assistant discovery configs.

A broker that goes away costs the unit nothing. The sampler reads snapshots and writes the
latest payload of each topic into a store whose size is fixed by the unit's topics (never a
queue of messages); events go to a bounded buffer that drops its oldest and counts them.
The publisher alone talks to the broker, reconnecting with a capped exponential back-off;
the state, the bus and the storage never wait for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import ssl
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import aiomqtt

from host.config import MqttConfig
from host.export.hass import (
    MAINS_QUANTITIES,
    OFFLINE,
    ONLINE,
    Discovery,
    UnitTopics,
)
from host.state import Event, Freshness, UnitSnapshot, UnitState

_LOG = logging.getLogger(__name__)

CHANNEL_CHECK_S = 0.5  # how often the channel currents are compared with the deadband
MAINS_EVERY_S = 1.0
PUBLISH_TIMEOUT_S = 10.0
FIRST_RETRY_S = 1.0
# CONNACK codes that mean the login itself was refused (MQTT 3.1.1 4 and 5, MQTT 5 134, 135):
# retrying fast would only hammer the broker and fill its log.
_LOGIN_REFUSED = {4, 5, 134, 135}


@dataclass
class Message:
    topic: str
    payload: str
    retain: bool
    qos: int


class LatestValues:
    """The latest payload of every topic and which of them the broker has not seen yet.
    Its size is the number of topics, fixed by the unit, however long the broker is away."""

    def __init__(self) -> None:
        self._values: dict[str, Message] = {}
        self._pending: dict[str, None] = {}  # insertion-ordered set

    def put(self, message: Message, *, always: bool = False) -> None:
        old = self._values.get(message.topic)
        if old is not None and old.payload == message.payload and not always:
            return
        self._values[message.topic] = message
        self._pending[message.topic] = None

    def take(self) -> Message | None:
        """The oldest unpublished message (``retry`` it if publishing fails)."""
        for topic in self._pending:
            del self._pending[topic]
            return self._values[topic]
        return None

    def retry(self, message: Message) -> None:
        if self._values.get(message.topic) is message:
            self._pending[message.topic] = None

    def republish_retained(self) -> None:
        """After a (re)connection: the broker may have restarted without its retained
        messages, so every retained topic goes out again."""
        for topic, message in self._values.items():
            if message.retain:
                self._pending[topic] = None

    def __len__(self) -> int:
        return len(self._values)

    @property
    def pending(self) -> int:
        return len(self._pending)


class EventBuffer:
    """Events waiting for the broker: bounded, the oldest dropped first and counted."""

    def __init__(self, maxlen: int) -> None:
        self._events: deque[str] = deque(maxlen=maxlen)
        self.dropped = 0

    def add(self, payload: str) -> None:
        if len(self._events) == self._events.maxlen:
            self.dropped += 1
        self._events.append(payload)

    def peek(self) -> str | None:
        return self._events[0] if self._events else None

    def done(self, payload: str) -> None:
        if self._events and self._events[0] is payload:
            self._events.popleft()

    def __len__(self) -> int:
        return len(self._events)


def event_payload(event: Event) -> str:
    data = event.to_dict()
    data["event_type"] = event.kind.value  # what Home Assistant's event entity reads
    return json.dumps(data, ensure_ascii=False)


def _number(value: float, precision: int) -> str:
    return f"{value:.{precision}f}"


class Sampler:
    """Turns snapshots into the latest payload per topic (no I/O)."""

    def __init__(self, config: MqttConfig, topics: UnitTopics, store: LatestValues) -> None:
        self.config = config
        self.topics = topics
        self.store = store
        self.discovery = Discovery(topics, config.discovery_prefix) if config.discovery else None
        self._published_current: dict[str, float | None] = {}
        self._discovery_key: object = None

    def _put(self, topic: str, payload: str, *, retain: bool = True, always: bool = False) -> None:
        self.store.put(Message(topic, payload, retain, 0), always=always)

    def channels(self, snap: UnitSnapshot) -> None:
        t = self.topics
        for group in snap.groups:
            board = ONLINE if group.board.online else OFFLINE
            self._put(t.board_availability(group.letter), board)
            for ch in group.channels:
                self._put(t.channel_state(ch.id), ch.state.value)
                current = ch.current_a if ch.freshness is Freshness.LIVE else None
                last = self._published_current.get(ch.id)
                if current is None:
                    continue  # the board's availability says why; the last value stays
                if last is None or abs(current - last) >= self.config.deadband_a:
                    self._published_current[ch.id] = current
                    self._put(t.channel_current(ch.id), _number(current, 2))
        self._put(t.breaker, snap.mains.breaker.value)
        self._put(t.board_availability("mains"), ONLINE if snap.mains.online else OFFLINE)
        self._put(
            t.meter_availability, ONLINE if snap.meter.freshness is Freshness.LIVE else OFFLINE
        )

    def mains(self, snap: UnitSnapshot) -> None:
        """Once a second, changed or not (a flat line is news too)."""
        for q in MAINS_QUANTITIES:
            value = snap.meter.live_value(q.name)
            if value is not None and math.isfinite(value):
                self._put(self.topics.mains(q.name), _number(value, q.precision), always=True)

    def discovery_configs(self, snap: UnitSnapshot) -> None:
        if self.discovery is None:
            return
        key = (
            snap.name,
            snap.meter.enabled,
            tuple(ch.label for ch in snap.iter_channels()),
            tuple(g.board.firmware for g in snap.groups),
        )
        if key == self._discovery_key:
            return
        self._discovery_key = key
        for topic, payload in self.discovery.messages(snap).items():
            self.store.put(Message(topic, payload, True, 1))

    def events_dropped(self, dropped: int) -> None:
        self._put(self.topics.events_dropped, str(dropped))


class MqttExporter:
    """``await run()`` until cancelled; never raises otherwise (the service goes on
    monitoring whatever the broker does)."""

    def __init__(self, state: UnitState, config: MqttConfig) -> None:
        self.state = state
        self.config = config
        self.topics = UnitTopics(config.prefix, state.unit_id)
        self.client_id = config.client_id or f"smartpdu-{state.unit_id}"
        self.store = LatestValues()
        self.events = EventBuffer(config.events_buffer)
        self.sampler = Sampler(config, self.topics, self.store)
        self.connected = False
        self.connections = 0  # successful connections so far
        self.published = 0  # messages the broker accepted
        self._wake = asyncio.Event()

    @property
    def broker(self) -> str:
        return f"{self.config.host}:{self.config.port}"

    # -- producers (the event loop's fast side) --------------------------------------------

    def _on_event(self, event: Event) -> None:
        self.events.add(event_payload(event))
        self._wake.set()

    async def _sample(self) -> None:
        loop = asyncio.get_running_loop()
        next_mains = loop.time()
        dropped = -1
        while True:
            try:
                snap = self.state.snapshot()
                self.sampler.discovery_configs(snap)
                self.sampler.channels(snap)
                if loop.time() >= next_mains:
                    self.sampler.mains(snap)
                    next_mains += MAINS_EVERY_S
                    if next_mains < loop.time():  # a stalled loop: no burst to catch up
                        next_mains = loop.time() + MAINS_EVERY_S
                if self.events.dropped != dropped:
                    dropped = self.events.dropped
                    self.sampler.events_dropped(dropped)
            except Exception:  # a bug here must not end the monitoring
                _LOG.exception("MQTT export: sampling the unit state failed")
            if self.store.pending:
                self._wake.set()
            await asyncio.sleep(CHANNEL_CHECK_S)

    # -- the broker ------------------------------------------------------------------------

    def _client(self) -> aiomqtt.Client:
        cfg = self.config
        password = None
        if cfg.password_file is not None:
            password = Path(cfg.password_file).read_text(encoding="utf-8").strip()
        tls = None
        if cfg.tls:
            tls = aiomqtt.TLSParameters(
                ca_certs=str(cfg.ca_file) if cfg.ca_file else None,
                certfile=str(cfg.cert_file) if cfg.cert_file else None,
                keyfile=str(cfg.key_file) if cfg.key_file else None,
                cert_reqs=ssl.CERT_REQUIRED,
            )
        return aiomqtt.Client(
            cfg.host,
            cfg.port,
            username=cfg.username or None,
            password=password,
            identifier=self.client_id,
            will=aiomqtt.Will(self.topics.availability, OFFLINE, qos=1, retain=True),
            keepalive=cfg.keepalive_s,
            timeout=PUBLISH_TIMEOUT_S,
            tls_params=tls,
            max_queued_outgoing_messages=1000,  # paho's own buffer: bounded too
        )

    async def run(self) -> None:
        remove = self.state.add_event_listener(self._on_event)
        sampler = asyncio.create_task(self._sample(), name="mqtt-sampler")
        try:
            await self._connect_forever()
        finally:
            remove()
            sampler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sampler

    async def _connect_forever(self) -> None:
        delay = FIRST_RETRY_S
        cap = self.config.reconnect_max_s
        while True:
            was_connected = False
            try:
                client = self._client()
                async with client:
                    was_connected = True
                    self._connected()
                    delay = FIRST_RETRY_S
                    await self._serve(client)
            except aiomqtt.MqttCodeError as exc:
                delay = self._connect_failed(exc, was_connected, delay, cap)
            except aiomqtt.MqttError as exc:
                delay = self._connect_failed(exc, was_connected, delay, cap)
            except OSError as exc:  # the password or a certificate file
                _LOG.error(
                    "MQTT export: cannot read %s; retrying in %.0f s",
                    exc.filename or exc,
                    cap,
                )
                delay = cap
            except Exception:  # a bug here must not end the monitoring
                _LOG.exception("MQTT export failed; retrying in %.0f s", cap)
                delay = cap
            finally:
                self.connected = False
            await asyncio.sleep(delay)
            delay = min(delay * 2, cap)

    def _connected(self) -> None:
        self.connected = True
        self.connections += 1
        self.store.republish_retained()
        _LOG.info(
            "MQTT export: connected to %s as %s; publishing under %s/",
            self.broker,
            self.client_id,
            self.topics.base,
        )

    def _connect_failed(
        self, exc: aiomqtt.MqttError, was_connected: bool, delay: float, cap: float
    ) -> float:
        """Log what went wrong in words a site technician can act on; the next delay."""
        rc = getattr(exc, "rc", None)
        code = getattr(rc, "value", rc)
        kept = f"events waiting: {len(self.events)} (dropped so far: {self.events.dropped})"
        if exc.__cause__ is not None:  # the watcher's "Disconnected ..." names no reason
            exc = aiomqtt.MqttError(f"{exc}: {exc.__cause__}")
        if not was_connected and isinstance(code, int) and code in _LOGIN_REFUSED:
            user = self.config.username or "(no username)"
            _LOG.error(
                "MQTT export: broker %s refused the login as %s (%s): check "
                "export.mqtt.username and the password in export.mqtt.password_file; "
                "monitoring goes on, retrying in %.0f s",
                self.broker,
                user,
                exc,
                cap,
            )
            return cap
        if not was_connected and "CERTIFICATE_VERIFY_FAILED" in str(exc):
            _LOG.error(
                "MQTT export: TLS check of broker %s failed (%s): export.mqtt.ca_file must be "
                "the CA that signed the broker's certificate, and host its name or address "
                "in that certificate; monitoring goes on, retrying in %.0f s",
                self.broker,
                exc,
                cap,
            )
            return cap
        if was_connected:
            _LOG.warning(
                "MQTT export: connection to %s dropped (%s); monitoring goes on, %s, "
                "reconnecting in %.0f s",
                self.broker,
                exc,
                kept,
                delay,
            )
        else:
            _LOG.warning(
                "MQTT export: broker %s unreachable (%s); monitoring goes on, %s, "
                "retrying in %.0f s",
                self.broker,
                exc,
                kept,
                delay,
            )
        return delay

    async def _serve(self, client: aiomqtt.Client) -> None:
        """Publish until the connection fails; a clean stop says ``offline`` itself (the
        broker sends the last will only when the connection is lost)."""
        await client.publish(self.topics.availability, ONLINE, qos=1, retain=True)
        publisher = asyncio.create_task(self._publish(client), name="mqtt-publish")
        # The message iterator raises when the connection is lost, even while idle.
        watcher = asyncio.create_task(self._watch(client), name="mqtt-watch")
        try:
            done, _ = await asyncio.wait({publisher, watcher}, return_when="FIRST_COMPLETED")
            for task in done:
                task.result()
        except asyncio.CancelledError:
            with contextlib.suppress(aiomqtt.MqttError, TimeoutError):
                await client.publish(
                    self.topics.availability, OFFLINE, qos=1, retain=True, timeout=2.0
                )
            raise
        finally:
            for task in (publisher, watcher):
                task.cancel()
            await asyncio.gather(publisher, watcher, return_exceptions=True)

    async def _watch(self, client: aiomqtt.Client) -> None:
        async for _ in client.messages:
            pass  # subscribed to nothing: never a message
        raise aiomqtt.MqttError("connection closed")

    async def _publish(self, client: aiomqtt.Client) -> None:
        while True:
            self._wake.clear()
            event = self.events.peek()
            if event is not None:
                await client.publish(self.topics.events, event, qos=1)
                self.events.done(event)
                self.published += 1
                continue
            message = self.store.take()
            if message is None:
                await self._wake.wait()
                continue
            try:
                await client.publish(
                    message.topic, message.payload, qos=message.qos, retain=message.retain
                )
            except BaseException:
                self.store.retry(message)
                raise
            self.published += 1
