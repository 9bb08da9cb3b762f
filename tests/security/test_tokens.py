"""The token file, principals and the scope hierarchy (admin ⊇ write ⊇ read)."""

from __future__ import annotations

import hmac
import textwrap

import pytest

from searchgw.security import Principal, TokenStore, expand_scopes, load_token_store, token_digest
from searchgw.settings import SettingsError
from tests.security.helpers import sha256_hex, write_token_file


def _write(tmp_path, text: str):
    path = tmp_path / "tokens.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def test_valid_file_authenticates_each_token_as_its_principal(tmp_path):
    path = write_token_file(tmp_path / "tokens.yaml", {
        "reader": ("r-secret", ["read"]), "ops": ("o-secret", ["admin"]), "ci": ("c-secret", ["read", "write"]),
    })
    store = load_token_store(path)
    assert len(store) == 3
    assert store.authenticate("r-secret") == Principal("reader", frozenset({"read"}))
    assert store.authenticate("o-secret") == Principal("ops", frozenset({"admin"}))
    assert store.authenticate("c-secret").name == "ci"


def test_unknown_and_empty_tokens_authenticate_as_nobody(tmp_path):
    store = load_token_store(write_token_file(tmp_path / "t.yaml", {"reader": ("r-secret", ["read"])}))
    assert store.authenticate("r-secre") is None
    assert store.authenticate("r-secret ") is None
    assert store.authenticate("") is None
    assert store.authenticate(sha256_hex("r-secret")) is None  # the digest is not the token


def test_digest_in_upper_case_hex_and_single_scope_string_are_accepted(tmp_path):
    path = _write(tmp_path, f"""
        tokens:
          - name: ops
            sha256: "{sha256_hex('tok').upper()}"
            scopes: admin
    """)
    assert load_token_store(path).authenticate("tok").scopes == frozenset({"admin"})


def test_authenticate_compares_against_every_entry_whichever_matches(tmp_path, monkeypatch):
    tokens = {f"p{i}": (f"secret-{i}", ["read"]) for i in range(5)}
    store = load_token_store(write_token_file(tmp_path / "t.yaml", tokens))
    calls = []
    real = hmac.compare_digest

    def counting(a, b):
        calls.append(1)
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", counting)
    for token in ("secret-0", "secret-4", "nope"):
        calls.clear()
        store.authenticate(token)
        assert len(calls) == 5


def test_repr_shows_names_but_no_digest(tmp_path):
    store = load_token_store(write_token_file(tmp_path / "t.yaml", {"ops": ("tok", ["admin"])}))
    assert "ops" in repr(store)
    assert sha256_hex("tok") not in repr(store)


@pytest.mark.parametrize(("granted", "allowed", "refused"), [
    ({"read"}, {"read"}, {"write", "admin"}),
    ({"write"}, {"read", "write"}, {"admin"}),
    ({"admin"}, {"read", "write", "admin"}, set()),
    ({"read", "write"}, {"read", "write"}, {"admin"}),
])
def test_scopes_nest_admin_over_write_over_read(granted, allowed, refused):
    principal = Principal("p", frozenset(granted))
    assert {scope for scope in ("read", "write", "admin") if principal.allows(scope)} == allowed
    assert not any(principal.allows(scope) for scope in refused)


def test_unknown_scope_is_never_granted():
    assert not Principal("p", frozenset({"admin"})).allows("superuser")
    assert not Principal("p", frozenset({"superuser"})).allows("read")
    with pytest.raises(ValueError, match="unknown scope"):
        expand_scopes(["root"])


def test_token_store_rejects_digests_of_the_wrong_size():
    with pytest.raises(ValueError):
        TokenStore([(b"short", Principal("p", frozenset({"read"})))])
    assert len(TokenStore([(token_digest("x"), Principal("p", frozenset({"read"})))])) == 1


OK_SHA = sha256_hex("some-token")


@pytest.mark.parametrize(("body", "expected"), [
    ("tokens: [", "not valid YAML"),
    ("- a\n- b\n", "expected a mapping with a 'tokens' list"),
    ("users: []\n", "expected a mapping with a 'tokens' list"),
    ("tokens: []\nextra: 1\n", "unknown top-level key"),
    ("tokens: {}\n", "'tokens' must be a list"),
    ("tokens: []\n", "'tokens' is empty"),
    ("tokens: [ops]\n", "tokens[0]: expected a mapping"),
    (f"tokens: [{{sha256: '{OK_SHA}', scopes: [read]}}]\n", "tokens[0]: name: required"),
    (f"tokens: [{{name: 'has space', sha256: '{OK_SHA}', scopes: [read]}}]\n", "tokens[0]: name:"),
    ("tokens: [{name: ops, scopes: [read]}]\n", "tokens[0] (ops): sha256: required"),
    ("tokens: [{name: ops, sha256: abc123, scopes: [read]}]\n", "tokens[0] (ops): sha256: expected 64 hex digits"),
    (f"tokens: [{{name: ops, sha256: '{'g' * 64}', scopes: [read]}}]\n", "expected 64 hex digits"),
    (f"tokens: [{{name: ops, sha256: '{sha256_hex('')}', scopes: [read]}}]\n", "digest of the empty token"),
    (f"tokens: [{{name: ops, sha256: '{OK_SHA}'}}]\n", "tokens[0] (ops): scopes: required"),
    (f"tokens: [{{name: ops, sha256: '{OK_SHA}', scopes: []}}]\n", "scopes: required"),
    (f"tokens: [{{name: ops, sha256: '{OK_SHA}', scopes: [root]}}]\n", "tokens[0] (ops): scopes: unknown root"),
    (f"tokens: [{{name: ops, sha256: '{OK_SHA}', scope: [read]}}]\n", "tokens[0] (ops): unknown key(s) scope"),
    (f"tokens: [{{name: a, sha256: '{OK_SHA}', scopes: [read]}}, {{name: a, sha256: '{sha256_hex('b')}', "
     f"scopes: [read]}}]\n", "tokens[1] (a): name: already used by tokens[0]"),
    (f"tokens: [{{name: a, sha256: '{OK_SHA}', scopes: [read]}}, {{name: b, sha256: '{OK_SHA.upper()}', "
     f"scopes: [read]}}]\n", "tokens[1] (b): sha256: the same token as tokens[0]"),
])
def test_malformed_file_is_refused_naming_file_and_entry(tmp_path, body, expected):
    path = tmp_path / "tokens.yaml"
    path.write_text(body)
    with pytest.raises(SettingsError) as caught:
        load_token_store(path)
    message = str(caught.value)
    assert str(path) in message
    assert expected in message


def test_plain_token_in_the_file_is_refused_without_echoing_it(tmp_path):
    path = _write(tmp_path, """
        tokens:
          - name: ops
            token: hunter2-plaintext
            scopes: [admin]
    """)
    with pytest.raises(SettingsError, match=r"tokens\[0\] \(ops\): holds a plain 'token'") as caught:
        load_token_store(path)
    assert "hunter2" not in str(caught.value)


def test_missing_file_is_a_settings_error_naming_it(tmp_path):
    path = tmp_path / "absent.yaml"
    with pytest.raises(SettingsError, match="absent.yaml: cannot read"):
        load_token_store(path)
