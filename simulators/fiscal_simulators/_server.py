"""Transport machinery shared by the provider simulators.

A simulator is a real HTTP server (``ThreadingHTTPServer`` on 127.0.0.1) so that a
provider client is exercised exactly as in production: sockets, timeouts, status
codes, headers, half-sent bodies. Only ``base_url`` differs.

This module knows nothing about any provider. It gives a subclass:

* a lifecycle (``start``/``stop``/context manager, random or fixed port),
* a route table (``routes``) dispatched under one lock, so provider state needs
  no further locking,
* per-request ``latency``, a sliding-window rate limit answering 429 + ``Retry-After``,
* fault injection (``inject``): status codes, timeouts, connection resets,
  malformed and truncated bodies, before or *after* the request was processed,
* a request log (``requests``) with secrets removed.

Subclasses implement the provider: ``routes``, ``authenticate``, ``is_public``,
``reset_state`` and, when the provider's error shapes differ, ``error_response``.
"""

from __future__ import annotations

import base64
import collections
import hashlib
import json
import logging
import math
import re
import signal
import socket
import struct
import threading
import time
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote_plus

_logger = logging.getLogger(__name__)

NAMED_FAULTS = ("timeout", "reset", "malformed", "truncated")


# ---------------------------------------------------------------------------
# Request / response values
# ---------------------------------------------------------------------------


@dataclass
class SimRequest:
    method: str
    path: str  # without the query string
    query: dict  # name -> list of values (``type[]`` stays ``type[]``)
    headers: dict  # the handler's case-insensitive header mapping
    body: bytes = b""

    def param(self, name, default=None):
        values = self.query.get(name)
        return values[0] if values else default

    def json(self):
        """The parsed body; ``None`` when empty. Raises ``ValueError`` when not JSON."""
        if not self.body.strip():
            return None
        return json.loads(self.body.decode("utf-8"))


@dataclass
class SimResponse:
    status: int
    body: bytes = b""
    headers: dict = field(default_factory=dict)

    @classmethod
    def json(cls, status, payload, headers=None):
        body = json.dumps(payload, ensure_ascii=False).encode("utf-8")
        return cls(status, body, {"Content-Type": "application/json; charset=utf-8", **(headers or {})})

    @classmethod
    def text(cls, status, text, content_type="text/plain; charset=utf-8", headers=None):
        return cls(status, text.encode("utf-8"), {"Content-Type": content_type, **(headers or {})})


class Reply(Exception):
    """Raised by a route handler to answer early (typically a validation error)."""

    def __init__(self, response):
        super().__init__(response.status)
        self.response = response


@dataclass
class _Fault:
    fault: int | str
    remaining: int | None  # None = until cleared
    path_contains: str | None
    method: str | None
    when: str
    retry_after: int

    def matches(self, method, path):
        return (self.method is None or self.method == method) and (
            self.path_contains is None or self.path_contains in path
        )


# ---------------------------------------------------------------------------
# The server
# ---------------------------------------------------------------------------


class SimulatorServer:
    """Base class of the provider simulators. See the module docstring."""

    label = "Simulator"
    # Query parameters carrying credentials: dropped from the request log, masked in debug logs.
    secret_params = ("api_key",)
    # (HTTP method, path regex matched in full, name of the handler method).
    # A handler receives the SimRequest and the regex's named groups as keywords.
    routes = ()
    # Length of the sliding rate-limit window; tests may shorten it.
    rate_window = 60.0
    # Messages used when a plain status code is injected (e.g. {401: "Invalid API key"}).
    fault_messages = {}

    def __init__(self, *, host="127.0.0.1", port=0, latency=0.0, rate_limit_per_minute=None, timeout_seconds=15.0):
        self.host = host
        self.port = port
        self.latency = latency
        self.rate_limit_per_minute = rate_limit_per_minute
        self.timeout_seconds = timeout_seconds
        self.lock = threading.RLock()
        self.requests = []
        self._faults = []
        self._hits = collections.deque()
        self._httpd = None
        self._thread = None
        self._stopping = threading.Event()
        self._routes = [(method, re.compile(pattern), getattr(self, name)) for method, pattern, name in self.routes]
        names = "|".join(re.escape(p) for p in self.secret_params)
        self._secret_re = re.compile(rf"(?i)\b({names})=[^&\s'\"]*") if names else None
        self.reset()

    # -- lifecycle --------------------------------------------------------
    def start(self):
        if self._httpd is not None:
            return self
        self._stopping.clear()
        httpd = _HTTPServer((self.host, self.port), self)
        self.port = httpd.server_address[1]  # a restart keeps the same port, hence the same base_url
        self._httpd = httpd
        # A short poll interval keeps stop() fast (shutdown() waits for the loop to notice).
        self._thread = threading.Thread(
            target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, name=f"{self.label} :{self.port}", daemon=True
        )
        self._thread.start()
        return self

    def stop(self):
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        self._stopping.set()  # wakes handlers sleeping in latency / "timeout" faults
        stopper = threading.Thread(target=httpd.shutdown)
        stopper.start()
        # serve_forever() only notices shutdown() between two polls: a connection
        # wakes it at once, which keeps a start/stop per test cheap.
        try:
            socket.create_connection((_connect_host(self.host), self.port), timeout=0.5).close()
        except OSError:
            pass
        stopper.join()
        # Keep-alive connections would otherwise go on being served by their threads:
        # a stopped simulator must look like a dead service to pooled clients too.
        httpd.close_connections()
        httpd.server_close()
        self._thread.join(timeout=5)
        self._thread = None

    @property
    def running(self):
        return self._httpd is not None

    @property
    def base_url(self):
        return f"http://{self.host}:{self.port}"

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc_info):
        self.stop()

    # -- state --------------------------------------------------------------
    def reset(self):
        """Forget everything: provider state, faults, request log, rate-limit window."""
        with self.lock:
            self._faults = []
            self.requests = []
            self._hits.clear()
            self.reset_state()

    def reset_state(self):
        """Hook: (re)initialise the provider's own state."""

    def inject(self, fault, count=1, path_contains=None, method=None, when="before", *, retry_after=1):
        """Make the next ``count`` matching requests fail.

        ``fault``: an HTTP status (answered with the provider's error body; 5xx with
        an HTML gateway page; 429 with ``Retry-After: retry_after``), or one of
        ``"timeout"`` (answer only after ``timeout_seconds``), ``"reset"`` (abort
        the TCP connection, no response), ``"malformed"`` (200, body not JSON),
        ``"truncated"`` (Content-Length larger than the body, then close).

        ``when="before"``: the request is not processed at all (no state change).
        ``when="after"``: the request is processed normally, state changes included,
        and only the answer is replaced by the fault: "the provider succeeded but
        the client never saw it". A late ``"timeout"`` still sends the real answer,
        once the client has most likely given up.

        ``count=None`` keeps the fault until :meth:`clear_faults`. ``path_contains``
        is matched against the logged path (query string included, secrets removed).
        """
        if isinstance(fault, bool) or not ((isinstance(fault, int) and 100 <= fault <= 599) or fault in NAMED_FAULTS):
            raise ValueError(f"Unknown fault {fault!r}: an HTTP status or one of {NAMED_FAULTS}")
        if when not in ("before", "after"):
            raise ValueError("when must be 'before' or 'after'")
        if count is not None and count < 1:
            raise ValueError("count must be >= 1 or None")
        with self.lock:
            self._faults.append(
                _Fault(fault, count, path_contains, method.upper() if method else None, when, int(retry_after))
            )

    def clear_faults(self):
        with self.lock:
            self._faults = []

    @property
    def pending_faults(self):
        with self.lock:
            return [(f.fault, f.remaining, f.when) for f in self._faults]

    # -- hooks for subclasses -------------------------------------------------
    def is_public(self, request):
        """True for paths needing neither credentials nor a rate-limit slot."""
        return False

    def authenticate(self, request):
        """Return None when the request may proceed, else the refusal response."""
        return None

    def error_response(self, status, *messages):
        return SimResponse.json(status, {"errors": [{"error": m} for m in messages]})

    def rate_limited_response(self, retry_after):
        return SimResponse.json(
            429, {"errors": [{"error": "Too many requests"}]}, headers={"Retry-After": str(retry_after)}
        )

    def not_found(self, request):
        return self.error_response(404, "Not found")

    def fault_response(self, status, retry_after=1):
        if status == 429:
            return self.rate_limited_response(retry_after)
        phrase = _phrase(status)
        if status >= 500:
            # What a load balancer in front of the service answers: HTML, not the API's JSON.
            html = f"<html><head><title>{status} {phrase}</title></head><body><h1>{status} {phrase}</h1></body></html>"
            return SimResponse.text(status, html, content_type="text/html")
        return self.error_response(status, self.fault_messages.get(status, phrase))

    def dispatch(self, request):
        """Route a request (called with ``self.lock`` held)."""
        for method, pattern, handler in self._routes:
            match = pattern.fullmatch(request.path)
            if match and method == request.method:
                try:
                    return handler(request, **match.groupdict())
                except Reply as reply:
                    return reply.response
        return self.not_found(request)

    # -- helpers for subclasses ----------------------------------------------
    def redact_path(self, raw_path):
        """The path with every secret query parameter removed (name and value)."""
        path, sep, query = raw_path.partition("?")
        if not sep:
            return path
        kept = [
            part
            for part in query.split("&")
            if part and unquote_plus(part.split("=", 1)[0]).lower() not in self.secret_params
        ]
        return path + ("?" + "&".join(kept) if kept else "")

    def redact_text(self, text):
        return self._secret_re.sub(r"\1=***", text) if self._secret_re else text

    def sleep(self, seconds):
        """Sleep, but wake up at once when the simulator stops. True if it stopped."""
        if seconds and seconds > 0:
            return self._stopping.wait(seconds)
        return self._stopping.is_set()

    # -- internals --------------------------------------------------------------
    def _log(self, entry):
        with self.lock:
            self.requests.append(entry)

    def _take_fault(self, when, method, path):
        with self.lock:
            for fault in self._faults:
                if fault.when == when and fault.matches(method, path):
                    if fault.remaining is not None:
                        fault.remaining -= 1
                        if fault.remaining <= 0:
                            self._faults.remove(fault)
                    return fault
        return None

    def _take_rate_slot(self):
        """Record one request in the window; return None, or seconds to wait when full."""
        limit = self.rate_limit_per_minute
        if not limit:
            return None
        with self.lock:
            now = time.monotonic()
            while self._hits and self._hits[0] <= now - self.rate_window:
                self._hits.popleft()
            if len(self._hits) >= limit:
                # Refused requests do not take a slot: waiting Retry-After is then enough.
                return max(1, math.ceil(self._hits[0] + self.rate_window - now))
            self._hits.append(now)
            return None

    def _respond(self, request):
        try:
            if not self.is_public(request):
                refusal = self.authenticate(request)
                if refusal is not None:
                    return refusal
                retry_after = self._take_rate_slot()
                if retry_after is not None:
                    return self.rate_limited_response(retry_after)
            with self.lock:
                return self.dispatch(request)
        except Exception:  # a simulator bug must still answer, like a real 500
            _logger.exception("%s: error while handling %s %s", self.label, request.method, request.path)
            return self.error_response(500, "Internal server error")


def _connect_host(host):
    return {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)


def _phrase(status):
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address, simulator):
        self.simulator = simulator
        self._connections = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, _Handler)

    def track(self, sock, add):
        with self._connections_lock:
            (self._connections.add if add else self._connections.discard)(sock)

    def close_connections(self):
        with self._connections_lock:
            connections = list(self._connections)
        for sock in connections:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def handle_error(self, request, client_address):
        # Clients hanging up (often on purpose, in fault tests) are not worth a traceback on stderr.
        _logger.debug("%s: connection error", self.simulator.label, exc_info=True)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, like the real services; every answer has a Content-Length
    server_version = "nginx"
    timeout = 60  # idle keep-alive connections end, freeing their threads
    # Headers and body leave in separate writes: with Nagle and delayed ACKs, every
    # keep-alive request would otherwise wait ~40 ms.
    disable_nagle_algorithm = True

    # -- plumbing -----------------------------------------------------------
    def setup(self):
        super().setup()
        self.server.track(self.connection, True)

    def finish(self):
        try:
            super().finish()
        finally:
            self.server.track(self.connection, False)

    def version_string(self):
        return self.server_version  # no Python version: the real service sits behind nginx

    def log_message(self, format, *args):
        # The default writes to stderr and includes the request line, api_key and all.
        sim = self.server.simulator
        _logger.debug("%s: %s", sim.label, sim.redact_text(format % args))

    def do_GET(self):
        self._handle()

    do_POST = do_PUT = do_PATCH = do_DELETE = do_GET

    # -- one request ----------------------------------------------------------
    def _handle(self):
        sim = self.server.simulator
        path, _, query = self.path.partition("?")
        try:
            body = self._read_body()
        except ValueError:
            self.close_connection = True
            self._send(SimResponse.text(400, "Bad request"))
            return
        request = SimRequest(self.command, path, parse_qs(query, keep_blank_values=True), self.headers, body)
        entry = {"method": self.command, "path": sim.redact_path(self.path), "status": None, "fault": None}
        sim._log(entry)  # logged on arrival, so the log keeps arrival order even with slow faults
        if sim.sleep(sim.latency):
            self._abort()
            return
        try:
            fault = sim._take_fault("before", self.command, entry["path"])
            if fault is not None:
                entry["fault"] = fault.fault
                self._apply_fault(fault, None, entry)
                return
            response = sim._respond(request)
            fault = sim._take_fault("after", self.command, entry["path"])
            if fault is not None:
                entry["fault"] = fault.fault
                entry["processed_status"] = response.status
                self._apply_fault(fault, response, entry)
                return
            entry["status"] = response.status
            self._send(response)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client gave up (e.g. its own timeout)

    def _read_body(self):
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline().strip():  # trailers
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        if length < 0:
            raise ValueError("negative Content-Length")
        return self.rfile.read(length) if length else b""

    def _send(self, response, *, body=None, content_length=None):
        body = response.body if body is None else body
        self.send_response(response.status)
        for name, value in response.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body) if content_length is None else content_length))
        self.end_headers()
        if body:
            self.wfile.write(body)

    def _abort(self):
        self.close_connection = True

    def _apply_fault(self, fault, response, entry):
        sim = self.server.simulator
        kind = fault.fault
        if isinstance(kind, int):
            injected = sim.fault_response(kind, fault.retry_after)
            entry["status"] = injected.status
            self._send(injected)
        elif kind == "timeout":
            if sim.sleep(sim.timeout_seconds):
                self._abort()
                return
            # Before: the service never got to it, a gateway finally gives up. After: the real
            # answer, far too late for a client with a sane read timeout.
            late = response or sim.fault_response(504)
            entry["status"] = late.status
            self._send(late)
        elif kind == "reset":
            self._reset_connection()
        elif kind == "malformed":
            # An HTML error page labelled as JSON, as a misconfigured proxy would send.
            page = SimResponse.text(
                200, "<html><body><h1>Service temporarily unavailable</h1></body></html>", "application/json"
            )
            entry["status"] = 200
            self._send(page)
        elif kind == "truncated":
            full = response.body if response is not None and len(response.body) > 1 else b'{"errors":[], "data":{}}'
            status = response.status if response is not None else 200
            headers = response.headers if response is not None else {"Content-Type": "application/json"}
            entry["status"] = status
            self._send(SimResponse(status, b"", headers), body=full[: len(full) // 2], content_length=len(full))
            self.close_connection = True

    def _reset_connection(self):
        """Close with SO_LINGER 0: the peer gets a TCP RST instead of an answer."""
        self.close_connection = True
        try:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            # The socket really closes only once the buffered reader lets go of it.
            self.rfile.close()
            self.connection.close()
        except OSError:
            pass


# ---------------------------------------------------------------------------
# Shared helpers
# ---------------------------------------------------------------------------


def build_pdf(lines):
    """A small valid one-page PDF (Helvetica text lines), built by hand: no dependency."""

    def escape(text):
        text = str(text).encode("latin-1", "replace").decode("latin-1")
        return text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")

    text_ops = "".join(f"({escape(line)}) Tj T* " for line in lines)
    stream = f"BT /F1 12 Tf 16 TL 56 780 Td {text_ops}ET".encode("latin-1")
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Resources << /Font << /F1 4 0 R >> >> "
        b"/Contents 5 0 R >>",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
        b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream",
    ]
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, obj in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + obj + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)


def serve_until_signal(simulator):
    """CLI helper: start, print where, serve until SIGTERM/SIGINT, stop cleanly."""
    stop = threading.Event()

    def on_signal(signum, frame):
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    simulator.start()
    # Never print credentials: the base URL carries none.
    print(f"{simulator.label} listening on {simulator.base_url}", flush=True)
    try:
        while not stop.wait(0.5):  # a timed wait lets the signal handler run promptly
            pass
    finally:
        simulator.stop()
    return 0


def positive_int(value, default):
    """A query parameter as a positive integer, else ``default``."""
    try:
        number = int(value)
    except (TypeError, ValueError):
        return default
    return number if number > 0 else default


def saft_chain_hash(previous, doc_date, number, total):
    """SAF-T PT chains each document's signature to the previous one of the series."""
    digest = hashlib.sha256(f"{doc_date};{number};{total:.2f};{previous}".encode()).digest()
    return base64.b64encode(digest).decode()


def saft_printed_hash(full_hash):
    """The 4 characters printed on the document: positions 1, 11, 21 and 31 of the signature."""
    return "".join(full_hash[i] for i in (0, 10, 20, 30))


def json_decimal(value):
    """A number from JSON (int, float or numeric string, as the services accept), else None."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float, Decimal)):
        value = str(value)
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        number = Decimal(value.strip())
    except InvalidOperation:
        return None
    return number if number.is_finite() else None


def pt_today():
    """Today in Portugal (mainland): what the Portuguese services call "today" for a document date."""
    from datetime import datetime
    from zoneinfo import ZoneInfo

    return datetime.now(ZoneInfo("Europe/Lisbon")).date()


# Number helpers of the simulators. The addon has its own (fiscal_invoice_connector/providers/
# numbers.py) and these are NOT imported from there on purpose: a simulator plays the other side
# of the contract, and an arithmetic bug shared by a client and its simulator would make both
# agree and stay invisible. Each side computes on its own; the tests compare them.
CENT = Decimal("0.01")


def cents(value):
    """Half-up to the cent, as the services round amounts."""
    return Decimal(value).quantize(CENT, rounding=ROUND_HALF_UP)


def plain(value):
    """A Decimal as a plain numeric string (no exponent, no trailing zeros, never ``-0``)."""
    text = format(Decimal(value).normalize(), "f")
    return "0" if text in ("-0", "") else text


def digits_only(value):
    """The digits of a tax id or a code (``None``: ``""``)."""
    return "".join(ch for ch in (str(value).strip() if value is not None else "") if ch.isdigit())
