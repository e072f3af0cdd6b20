"""Login and tokens: one login for users and admins; every bad or revoked token is a 401."""

from __future__ import annotations

import base64
import json
import time

import jwt
import pytest
from falcon.testing import ASGIConductor

from tests.support import PASSWORD, Person

PROTECTED = [
    ("GET", "/user/about"),
    ("GET", "/user/accounts"),
    ("GET", "/users/payments"),
    ("GET", "/user/payments"),
    ("GET", "/users"),
    ("GET", "/admin/users"),
    ("POST", "/users/create"),
    ("POST", "/admin/users/create"),
    ("PUT", "/users/update/1"),
    ("PUT", "/admin/users/update/1"),
    ("DELETE", "/users/delete/1"),
    ("DELETE", "/admin/users/delete/1"),
]
ADMIN_ONLY = [route for route in PROTECTED if "/users" in route[1] and "payments" not in route[1]]


def assert_unauthenticated(result) -> None:  # noqa: ANN001
    assert result.status_code == 401, result.text
    assert result.headers["WWW-Authenticate"] == "Bearer"
    assert result.json["error"] == "unauthenticated"


@pytest.mark.parametrize(
    ("email", "user_id", "is_admin"),
    [
        ("testadmin@example.com", 2, True),
        ("testuser@example.com", 1, False),
        ("TestAdmin@Example.COM", 2, True),
    ],
)
async def test_the_seeded_users_log_in(
    client: ASGIConductor, email: str, user_id: int, is_admin: bool
) -> None:
    result = await client.simulate_post("/login", json={"email": email, "password": "123456"})
    assert result.status_code == 200, result.text
    body = result.json
    assert set(body) == {"access_token", "token", "token_type", "expires_in", "user_id"}
    assert body["token"] == body["access_token"]
    assert (body["token_type"], body["expires_in"], body["user_id"]) == ("bearer", 3600, user_id)
    about = await client.simulate_get("/user/about", headers={"Authorization": f"Bearer {body['token']}"})
    assert about.json["is_admin"] is is_admin


async def test_a_wrong_password_and_an_unknown_email_get_the_same_answer(
    client: ASGIConductor, person: Person
) -> None:
    wrong_password = await client.simulate_post(
        "/login", json={"email": person.user.email, "password": "wrong-one"}
    )
    unknown_email = await client.simulate_post(
        "/login", json={"email": "nobody@example.com", "password": PASSWORD}
    )
    assert wrong_password.status_code == unknown_email.status_code == 401
    assert wrong_password.json == unknown_email.json
    assert wrong_password.json["error"] == "invalid_credentials"


@pytest.mark.parametrize("body", [b"", b"{", b"[]", b'{"email": 5, "password": "x"}', b'{"email": "a@b.co"}'])
async def test_a_malformed_login_is_a_4xx(client: ASGIConductor, body: bytes) -> None:
    result = await client.simulate_post("/login", body=body, headers={"Content-Type": "application/json"})
    assert result.status_code in (400, 422)
    assert {"error", "message"} <= set(result.json)


@pytest.mark.parametrize(("method", "path"), PROTECTED)
async def test_protected_endpoints_need_a_token(client: ASGIConductor, method: str, path: str) -> None:
    assert_unauthenticated(await client.simulate_request(method, path))
    assert_unauthenticated(
        await client.simulate_request(method, path, headers={"Authorization": "Basic abc"})
    )
    assert_unauthenticated(await client.simulate_request(method, path, headers={"Authorization": "Bearer"}))


@pytest.mark.parametrize("header", ["Bearer  {token}", "bearer {token} ", "BEARER {token}"])
async def test_the_scheme_is_read_in_any_case_and_spaces_around_the_token_do_not_matter(
    client: ASGIConductor, person: Person, header: str
) -> None:
    result = await client.simulate_get(
        "/user/about", headers={"Authorization": header.format(token=person.token)}
    )
    assert result.status_code == 200, result.text


@pytest.mark.parametrize("scheme", ["Basic", "Token", "Bearers"])
async def test_a_good_token_under_another_scheme_is_refused(
    client: ASGIConductor, person: Person, scheme: str
) -> None:
    result = await client.simulate_get("/user/about", headers={"Authorization": f"{scheme} {person.token}"})
    assert_unauthenticated(result)


def forgeries(person: Person, settings_secret: bytes) -> dict[str, str]:
    header, payload, signature = person.token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    now = int(time.time())

    def b64(data: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    return {
        "garbage": "not-a-jwt",
        "alg_none": b64({"alg": "none", "typ": "JWT"}) + "." + payload + ".",
        "wrong_key": jwt.encode(claims, "another-key-of-sufficient-length-123", algorithm="HS256"),
        "tampered_payload": header + "." + b64({**claims, "sub": "2"}) + "." + signature,
        "expired": jwt.encode(
            {**claims, "iat": now - 100, "exp": now - 10}, settings_secret, algorithm="HS256"
        ),
        "no_exp": jwt.encode(
            {k: v for k, v in claims.items() if k != "exp"}, settings_secret, algorithm="HS256"
        ),
        "no_version": jwt.encode(
            {k: v for k, v in claims.items() if k != "ver"}, settings_secret, algorithm="HS256"
        ),
        "hs512": jwt.encode(claims, settings_secret, algorithm="HS512"),
        # Signed with the right key, but the credentials version is not a number: true equals 1
        # in Python, and "1" is not 1 to the database.
        "version_true": jwt.encode({**claims, "ver": True}, settings_secret, algorithm="HS256"),
        "version_text": jwt.encode({**claims, "ver": str(claims["ver"])}, settings_secret, algorithm="HS256"),
    }


@pytest.mark.parametrize(
    "kind",
    [
        "garbage",
        "alg_none",
        "wrong_key",
        "tampered_payload",
        "expired",
        "no_exp",
        "no_version",
        "hs512",
        "version_true",
        "version_text",
    ],
)
async def test_forged_and_expired_tokens_are_refused(
    client: ASGIConductor, person: Person, settings, kind: str
) -> None:  # noqa: ANN001
    token = forgeries(person, settings.jwt_secret)[kind]
    result = await client.simulate_get("/user/about", headers={"Authorization": f"Bearer {token}"})
    assert_unauthenticated(result)
    # A token was sent: the answer says it is not good, not that a token is missing.
    assert "invalid or expired" in result.json["message"]


async def login(client: ASGIConductor, email: str, password: str) -> dict[str, str]:
    result = await client.simulate_post("/login", json={"email": email, "password": password})
    assert result.status_code == 200, result.text
    return {"Authorization": f"Bearer {result.json['token']}"}


# /user/accounts checks revocation in its own statement (one round trip), the others in the
# middleware: both ways must revoke alike.
CHECKED_PATHS = ["/user/about", "/user/accounts"]


@pytest.mark.parametrize("path", CHECKED_PATHS)
@pytest.mark.parametrize(
    ("change", "revokes"),
    [
        ({"password": "a-new-password"}, True),
        ({"email": "changed-{id}@example.com"}, True),
        ({"full_name": "Someone Else"}, False),
        ({"is_admin": False}, False),
    ],
)
async def test_tokens_are_revoked_by_a_password_or_email_change(
    client: ASGIConductor, person: Person, admin: Person, change: dict, revokes: bool, path: str
) -> None:
    headers = await login(client, person.user.email, PASSWORD)
    body = {
        key: value.format(id=person.user.id) if isinstance(value, str) else value
        for key, value in change.items()
    }
    updated = await client.simulate_put(f"/users/update/{person.user.id}", json=body, headers=admin.headers)
    assert updated.status_code == 200, updated.text
    after = await client.simulate_get(path, headers=headers)
    if revokes:
        assert_unauthenticated(after)
        assert "revoked" in after.json["message"]  # the token was good: it is told why it is not now
    else:
        assert after.status_code == 200


@pytest.mark.parametrize("path", CHECKED_PATHS)
async def test_a_deleted_users_token_is_revoked(
    client: ASGIConductor, person: Person, admin: Person, path: str
) -> None:
    assert (await client.simulate_get(path, headers=person.headers)).status_code == 200
    deleted = await client.simulate_delete(f"/users/delete/{person.user.id}", headers=admin.headers)
    assert deleted.status_code == 200
    revoked = await client.simulate_get(path, headers=person.headers)
    assert_unauthenticated(revoked)
    assert "revoked" in revoked.json["message"]
    refused = await client.simulate_post("/login", json={"email": person.user.email, "password": PASSWORD})
    assert refused.status_code == 401


@pytest.mark.parametrize(("method", "path"), ADMIN_ONLY)
async def test_admin_endpoints_refuse_a_user_with_403(
    client: ASGIConductor,
    person: Person,
    make_person,
    method: str,
    path: str,  # noqa: ANN001
) -> None:
    victim = await make_person()
    path = path.replace("/1", f"/{victim.user.id}")
    body = {"email": "x-" + victim.user.email, "full_name": "X", "password": "123456"}
    result = await client.simulate_request(method, path, json=body, headers=person.headers)
    assert result.status_code == 403, result.text
    assert result.json["error"] == "forbidden"
    # Nothing changed: the victim is still there as it was.
    about = await client.simulate_get("/user/about", headers=victim.headers)
    assert about.status_code == 200
    assert about.json["email"] == victim.user.email
