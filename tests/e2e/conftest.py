"""A real server for the tests that need one over HTTP: uvicorn on a free port, in a thread of
this process, serving create_app on a fresh database of its own (migrated and seeded).

Its own database, so that fuzzing the admin endpoints (deletions, updates) can never touch the
rows other tests rely on. The cheapest argon2, as everywhere in the tests.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator

import pytest
import uvicorn

from ledger import db
from ledger.config import CHEAPEST_ARGON2, REPO_ROOT, RequestThrottle, Settings
from ledger.http.app import create_app
from ledger.signatures import Webhooks
from tests.support import TEST_WEBHOOK_SECRET
from tests.support.servers import LiveServer, free_port

START_TIMEOUT_S = 30
STOP_TIMEOUT_S = 30


@pytest.fixture(scope="session")
def live_server(
    server_url: str, new_migrated_database: Callable[[str], str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    database_url = new_migrated_database("ledger_live")
    settings = Settings(
        database_url=database_url,
        data_dir=tmp_path_factory.mktemp("live"),
        migrations_dir=REPO_ROOT / "sql",
        webhooks=Webhooks(secrets=(TEST_WEBHOOK_SECRET,)),
        jwt_secret=b"live-jwt-secret-" + uuid.uuid4().hex.encode() * 2,
        token_ttl_s=3600,
        argon2=CHEAPEST_ARGON2,
        registration_throttle=RequestThrottle(requests_per_address_max=10**6),  # the fuzz registers many
    )
    pool = db.create_pool(db.serving_conninfo(database_url, statement_timeout_s=30), 1, 10)
    app = create_app(settings, pool)  # the pool opens and closes in the server's own event loop
    port = free_port()
    # loop="asyncio": uvloop would not change anything here but the event loop policy of the process.
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, lifespan="on", loop="asyncio", log_level="warning")
    )
    thread = threading.Thread(target=server.run, name="live-server", daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not server.started:
            assert thread.is_alive(), "the live server stopped while starting"
            assert time.monotonic() < deadline, f"the live server did not start in {START_TIMEOUT_S}s"
            time.sleep(0.05)
        yield LiveServer(f"http://127.0.0.1:{port}", settings)
    finally:
        server.should_exit = True
        thread.join(STOP_TIMEOUT_S)
        db.drop_database(server_url, database_url)
    assert not thread.is_alive(), f"the live server did not stop in {STOP_TIMEOUT_S}s"
