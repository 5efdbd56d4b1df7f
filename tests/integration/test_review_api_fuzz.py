"""Issue 35: schemathesis against the review app's own OpenAPI document, over real HTTP (uvicorn) with the real
Redis and broker behind it, as every role: no generated request gets a 500, and every answer is one the app means
(no route answers a role it refuses with data)."""

from __future__ import annotations

import json
import threading
import urllib.request

import pytest
import redis
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings

from demo.local import free_port, wait_for_port
from review.app import create_app
from review.commands import server_options
from review.users import UserStore
from vigil_core.roles import ROLES

pytestmark = [pytest.mark.slow, pytest.mark.attack]

schemathesis = pytest.importorskip("schemathesis")

PASSWORD = "correct horse battery"
EXAMPLES = 25  # per operation and role
LOGIN_EXAMPLES = 8  # POST /api/v1/session: repeated names meet the login delay (1, 2, 4 s ...)


def _json(url: str, body: dict | None = None, token: str = "", method: str = "GET") -> tuple[int, dict]:
    data = json.dumps(body).encode() if body is not None else None
    headers = {"Content-Type": "application/json"} | ({"Authorization": f"Bearer {token}"} if token else {})
    request = urllib.request.Request(url, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"{}")


def test_schemathesis_finds_no_server_error_in_the_json_api_for_any_role(settings):
    import uvicorn

    client = redis.Redis.from_url(settings.redis_url.get_secret_value())
    users = UserStore(client, settings.redis_prefix)
    for role in ROLES:
        users.add(f"fuzz-{role.replace('_', '-')}", role, PASSWORD)
    port = free_port()
    proxy_headers, allow = server_options(settings)
    server = uvicorn.Server(uvicorn.Config(create_app(settings, secret="test-secret", consume=False),
                                           host="127.0.0.1", port=port, log_level="warning",
                                           proxy_headers=proxy_headers, forwarded_allow_ips=allow))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    assert wait_for_port(port, timeout_s=20)
    base = f"http://127.0.0.1:{port}"
    try:
        tokens = {}
        for role in ROLES:
            status, body = _json(f"{base}/api/v1/session", {"username": f"fuzz-{role.replace('_', '-')}",
                                                            "password": PASSWORD}, method="POST")
            assert status == 200, body
            tokens[role] = body["token"]
        status, document = _json(f"{base}/api/v1/openapi.json", token=tokens["admin"])
        assert status == 200 and document["paths"]
        schema = schemathesis.openapi.from_dict(document)
        operations = [r.ok() for r in schema.get_all_operations()]
        # logging out ends the token the rest of the run uses: last
        operations.sort(key=lambda op: (op.method.upper() == "DELETE" and op.path == "/api/v1/session", op.path))
        seen: dict[str, set[int]] = {}

        def fuzz(op, token: str, role: str, n: int) -> None:
            @hypothesis_settings(max_examples=n, deadline=None, database=None, suppress_health_check=list(HealthCheck))
            @given(case=op.as_strategy())
            def one(case) -> None:
                response = case.call(base_url=base, headers={"Authorization": f"Bearer {token}"})
                seen.setdefault(f"{op.method.upper()} {op.path}", set()).add(response.status_code)
                assert response.status_code < 500, (role, op.method, op.path, case.path_parameters, case.body,
                                                    response.status_code, response.text[:500])

            one()

        for role, token in tokens.items():
            for op in operations:
                if op.method.upper() == "POST" and op.path == "/api/v1/session" and role != "admin":
                    continue  # anonymous: once is enough
                fuzz(op, token, role, LOGIN_EXAMPLES if op.path == "/api/v1/session" else EXAMPLES)
        print(f"\nschemathesis, {len(tokens)} roles: status codes per operation {seen}")
        # every operation was reached, and answered something other than a server error
        assert len(seen) == len(operations) and all(max(codes) < 500 for codes in seen.values()), seen
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        client.close()
