"""What only the real server shows: a body too large is refused before it is read whole, and
SIGTERM lets a request in flight finish."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import httpx
import psycopg
import pytest
from prometheus_client.parser import text_string_to_metric_families

from ledger import db
from ledger.http.bodies import BODY_SIZE_MAX
from tests.support import delivery_body, new_account_id
from tests.support.servers import free_port, ledger_process, ledger_serve

SECRET = b"edges-webhook-secret"
ANSWER_LIMIT_S = 20  # a server that waited for the rest of the body would never answer
POLL_LIMIT_S = 20


@pytest.fixture
def database_url(server_url: str) -> Iterator[str]:
    url = db.create_database(server_url, "ledger_edges")
    yield url
    db.drop_database(server_url, url)


def server_env(database_url: str) -> dict[str, str]:
    return {"LEDGER_DATABASE_URL": database_url, "LEDGER_WEBHOOK_SECRETS": SECRET.decode()}


def read_answer(sock: socket.socket) -> bytes:
    """Read what the server sends until it closes or a whole answer with a JSON body arrived."""
    sock.settimeout(ANSWER_LIMIT_S)
    received = b""
    while True:
        head, _, body = received.partition(b"\r\n\r\n")
        if body and body.rstrip().endswith(b"}"):
            return received
        chunk = sock.recv(65536)
        if not chunk:
            return received
        received += chunk


def status_and_body(answer: bytes) -> tuple[int, dict]:
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head, "no answer"
    return int(head.split(b" ", 2)[1]), json.loads(body, parse_float=Decimal)


def request_head(port: int, path: str, *headers: str) -> bytes:
    lines = [f"POST {path} HTTP/1.1", f"Host: 127.0.0.1:{port}", "Content-Type: application/json", *headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


TOO_LARGE = f"The body may be at most {BODY_SIZE_MAX} bytes."


def test_bodies_over_64_kib_are_refused_before_they_are_read_whole(tmp_path: Path, database_url: str) -> None:
    port = free_port()
    with ledger_serve(tmp_path, port, **server_env(database_url)):
        # A declared length past the limit: refused from the header, with 1 KiB of 10 MB sent.
        with socket.create_connection(("127.0.0.1", port)) as sock:
            sock.sendall(request_head(port, "/login", "Content-Length: 10000000") + b"{" + b" " * 1024)
            status, body = status_and_body(read_answer(sock))
        assert (status, body["error"]) == (413, "body_too_large")

        # No length (chunked) and no end: refused after reading just past the limit.
        with socket.create_connection(("127.0.0.1", port)) as sock:
            sock.sendall(request_head(port, "/webhook/payment", "Transfer-Encoding: chunked"))
            chunk = b"2000\r\n" + b" " * 0x2000 + b"\r\n"  # 8 KiB
            for _ in range(BODY_SIZE_MAX // 0x2000 + 2):
                sock.sendall(chunk)
            status, body = status_and_body(read_answer(sock))
        assert (status, body) == (413, {"error": "body_too_large", "message": TOO_LARGE}), body

        # At the limit exactly, the body is read and judged on what it says.
        login = json.dumps({"email": "nobody@example.com", "password": "wrong-password"}).encode()
        at_limit = login[:-1] + b" " * (BODY_SIZE_MAX - len(login)) + b"}"
        assert len(at_limit) == BODY_SIZE_MAX
        result = httpx.post(f"http://127.0.0.1:{port}/login", content=at_limit, timeout=ANSWER_LIMIT_S)
        assert result.status_code == 401, result.text


def in_flight(base_url: str) -> float:
    page = httpx.get(f"{base_url}/metrics", timeout=5).text
    for family in text_string_to_metric_families(page):
        if family.name == "ledger_http_requests_in_flight":
            return family.samples[0].value
    raise AssertionError("no ledger_http_requests_in_flight in /metrics")


def is_listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True


def test_sigterm_lets_a_request_in_flight_finish(tmp_path: Path, database_url: str) -> None:
    port = free_port()
    delivery = json.dumps(delivery_body(1, new_account_id(), "12.34", secret=SECRET)).encode()
    with ledger_process(tmp_path, port, **server_env(database_url)) as (base_url, process):
        with socket.create_connection(("127.0.0.1", port)) as sock:
            # The request arrives and the app starts on it; the last bytes of its body are held back.
            sock.sendall(
                request_head(port, "/webhook/payment", f"Content-Length: {len(delivery)}") + delivery[:-5]
            )
            deadline = time.monotonic() + POLL_LIMIT_S
            while in_flight(base_url) < 2:  # the held request, and the scrape itself
                assert time.monotonic() < deadline, "the request never reached the app"
                time.sleep(0.05)

            process.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + POLL_LIMIT_S
            while is_listening(port):  # shutting down: no new connections taken
                assert time.monotonic() < deadline, "the server did not start shutting down"
                time.sleep(0.05)
            assert process.poll() is None, "the server quit with a request in flight"

            sock.sendall(delivery[-5:])
            status, body = status_and_body(read_answer(sock))
        assert (status, body["status"]) == (201, "credited")
        try:
            assert process.wait(timeout=POLL_LIMIT_S) == 0
        except subprocess.TimeoutExpired:
            raise AssertionError("the server did not stop after its last request") from None

    with psycopg.connect(database_url) as conn:  # it was committed, not cut short
        row = conn.execute(
            "SELECT amount FROM payments WHERE transaction_id = %(id)s", {"id": body["transaction_id"]}
        ).fetchone()
    assert row == (Decimal("12.34"),) == (body["amount"],)
